//! `POST /v3/discount-card/cards/{out_card_code}/add-user-records`: a pay-later card platform's
//! objective completions and reward usages (shared/seeds/wechat-discount-card-add-user-records.md).
//! Requests are authenticated as the platform's API v3 is: a `WECHATPAY2-SHA256-RSA2048`
//! Authorization header whose RSA-SHA256 signature over the method, URL, timestamp, nonce and
//! body is checked with the merchant's public key, within a timestamp window, each nonce once.

use super::fields::Clock;
use crate::domain::{Identity, IdentityKind};
use crate::service::{self, CardRecord, CardRecords, ServiceError};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use base64ct::Encoding;
use chrono::Utc;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use serde_json::{json, Map, Value};

/// How far a request's timestamp may be from now, in seconds.
pub const TIMESTAMP_WINDOW_S: i64 = 300;
/// At most this many records of each kind in one request.
pub const RECORDS_MAX: usize = 100;

/// A method other than POST, in the platform's shape.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "INVALID_REQUEST",
        &format!("method not allowed; use {allow}"),
    )
}

/// Signs every answer of the endpoint (204 and every error) as the WeChat Pay platform signs
/// its own, when the clients file has a `[wechatpay_platform]` key: `Wechatpay-Signature` is
/// the RSA-SHA256 of `timestamp\nnonce\nbody\n`, named by `Wechatpay-Serial`, with
/// `Wechatpay-Timestamp`, `Wechatpay-Nonce`, `Wechatpay-Signature-Type` and `Request-ID`.
/// Merchants' SDKs check it on every answer (`point-engine keys wechatpay-public-key` prints
/// the key to give them).
pub async fn sign_response(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let platform = req
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.clients.wechatpay_platform.clone());
    let response = next.call(req).await?;
    let Some(platform) = platform else {
        return Ok(response.map_into_boxed_body());
    };
    let (request, response) = response.into_parts();
    let (mut response, body) = response.into_parts();
    let body = actix_web::body::to_bytes(body)
        .await
        .map_err(|_| actix_web::error::ErrorInternalServerError("the answer could not be read"))?;
    let timestamp = Utc::now().timestamp().to_string();
    let nonce = response_nonce()
        .ok_or_else(|| actix_web::error::ErrorInternalServerError("no random source"))?;
    let mut message = format!("{timestamp}\n{nonce}\n").into_bytes();
    message.extend_from_slice(&body);
    message.push(b'\n');
    // An RSA signature is a millisecond of arithmetic: off the server's threads.
    let signer = platform.clone();
    let signature = web::block(move || signer.sign(&message)).await?;
    let request_id = super::access::current_request_id().unwrap_or_else(|| nonce.clone());
    let headers = response.headers_mut();
    for (name, value) in [
        ("wechatpay-serial", platform.public_key_id.as_str()),
        ("wechatpay-signature", &signature),
        ("wechatpay-timestamp", &timestamp),
        ("wechatpay-nonce", &nonce),
        ("wechatpay-signature-type", "WECHATPAY2-SHA256-RSA2048"),
        ("request-id", &request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    Ok(ServiceResponse::new(
        request,
        response.set_body(BoxBody::new(body)),
    ))
}

/// 32 random upper-case hex digits, as the platform's nonces are.
fn response_nonce() -> Option<String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

fn failure(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"code": code, "message": message}))
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{0}")]
    Sign(String),
    #[error("{}", crate::error::rate_limited_msg(*.0))]
    RateLimited(u32),
    #[error(transparent)]
    Body(#[from] super::BodyError),
    #[error("{0}")]
    Param(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for CardError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Sign(m) => failure(StatusCode::UNAUTHORIZED, "SIGN_ERROR", m),
            Self::RateLimited(seconds) => {
                let mut response = failure(
                    StatusCode::TOO_MANY_REQUESTS,
                    "FREQUENCY_LIMITED",
                    &self.to_string(),
                );
                crate::error::with_retry_after_s(&mut response, *seconds);
                response
            }
            Self::Param(m) => failure(StatusCode::BAD_REQUEST, "PARAM_ERROR", m),
            Self::Body(e @ super::BodyError::TooLarge(_)) => {
                failure(StatusCode::PAYLOAD_TOO_LARGE, "PARAM_ERROR", &e.to_string())
            }
            Self::Body(e) => failure(StatusCode::BAD_REQUEST, "PARAM_ERROR", &e.to_string()),
            Self::Service(
                e @ (ServiceError::CardRecordConflict(_)
                | ServiceError::Post(crate::ledger::PostError::BalanceLimit { .. })),
            ) => failure(StatusCode::BAD_REQUEST, "PARAM_ERROR", &e.to_string()),
            Self::Service(ServiceError::Unavailable(e)) => {
                log::warn!("discount card: {e}");
                let mut response = failure(
                    StatusCode::TOO_MANY_REQUESTS,
                    "FREQUENCY_LIMITED",
                    "busy, retry",
                );
                crate::error::with_retry_after(&mut response);
                response
            }
            other => {
                log::error!("discount card: {other}");
                failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SYSTEM_ERROR",
                    "system error",
                )
            }
        }
    }

    fn status_code(&self) -> StatusCode {
        self.error_response().status()
    }
}

/// The fields of a `WECHATPAY2-SHA256-RSA2048 k="v",…` Authorization header.
fn authorization_fields(header: &str) -> Result<Map<String, Value>, CardError> {
    let rest = header
        .strip_prefix("WECHATPAY2-SHA256-RSA2048 ")
        .ok_or_else(|| {
            CardError::Sign("Authorization must use WECHATPAY2-SHA256-RSA2048".into())
        })?;
    let mut fields = Map::new();
    for part in rest.split(',') {
        let (key, value) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| CardError::Sign("Authorization is malformed".into()))?;
        fields.insert(
            key.trim().to_string(),
            Value::String(value.trim().trim_matches('"').to_string()),
        );
    }
    Ok(fields)
}

/// Checks the request's signature and timestamp: its (mchid, nonce) on success, the nonce for
/// the service to accept once.
fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(String, String), CardError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| CardError::Sign("Authorization is required".into()))?;
    let fields = authorization_fields(header)?;
    let get = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| CardError::Sign(format!("Authorization has no {name}")))
    };
    let (mchid, nonce, timestamp, serial_no, signature) = (
        get("mchid")?,
        get("nonce_str")?,
        get("timestamp")?,
        get("serial_no")?,
        get("signature")?,
    );
    let merchant = state
        .clients
        .card_merchant(mchid, serial_no)
        .ok_or_else(|| {
            CardError::Sign(format!(
                "no key for mchid {mchid} and serial_no {serial_no}"
            ))
        })?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| CardError::Sign("timestamp must be seconds since 1970".into()))?;
    if (Utc::now().timestamp() - seconds).abs() > TIMESTAMP_WINDOW_S {
        return Err(CardError::Sign(format!(
            "timestamp {seconds} is more than {TIMESTAMP_WINDOW_S} s from now"
        )));
    }
    let url = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_string(), |p| p.as_str().to_string());
    let mut message = format!("{}\n{url}\n{timestamp}\n{nonce}\n", req.method()).into_bytes();
    message.extend_from_slice(body);
    message.push(b'\n');
    let signature = base64ct::Base64::decode_vec(signature)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| CardError::Sign("signature is not base64 of an RSA signature".into()))?;
    VerifyingKey::<sha2::Sha256>::new(merchant.public_key.clone())
        .verify(&message, &signature)
        .map_err(|_| CardError::Sign("the signature does not match the request".into()))?;
    Ok((mchid.to_string(), nonce.to_string()))
}

fn text(record: &Map<String, Value>, at: &str, name: &str) -> Result<String, CardError> {
    match record.get(name) {
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(CardError::Param(
            format!("{at}.{name} must not contain control characters"),
        )),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= 256 => {
            Ok(s.trim().to_string())
        }
        Some(Value::String(s)) if !s.trim().is_empty() => Err(CardError::Param(format!(
            "{at}.{name} is longer than 256 characters"
        ))),
        None | Some(Value::Null) => Err(CardError::Param(format!("{at}.{name} is required"))),
        Some(Value::String(_)) => Err(CardError::Param(format!("{at}.{name} must not be empty"))),
        Some(_) => Err(CardError::Param(format!("{at}.{name} must be a string"))),
    }
}

fn count(
    record: &Map<String, Value>,
    at: &str,
    name: &str,
    (min, max): (i64, i64),
) -> Result<i64, CardError> {
    match record.get(name) {
        None | Some(Value::Null) => Err(CardError::Param(format!("{at}.{name} is required"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|v| (min..=max).contains(v))
            .ok_or_else(|| {
                CardError::Param(format!(
                    "{at}.{name} must be a whole number from {min} to {max}"
                ))
            }),
        Some(_) => Err(CardError::Param(format!("{at}.{name} must be an integer"))),
    }
}

/// One record of either list, by the names its kind uses.
/// The largest `amount` of a reward usage (minor units).
const AMOUNT_MAX: i64 = 1_000_000_000;

fn record(
    item: &Value,
    at: &str,
    names: [&str; 6],
    amount: bool,
    (count_max, clock): (i64, Clock),
) -> Result<CardRecord, CardError> {
    let [serial, id, time, kind, description, count_name] = names;
    let object = item
        .as_object()
        .ok_or_else(|| CardError::Param(format!("{at} must be an object")))?;
    let at_time = text(object, at, time)?;
    let occurred = chrono::DateTime::parse_from_rfc3339(&at_time).map_err(|_| {
        CardError::Param(format!(
            "{at}.{time} must be an RFC 3339 time, got {at_time:?}"
        ))
    })?;
    if let Some(problem) = clock.future(occurred) {
        return Err(CardError::Param(format!("{at}.{time} {problem}")));
    }
    let increase = match text(object, at, kind)?.as_str() {
        "INCREASE" => true,
        "DECREASE" => false,
        other => {
            return Err(CardError::Param(format!(
                "{at}.{kind} must be INCREASE or DECREASE, got {other:?}"
            )))
        }
    };
    if let Some(remark) = object.get("remark") {
        if !remark.is_null() && !remark.is_string() {
            return Err(CardError::Param(format!("{at}.remark must be a string")));
        }
    }
    Ok(CardRecord {
        serial_no: text(object, at, serial)?,
        item_id: text(object, at, id)?,
        at: occurred,
        increase,
        count: count(object, at, count_name, (1, count_max))?,
        amount: if amount {
            Some(count(object, at, "amount", (0, AMOUNT_MAX))?)
        } else {
            None
        },
        description: text(object, at, description)?,
        body: serde_json::to_string(item).expect("JSON serializes"),
    })
}

fn records(
    body: &Map<String, Value>,
    list: &str,
    names: [&str; 6],
    amount: bool,
    limits: (i64, Clock),
) -> Result<Vec<CardRecord>, CardError> {
    match body.get(list) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= RECORDS_MAX => items
            .iter()
            .enumerate()
            .map(|(i, item)| record(item, &format!("{list}[{i}]"), names, amount, limits))
            .collect(),
        Some(Value::Array(_)) => Err(CardError::Param(format!(
            "{list} must have at most {RECORDS_MAX} records"
        ))),
        Some(_) => Err(CardError::Param(format!("{list} must be an array"))),
    }
}

/// Parses the body of an add-user-records request for a card. A record's count is at most
/// `count_max`: the work a record costs never follows a number the caller chose past it.
pub fn parse_records(
    card_code: &str,
    body: &[u8],
    count_max: u32,
    clock: Clock,
) -> Result<CardRecords, CardError> {
    let limits = (i64::from(count_max), clock);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| CardError::Param(format!("the body is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| CardError::Param("the body must be a JSON object".into()))?;
    let card_code = Identity::new(IdentityKind::CardCode, card_code)
        .map_err(|e| CardError::Param(format!("out_card_code {e}")))?;
    // What is wrong with it, named as the document names it (not "body.card_template_id").
    let card_template_id = text(object, "body", "card_template_id").map_err(|e| match e {
        CardError::Param(message) => CardError::Param(
            message
                .strip_prefix("body.")
                .unwrap_or(&message)
                .to_string(),
        ),
        other => other,
    })?;
    let objectives = records(
        object,
        "objective_completion_records",
        [
            "objective_completion_serial_no",
            "objective_id",
            "completion_time",
            "completion_type",
            "description",
            "completion_count",
        ],
        false,
        limits,
    )?;
    let rewards = records(
        object,
        "reward_usage_records",
        [
            "reward_usage_serial_no",
            "reward_id",
            "usage_time",
            "usage_type",
            "description",
            "usage_count",
        ],
        true,
        limits,
    )?;
    if objectives.is_empty() && rewards.is_empty() {
        return Err(CardError::Param(
            "give objective_completion_records or reward_usage_records".into(),
        ));
    }
    Ok(CardRecords {
        card_code,
        card_template_id,
        objectives,
        rewards,
    })
}

#[utoipa::path(
    post,
    path = "/v3/discount-card/cards/{out_card_code}/add-user-records",
    tag = "discount-card",
    operation_id = "discount_card_add_user_records",
    summary = "A discount card's objective completions and reward usages (the document's envelope)",
    params(("out_card_code" = String, Path, description = "The card's code")),
    request_body(content = Object, description = "The document's records"),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "PARAM_ERROR", body = Object),
        (status = 401, description = "SIGN_ERROR", body = Object),
        (status = 413, description = "The body is too large", body = Object),
        (status = 429, description = "FREQUENCY_LIMITED", body = Object)
    ),
    security(("wechatpay_signature" = []))
)]
pub async fn add_user_records(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, CardError> {
    // The signature covers the body, so the body (up to the limit) is read first.
    let body = super::read_body(payload, state.body_bytes_max).await?;
    let (mchid, nonce) = authenticate(&state, &req, &body)?;
    req.extensions_mut().insert(super::auth::Caller(format!(
        "discount_card_merchant {mchid}"
    )));
    let now = Utc::now();
    let clock = Clock {
        now,
        skew_s_max: state.clock_skew_s_max,
    };
    let records = parse_records(&path.into_inner(), &body, state.card_count_max, clock)?;
    let rules = state.rules.current();
    super::on_pool(state.clone(), move || {
        service::add_card_records(
            &state.store,
            rules,
            (mchid, nonce, TIMESTAMP_WINDOW_S),
            records,
            state.refund_shortfall_policy,
            now,
        )
    })
    .await?
    .map_err(|e| match e {
        ServiceError::NonceReused => CardError::Sign("nonce_str was already used".into()),
        other => CardError::Service(other),
    })?;
    Ok(HttpResponse::NoContent().finish())
}
