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

#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    operation_id = "ready",
    summary = "Whether the server can serve: the ledger answers and the rules are loaded",
    responses(
        (status = 200, description = "{\"status\":\"ready\",\"rules_version\":\"…\"}", body = Object),
        (status = 503, description = "{\"status\":\"not ready\",\"reason\":\"…\"}", body = Object)
    )
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let version = state.rules.current().version.clone();
    let store = state.clone();
    match web::block(move || crate::service::ready(&store.store)).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "rules_version": version,
        })),
        Ok(Err(e)) => {
            log::warn!("not ready: {e}");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "not ready",
                "reason": "the ledger does not answer",
            }))
        }
        Err(e) => {
            log::warn!("not ready: {e}");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "status": "not ready",
                "reason": "the server is stopping",
            }))
        }
    }
}

/// The Prometheus metrics (text exposition format 0.0.4).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.telemetry.render(&state.rules, &state.store))
}
