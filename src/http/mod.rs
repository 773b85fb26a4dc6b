//! The HTTP facade: one module per wire contract, each only mapping JSON to the domain and
//! back.

pub mod access;
pub mod audit;
pub mod auth;
pub mod balance;
pub mod cblink;
pub mod discount_card;
pub mod fields;
pub mod health;
pub mod history;
pub mod identities;
pub mod json;
pub mod openapi;
pub mod profile;
pub mod rate_limit;
pub mod report;
pub mod rules;
pub mod trade_create;
pub mod trade_refund;
pub mod transaction_sync;

use crate::clients::Scope;
use crate::error::{failure, ErrorCode};
use crate::ledger::{self, Conn};
use crate::service::ServiceError;
use crate::state::AppState;
use actix_web::error::{BlockingError, InternalError, JsonPayloadError};
use actix_web::{web, HttpRequest, HttpResponse, Resource, Route};

pub fn routes(cfg: &mut web::ServiceConfig, body_bytes_max: usize) {
    // Each native endpoint with the scopes that may call it (admin may call all).
    let native = |path: &str, route: Route, allow: &'static str, scopes: &'static [Scope]| {
        allowing(
            web::resource(path).route(route),
            allow,
            native_method_not_allowed,
        )
        .wrap(actix_web::middleware::from_fn(move |req, next| {
            auth::require(scopes, req, next)
        }))
    };
    use Scope::{Finance, Marketer, Store};
    cfg.route("/health", web::get().to(health::health))
        .route("/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics))
        .route("/openapi.json", web::get().to(openapi::document))
        // The adapters read their bodies themselves (`read_body`), after authenticating.
        .service(allowing(
            web::resource("/tp/services/transaction")
                .route(web::post().to(transaction_sync::transaction)),
            "POST",
            transaction_sync::method_not_allowed,
        ))
        .service(allowing(
            web::resource("/openapi/trade").route(web::post().to(cblink::trade)),
            "POST",
            cblink::method_not_allowed,
        ))
        .service(
            allowing(
                web::resource("/v3/discount-card/cards/{out_card_code}/add-user-records")
                    .route(web::post().to(discount_card::add_user_records)),
                "POST",
                discount_card::method_not_allowed,
            )
            .wrap(actix_web::middleware::from_fn(discount_card::sign_response)),
        )
        .service(
            web::scope("/v1/point-engine")
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_bytes_max)
                        .error_handler(native_json_error),
                )
                .app_data(web::QueryConfig::default().error_handler(native_query_error))
                .service(native(
                    "/trade-create",
                    web::post().to(trade_create::trade_create),
                    "POST",
                    &[Store],
                ))
                .service(native(
                    "/trade-refund",
                    web::post().to(trade_refund::trade_refund),
                    "POST",
                    &[Store],
                ))
                .service(native(
                    "/trade-simulate",
                    web::post().to(rules::trade_simulate),
                    "POST",
                    &[Store, Marketer],
                ))
                .service(native(
                    "/rules",
                    web::get().to(rules::rules),
                    "GET",
                    &[Marketer],
                ))
                .service(native(
                    "/members/{vip_accountno}/balance",
                    web::get().to(balance::balance),
                    "GET",
                    &[Store],
                ))
                .service(native(
                    "/members/{vip_accountno}/identities",
                    web::post().to(identities::link_identity),
                    "POST",
                    &[Store],
                ))
                .service(native(
                    "/members/{vip_accountno}/profile",
                    web::put().to(profile::set_profile),
                    "PUT",
                    &[Store],
                ))
                .service(native(
                    "/members/{vip_accountno}/entries",
                    web::get().to(history::member_entries),
                    "GET",
                    &[Finance],
                ))
                .service(native(
                    "/trades/{number}",
                    web::get().to(history::trade),
                    "GET",
                    &[Finance],
                ))
                .service(native(
                    "/audit",
                    web::get().to(audit::audit),
                    "GET",
                    &[Finance],
                ))
                .service(native(
                    "/reports/liability",
                    web::get().to(report::liability),
                    "GET",
                    &[Finance],
                ))
                .service(native(
                    "/reports/movements",
                    web::get().to(report::movements),
                    "GET",
                    &[Finance],
                )),
        )
        .default_service(web::to(not_found));
}

/// A resource that answers any other method with 405, an `Allow` header, and `answer`'s body
/// (the contract's own error shape).
fn allowing(resource: Resource, allow: &'static str, answer: fn(&str) -> HttpResponse) -> Resource {
    resource.default_service(web::to(move || async move {
        let mut response = answer(allow);
        response.headers_mut().insert(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static(allow),
        );
        response
    }))
}

fn native_method_not_allowed(allow: &str) -> HttpResponse {
    failure(
        ErrorCode::MethodNotAllowed,
        format!("method not allowed; use {allow}"),
    )
}

/// Why an adapter's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body could not be read")]
    Unreadable,
}

/// Reads a request body of at most `limit` bytes. The adapters read their bodies this way,
/// after the caller is authenticated, so that an unauthenticated caller learns nothing about
/// its body and every refusal is in the contract's own shape.
pub async fn read_body(payload: web::Payload, limit: usize) -> Result<web::Bytes, BodyError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(BodyError::Unreadable),
        Err(_) => Err(BodyError::TooLarge(limit)),
    }
}

/// How long a read of the ledger may take (`read_ledger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLength {
    /// One member's or one trade's rows, found by index: short enough for the HTTP worker.
    Short,
    /// Long enough that the worker's other connections would wait on it.
    Long,
}

/// Runs a read of the ledger, its statements as one read (`ledger::one_read`): a short one on
/// this worker where the store allows it (`Store::conn_here`); otherwise, and a long one
/// always, on a blocking thread (`on_pool`).
pub async fn read_ledger<T, F>(
    state: &web::Data<AppState>,
    length: ReadLength,
    read: F,
) -> Result<Result<T, ServiceError>, BlockingError>
where
    F: FnOnce(&mut Conn) -> Result<T, ServiceError> + Send + 'static,
    T: Send + 'static,
{
    if length == ReadLength::Short {
        if let Some(mut conn) = state.store.conn_here() {
            return Ok(ledger::one_read(&mut conn, read));
        }
    }
    let _beside_lanes = match &state.read_turns_beside_lanes {
        // Never closed: `acquire` fails only on a closed semaphore.
        Some(turns) if state.store.lanes_writing() => turns.acquire().await.ok(),
        _ => None,
    };
    let pool = state.store.pool.clone();
    on_pool(state.clone(), move || {
        ledger::one_read(&mut *pool.get()?, read)
    })
    .await
}

/// Runs `work`, which takes pooled connections one at a time (every handler's database work),
/// on a blocking thread, after waiting for a turn (`AppState::pool_turns`, PostgreSQL)
/// without holding a thread.
pub async fn on_pool<T, F>(state: web::Data<AppState>, work: F) -> Result<T, BlockingError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _turn = match &state.pool_turns {
        // Never closed: `acquire` fails only on a closed semaphore.
        Some(turns) => turns.acquire().await.ok(),
        None => None,
    };
    web::block(work).await
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    failure(
        ErrorCode::NotFound,
        format!("no endpoint {} {}", req.method(), req.path()),
    )
}

/// A query string that does not parse (a field given twice, say), in the native error shape.
fn native_query_error(
    error: actix_web::error::QueryPayloadError,
    _req: &HttpRequest,
) -> actix_web::Error {
    let response = failure(
        ErrorCode::InvalidField,
        format!("the query string is not valid: {error}"),
    );
    InternalError::from_response(error, response).into()
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
