//! `PUT /v1/point-engine/members/{vip_accountno}/profile`: sets a member's birthday and gender,
//! what birthday and gender campaigns ask about. What the body leaves out stays as it was.

use super::fields::{self, FieldError};
use crate::domain::{Birthday, Gender, VipAccountNo};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::PostError;
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body as sent, loosely typed so that a wrong type is reported by name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProfileRequest {
    /// "YYYY-MM-DD", or "MM-DD" when the year is not known.
    #[schema(value_type = Option<String>, example = "1990-12-05")]
    birthday: Option<Value>,
    /// "male", "female", "unknown", or 1 (male), 2 (female), 0 (unknown).
    #[schema(value_type = Option<String>, example = "female")]
    gender: Option<Value>,
}

impl ProfileRequest {
    fn parse(self) -> Result<(Option<Birthday>, Option<Gender>), FieldError> {
        let birthday = match fields::optional_text("birthday", &self.birthday)? {
            Some(text) => Some(fields::parsed("birthday", Birthday::parse(&text))?),
            None => None,
        };
        let gender = match fields::optional_text("gender", &self.gender)? {
            Some(text) => Some(fields::parsed("gender", Gender::parse(&text))?),
            None => None,
        };
        if birthday.is_none() && gender.is_none() {
            return fields::parsed("birthday", Err("or gender is required".to_string()));
        }
        Ok((birthday, gender))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileData {
    /// The member's account number (also when the path named it by an identity).
    pub vip_accountno: String,
    /// "" when not known.
    pub birthday: String,
    /// "" when not known.
    pub gender: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("member {0} not found")]
    NotFound(VipAccountNo),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for ProfileError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::NotFound(_) => failure(ErrorCode::NotFound, self.to_string()),
            Self::Service(ServiceError::Post(PostError::Race)) => busy("profile", self),
            Self::Service(ServiceError::Unavailable(e)) => busy("profile", e),
            other => internal("profile", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    put,
    path = "/v1/point-engine/members/{vip_accountno}/profile",
    tag = "native",
    operation_id = "set_profile",
    summary = "Set a member's birthday and gender (what is left out stays as it was)",
    params(("vip_accountno" = String, Path, description = "An account number or an identity (TEL:…, WX:…, CARD:…)")),
    request_body = ProfileRequest,
    responses((status = 200, description = "The member's birthday and gender", body = crate::error::Envelope<ProfileData>)),
    security(("api_key" = []))
)]
pub async fn set_profile(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ProfileRequest>,
) -> Result<HttpResponse, ProfileError> {
    let vip = fields::parsed("vip_accountno", VipAccountNo::parse(&path.into_inner()))?;
    let (birthday, gender) = body.into_inner().parse()?;
    let member = vip.clone();
    let stored = super::on_pool(state.clone(), move || {
        service::set_profile(&state.store, member, birthday, gender, Utc::now())
    })
    .await??;
    let (account, birthday, gender) = stored.ok_or(ProfileError::NotFound(vip))?;
    Ok(success(ProfileData {
        vip_accountno: account,
        birthday: birthday.unwrap_or_default(),
        gender: gender.unwrap_or_default(),
    }))
}
