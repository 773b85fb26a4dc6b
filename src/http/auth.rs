//! Who is calling the native API: `Authorization: Bearer <key>`, checked against the keys of the
//! clients file before a handler runs. Each endpoint names the scopes it takes.

use crate::clients::Scope;
use crate::error::{failure, ErrorCode};
use crate::state::AppState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

/// The caller of a request as the access log names it: a key's name, or an adapter client's
/// name or id. Never a secret.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// The longest `Authorization` value read, in bytes; a key is 46.
const AUTHORIZATION_BYTES_MAX: usize = 512;

/// Lets the request through if its key takes one of `allowed` (or `admin`); answers 401 or 403
/// in the native error shape otherwise.
pub async fn require(
    allowed: &'static [Scope],
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .expect("the app has its state")
        .clone();
    match admit(&state, &req, allowed) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => Ok(req.into_response(refusal.response()).map_into_right_body()),
    }
}

/// Why a caller is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this server has no API keys: create one with `point-engine keys create --name NAME \
         --scope SCOPE`, add it to the clients file and start the server with --clients FILE"
    )]
    NoKeys,
    #[error("an API key is required: Authorization: Bearer <key>")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the key {name:?} may not call this endpoint: it needs the scope {needs} (or admin)")]
    Forbidden { name: String, needs: String },
    #[error("{}", crate::error::rate_limited_msg(*.0))]
    RateLimited(u32),
}

impl AuthError {
    fn response(&self) -> HttpResponse {
        match self {
            Self::Forbidden { .. } => failure(ErrorCode::Forbidden, self.to_string()),
            Self::RateLimited(seconds) => {
                let mut response = failure(ErrorCode::TooManyRequests, self.to_string());
                crate::error::with_retry_after_s(&mut response, *seconds);
                response
            }
            _ => {
                let mut response = failure(ErrorCode::Unauthorized, self.to_string());
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
        }
    }
}

fn admit(state: &AppState, req: &ServiceRequest, allowed: &[Scope]) -> Result<Caller, AuthError> {
    if state.insecure_no_auth {
        return Ok(Caller("(no auth)".to_string()));
    }
    if state.clients.api_keys.is_empty() {
        return Err(AuthError::NoKeys);
    }
    let presented = bearer(req).ok_or(AuthError::Missing)?;
    let key = state.clients.api_key(presented).ok_or(AuthError::Invalid)?;
    if !key.may(allowed) {
        let needs: Vec<&str> = allowed.iter().map(|s| s.name()).collect();
        return Err(AuthError::Forbidden {
            name: key.name.clone(),
            needs: needs.join(" or "),
        });
    }
    state
        .take_rate(&format!("api_key {}", key.name))
        .map_err(AuthError::RateLimited)?;
    Ok(Caller(key.name.clone()))
}

/// The key of `Authorization: Bearer <key>` (the scheme in any case).
fn bearer(req: &ServiceRequest) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?;
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return None;
    }
    let text = value.to_str().ok()?;
    let (scheme, key) = text.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}
