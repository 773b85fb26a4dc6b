use crate::state::AppState;
use actix_web::{web, HttpResponse};

#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    operation_id = "health",
    summary = "Whether the server is up",
    responses((status = 200, description = "{\"status\":\"ok\"}", body = Object))
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The Prometheus metrics (text exposition format 0.0.4).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.telemetry.render(&state.rules, &state.store))
}
