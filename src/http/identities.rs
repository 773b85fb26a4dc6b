//! `POST /v1/point-engine/members/{vip_accountno}/identities`: links a phone, an openid or a
//! card code to an existing member, so what later arrives under it (a discount card's records,
//! a POS customer, a cblink buyer) earns for that member. Idempotent; an identity another
//! member holds is a conflict (members are not merged).

use super::fields::{self, FieldError};
use crate::domain::{Identity, IdentityKind, VipAccountNo};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::{IdentityLink, PostError, IDENTITIES_PER_MEMBER_MAX};
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body as sent, loosely typed so that a wrong type is reported by name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LinkIdentityRequest {
    /// mobile_phone, weixin_openid or card_code.
    #[schema(value_type = String, required = true, example = "card_code")]
    kind: Option<Value>,
    /// The phone (7 to 15 digits, optional +), openid or card code: at most 58 characters.
    #[schema(value_type = String, required = true, example = "6e8369071cd942c0476613f9d1ce9ca3")]
    value: Option<Value>,
}

impl LinkIdentityRequest {
    fn into_identity(self) -> Result<Identity, FieldError> {
        let kind = fields::parsed(
            "kind",
            IdentityKind::linkable(&fields::required_text("kind", &self.kind)?),
        )?;
        let value = fields::required_text("value", &self.value)?;
        fields::parsed("value", Identity::linkable(kind, &value))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IdentityData {
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberIdentitiesData {
    /// The member's account number (also when the path named it by an identity).
    pub vip_accountno: String,
    /// Every identity the member holds, in the order they were linked.
    pub identities: Vec<IdentityData>,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkIdentityError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("member {0} not found")]
    NotFound(VipAccountNo),
    #[error("{0} is held by another member, {1}: members are not merged")]
    HeldByAnother(String, String),
    #[error("member {0} holds {IDENTITIES_PER_MEMBER_MAX} identities already, the most it may")]
    TooMany(VipAccountNo),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for LinkIdentityError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::NotFound(_) => failure(ErrorCode::NotFound, self.to_string()),
            Self::HeldByAnother(..) => failure(ErrorCode::Conflict, self.to_string()),
            Self::TooMany(_) => failure(ErrorCode::InvalidField, self.to_string()),
            Self::Service(ServiceError::Post(PostError::Race)) => busy("identities", self),
            Self::Service(ServiceError::Unavailable(e)) => busy("identities", e),
            other => internal("identities", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    post,
    path = "/v1/point-engine/members/{vip_accountno}/identities",
    tag = "native",
    operation_id = "link_identity",
    summary = "Link a phone, an openid or a card code to a member (idempotent; one held by another member is a conflict)",
    params(("vip_accountno" = String, Path, description = "An account number or an identity (TEL:…, WX:…, CARD:…)")),
    request_body = LinkIdentityRequest,
    responses((status = 200, description = "Every identity the member holds", body = crate::error::Envelope<MemberIdentitiesData>)),
    security(("api_key" = []))
)]
pub async fn link_identity(
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<LinkIdentityRequest>,
) -> Result<HttpResponse, LinkIdentityError> {
    let vip = fields::parsed("vip_accountno", VipAccountNo::parse(&path.into_inner()))?;
    let identity = body.into_inner().into_identity()?;
    let (member, named) = (vip.clone(), identity.clone());
    let linked = super::on_pool(state.clone(), move || {
        service::link_identity(&state.store, member, named, Utc::now())
    })
    .await??;
    let (account, identities) = match linked {
        IdentityLink::Linked {
            account,
            identities,
        } => (account, identities),
        IdentityLink::NoMember => return Err(LinkIdentityError::NotFound(vip)),
        IdentityLink::TooMany => return Err(LinkIdentityError::TooMany(vip)),
        IdentityLink::HeldByAnother(account) => {
            return Err(LinkIdentityError::HeldByAnother(
                format!("{} {}", identity.kind.as_str(), identity.value()),
                account,
            ))
        }
    };
    Ok(success(MemberIdentitiesData {
        vip_accountno: account,
        identities: identities
            .into_iter()
            .map(|(kind, value)| IdentityData { kind, value })
            .collect(),
    }))
}
