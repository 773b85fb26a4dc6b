//! Request ids and the access log: one line per request with its method, route template (never
//! the raw path: member ids and phone numbers travel in paths), status, latency and caller.
//! `X-Request-Id` is taken from the request when it is a plain token, made up otherwise, echoed
//! in the answer, and carried by every log line written while the request is handled.

use crate::http::auth::Caller;
use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a caller, in bytes.
pub const REQUEST_ID_BYTES_MAX: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of a request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The id of the request being handled on this task, for log lines.
pub fn current_request_id() -> Option<String> {
    CURRENT.try_with(|id| id.0.clone()).ok()
}

/// The caller's id if it is a plain token (letters, digits, `-`, `_`, `.`, `:`; at most 128
/// bytes), so a log line cannot be forged through it; a new one otherwise.
fn request_id(req: &ServiceRequest) -> RequestId {
    let given = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= REQUEST_ID_BYTES_MAX
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        });
    RequestId(match given {
        Some(id) => id.to_string(),
        None => new_request_id(),
    })
}

/// 16 random hex digits drawn once per process, then a counter: unique without a system call
/// per request.
fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes)
            .map_or(std::process::id().into(), |()| u64::from_le_bytes(bytes))
    });
    format!("{prefix:016x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Gives the request its id, runs it with the id in scope, echoes the id and logs the access
/// line (target `access`).
pub async fn log_access(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    let result = CURRENT.scope(id.clone(), next.call(req)).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match result {
        Ok(mut response) => {
            if let Ok(value) = HeaderValue::from_str(&id.0) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            let request = response.request();
            let route = request.match_pattern().unwrap_or_else(|| "-".to_string());
            let caller = request
                .extensions()
                .get::<Caller>()
                .map_or_else(|| "-".to_string(), |c| c.0.clone());
            if let Some(state) = &state {
                state.telemetry.request(
                    method.as_str(),
                    &route,
                    response.status().as_u16(),
                    elapsed_ms / 1000.0,
                );
            }
            log::info!(
                target: "access",
                "{method} {route} {} {elapsed_ms:.1}ms caller={caller:?} request_id={}",
                response.status().as_u16(),
                id.0
            );
            Ok(response)
        }
        Err(error) => {
            log::warn!(
                target: "access",
                "{method} - failed {elapsed_ms:.1}ms request_id={}: {error}",
                id.0
            );
            Err(error)
        }
    }
}
