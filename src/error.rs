//! The native API's error codes and envelope. Each endpoint has its own error enum that maps
//! onto these; what is internal is logged, never sent.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use serde::Serialize;

/// The `code` of a native API answer. Documented in docs/api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The body is not JSON, or not a JSON object.
    MalformedJson,
    /// A field is missing or holds a bad value; `msg` names it.
    InvalidField,
    /// The request is not `Content-Type: application/json`.
    UnsupportedContentType,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// No API key, or one the server does not know (`Authorization: Bearer <key>`).
    Unauthorized,
    /// The key is known but its scopes do not cover this endpoint.
    Forbidden,
    /// This caller sent more requests than its rate limit; `Retry-After` says when to retry.
    TooManyRequests,
    /// No such endpoint, or no such member.
    NotFound,
    /// The endpoint exists, but not for this method (the `Allow` header lists those it takes).
    MethodNotAllowed,
    /// The `out_trade_no` was already used with a different request.
    Conflict,
    /// `burn_point` is more than the member's available points.
    InsufficientPoints,
    /// A refund is more than what is left of the trade's payment.
    RefundExceedsPayment,
    /// The trade's grants would take the member past the most points one member may hold.
    BalanceLimit,
    /// Something failed inside point-engine; details are in its log.
    Internal,
    /// The database is busy; the request wrote nothing and can be retried.
    Unavailable,
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        match self {
            Self::MalformedJson => 40000,
            Self::InvalidField => 40001,
            Self::Unauthorized => 40100,
            Self::Forbidden => 40300,
            Self::NotFound => 40400,
            Self::MethodNotAllowed => 40500,
            Self::Conflict => 40900,
            Self::BodyTooLarge => 41300,
            Self::UnsupportedContentType => 41500,
            Self::InsufficientPoints => 42200,
            Self::RefundExceedsPayment => 42201,
            Self::BalanceLimit => 42202,
            Self::TooManyRequests => 42900,
            Self::Internal => 50000,
            Self::Unavailable => 50300,
        }
    }

    pub fn status(self) -> StatusCode {
        StatusCode::from_u16((self.code() / 100) as u16).expect("codes are status * 100 + n")
    }
}

/// The native answer: `code` 0 and `msg` "success" with `data`, or an error code and message
/// with `data` null.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope<T: Serialize> {
    pub code: u32,
    pub msg: String,
    pub data: Option<T>,
}

pub fn success<T: Serialize>(data: T) -> HttpResponse {
    HttpResponse::Ok().json(Envelope {
        code: 0,
        msg: "success".to_string(),
        data: Some(data),
    })
}

pub fn failure(code: ErrorCode, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(code.status()).json(Envelope::<()> {
        code: code.code(),
        msg: msg.into(),
        data: None,
    })
}

/// Seconds a caller is asked to wait before retrying a request refused as busy.
pub const RETRY_AFTER_S: u32 = 1;

/// The ledger is busy (no connection came free in time, or the write queue is full): logged,
/// answered 503 with `Retry-After`, safe to retry.
pub fn busy(endpoint: &str, error: &dyn std::fmt::Display) -> HttpResponse {
    log::warn!("{endpoint}: {error}");
    let mut response = failure(
        ErrorCode::Unavailable,
        "the ledger is busy; nothing was written, retry",
    );
    with_retry_after(&mut response);
    response
}

/// Adds `Retry-After` to a busy answer of any contract.
pub fn with_retry_after(response: &mut HttpResponse) {
    with_retry_after_s(response, RETRY_AFTER_S);
}

/// Adds `Retry-After: seconds` to an answer of any contract.
pub fn with_retry_after_s(response: &mut HttpResponse, seconds: u32) {
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from(seconds),
    );
}

/// What a caller over its rate limit is told, in any contract's message.
pub fn rate_limited_msg(seconds: u32) -> String {
    format!("too many requests from this caller; retry after {seconds} s")
}

/// A failure inside point-engine: logged with its details, answered 500 without them.
pub fn internal(endpoint: &str, error: &dyn std::fmt::Display) -> HttpResponse {
    log::error!("{endpoint}: {error}");
    failure(ErrorCode::Internal, "internal error; nothing was written")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_their_status() {
        assert_eq!(ErrorCode::InvalidField.status(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::Conflict.status(), StatusCode::CONFLICT);
        assert_eq!(
            ErrorCode::BodyTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            ErrorCode::UnsupportedContentType.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert_eq!(
            ErrorCode::InsufficientPoints.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            ErrorCode::Unavailable.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
