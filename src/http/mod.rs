//! The HTTP facade: one module per wire contract, each only mapping JSON to the domain and
//! back.

pub mod audit;
pub mod balance;
pub mod cblink;
pub mod discount_card;
pub mod fields;
pub mod health;
pub mod history;
pub mod report;
pub mod rules;
pub mod trade_create;
pub mod trade_refund;
pub mod transaction_sync;

use crate::error::{failure, ErrorCode};
use actix_web::error::{InternalError, JsonPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};

pub fn routes(cfg: &mut web::ServiceConfig, body_bytes_max: usize) {
    cfg.route("/health", web::get().to(health::health))
        .service(
            web::resource("/tp/services/transaction")
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_bytes_max)
                        .content_type_required(false)
                        .error_handler(transaction_sync::json_error),
                )
                .route(web::post().to(transaction_sync::transaction)),
        )
        .service(
            web::resource("/openapi/trade")
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_bytes_max)
                        .error_handler(cblink::json_error),
                )
                .route(web::post().to(cblink::trade)),
        )
        .service(
            web::resource("/v3/discount-card/cards/{out_card_code}/add-user-records")
                .app_data(web::PayloadConfig::new(body_bytes_max))
                .route(web::post().to(discount_card::add_user_records)),
        )
        .service(
            web::scope("/v1/point-engine")
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_bytes_max)
                        .error_handler(native_json_error),
                )
                .route("/trade-create", web::post().to(trade_create::trade_create))
                .route("/trade-refund", web::post().to(trade_refund::trade_refund))
                .route("/trade-simulate", web::post().to(rules::trade_simulate))
                .route("/rules", web::get().to(rules::rules))
                .route(
                    "/members/{vip_accountno}/balance",
                    web::get().to(balance::balance),
                )
                .route(
                    "/members/{vip_accountno}/entries",
                    web::get().to(history::member_entries),
                )
                .route("/trades/{number}", web::get().to(history::trade))
                .route("/audit", web::get().to(audit::audit))
                .route("/reports/liability", web::get().to(report::liability))
                .route("/reports/movements", web::get().to(report::movements)),
        )
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    failure(
        ErrorCode::NotFound,
        format!("no endpoint {} {}", req.method(), req.path()),
    )
}

/// Bad JSON, a wrong content type and an oversized body, in the native error shape.
fn native_json_error(error: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let response = match &error {
        JsonPayloadError::ContentType => failure(
            ErrorCode::UnsupportedContentType,
            "Content-Type must be application/json",
        ),
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => failure(
            ErrorCode::BodyTooLarge,
            format!("the body is larger than {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(e) => failure(
            ErrorCode::MalformedJson,
            format!("the body is not a JSON object: {e}"),
        ),
        other => failure(
            ErrorCode::MalformedJson,
            format!("the body could not be read: {other}"),
        ),
    };
    InternalError::from_response(error, response).into()
}
