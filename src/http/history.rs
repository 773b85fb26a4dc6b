//! `GET /v1/point-engine/members/{vip_accountno}/entries?page=&page_size=`: a member's
//! movements, newest first. `GET /v1/point-engine/trades/{trade_no or out_trade_no}`: one trade
//! with its grants and every movement that names it.

use super::fields::{parsed, FieldError};
use crate::domain::{Amount, VipAccountNo};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::history::{History, Movement, TradeDetail, PAGE_SIZE_MAX};
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub const PAGE_SIZE_DEFAULT: i64 = 50;

/// A page that skips more of a member's entries than this is read on a blocking thread, not
/// on the worker: skipping costs a step of the index for each entry skipped.
const ENTRIES_SKIPPED_ON_WORKER_MAX: i64 = 1_000;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    page_size: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MovementData {
    pub entry_id: i64,
    pub kind: String,
    pub point: i64,
    #[serde(rename = "type")]
    pub point_type: String,
    pub campaign_code: String,
    pub trade_no: String,
    pub out_trade_no: String,
    /// When the movement counts for finance (an expiry: the end of the expiry date).
    pub effective_time: String,
    pub created_time: String,
}

/// Takes the movement's text, not a copy of it: a page holds up to `PAGE_SIZE_MAX` of them.
impl From<Movement> for MovementData {
    fn from(m: Movement) -> Self {
        Self {
            entry_id: m.id,
            kind: m.kind,
            point: m.points,
            point_type: m.point_type,
            campaign_code: m.campaign_code,
            trade_no: m.trade_no,
            out_trade_no: m.out_trade_no,
            effective_time: m.effective_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            created_time: m.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryData {
    pub vip_accountno: String,
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
    /// The member's tier now, when the program has tiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<super::balance::TierData>,
    pub entries: Vec<MovementData>,
}

impl HistoryData {
    pub fn new(vip: &VipAccountNo, page: i64, page_size: i64, history: History) -> Self {
        Self {
            vip_accountno: vip.to_string(),
            page,
            page_size,
            total: history.total,
            tier: None,
            entries: history
                .movements
                .into_iter()
                .map(MovementData::from)
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantData {
    pub point: i64,
    pub remaining: i64,
    #[serde(rename = "type")]
    pub point_type: &'static str,
    pub expire_type: &'static str,
    pub expire_time: String,
    pub campaign_code: String,
    pub remark: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TradeData {
    pub trade_no: String,
    pub out_trade_no: String,
    pub vip_accountno: String,
    pub store_code: String,
    pub invoice_id: String,
    pub currency: String,
    pub total_amount: String,
    pub payment_amount: String,
    pub payment_method: String,
    pub sales_time: String,
    pub burn_point: i64,
    pub total_point: i64,
    pub ruleset_version: String,
    /// The member's tier the trade was priced at, when a campaign asked about it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tier: String,
    pub grants: Vec<GrantData>,
    pub entries: Vec<MovementData>,
    pub refunds: Vec<RefundData>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundData {
    pub out_refund_no: String,
    pub refund_amount: String,
    pub refund_time: String,
    pub returned_burn_point: i64,
    pub shortfall_policy: String,
}

impl TryFrom<TradeDetail> for TradeData {
    type Error = String;

    fn try_from(detail: TradeDetail) -> Result<Self, String> {
        let t = &detail.trade;
        Ok(Self {
            trade_no: t.trade_no.clone(),
            out_trade_no: t.out_trade_no.clone(),
            vip_accountno: detail.vip_accountno.clone(),
            store_code: t.store_code.clone(),
            invoice_id: t.invoice_id.clone(),
            currency: t.currency.clone(),
            total_amount: Amount::from_minor(t.total_amount_minor)?.to_string(),
            payment_amount: Amount::from_minor(t.payment_amount_minor)?.to_string(),
            payment_method: t.payment_method.clone(),
            sales_time: t.sales_time.clone(),
            burn_point: t.burn_point,
            total_point: detail.grants.iter().map(|(g, _)| g.points.value()).sum(),
            ruleset_version: t.ruleset_version.clone(),
            tier: t.tier.clone(),
            grants: detail
                .grants
                .iter()
                .map(|(grant, remaining)| GrantData {
                    point: grant.points.value(),
                    remaining: *remaining,
                    point_type: grant.point_type.as_str(),
                    expire_type: grant.expire_type.as_str(),
                    expire_time: grant.expire_date_text(),
                    campaign_code: grant.campaign_code_text().to_string(),
                    remark: grant.remark.to_string(),
                })
                .collect(),
            entries: detail
                .movements
                .into_iter()
                .map(MovementData::from)
                .collect(),
            refunds: detail
                .refunds
                .iter()
                .map(|r| {
                    Ok(RefundData {
                        out_refund_no: r.out_refund_no.clone(),
                        refund_amount: Amount::from_minor(r.refund_amount_minor)?.to_string(),
                        refund_time: r.refund_time.clone(),
                        returned_burn_point: r.burn_returned,
                        shortfall_policy: r.shortfall_policy.clone(),
                    })
                })
                .collect::<Result<_, String>>()?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("the ledger holds a value it cannot show: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for HistoryError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::NotFound(what) => failure(ErrorCode::NotFound, format!("{what} not found")),
            Self::Service(ServiceError::Unavailable(e)) => busy("history", e),
            other => internal("history", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

fn page_number(
    field: &'static str,
    raw: &Option<String>,
    default: i64,
    max: i64,
) -> Result<i64, FieldError> {
    let Some(text) = raw else { return Ok(default) };
    parsed(
        field,
        text.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("must be a whole number from 1 to {max}, got {text:?}")),
    )
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/members/{vip_accountno}/entries",
    tag = "native",
    operation_id = "member_entries",
    summary = "A member's movements, newest first",
    params(
        ("vip_accountno" = String, Path, description = "An account number or an identity"),
        ("page" = Option<String>, Query, description = "From 1 (default 1)"),
        ("page_size" = Option<String>, Query, description = "1 to 200 (default 50)")
    ),
    responses((status = 200, description = "One page of movements", body = crate::error::Envelope<HistoryData>)),
    security(("api_key" = []))
)]
pub async fn member_entries(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, HistoryError> {
    let vip = parsed("vip_accountno", VipAccountNo::parse(&path.into_inner()))?;
    let page = page_number("page", &query.page, 1, 1_000_000)?;
    let page_size = page_number(
        "page_size",
        &query.page_size,
        PAGE_SIZE_DEFAULT,
        PAGE_SIZE_MAX,
    )?;
    let lookup = vip.clone();
    // One read for both. A page is a range of one covering index: short enough for the worker
    // itself on SQLite (`read_ledger`) unless the caller skips far into it.
    let rules = state.rules.current();
    let read = move |conn: &mut crate::ledger::Conn| {
        let Some(history) = service::member_history(conn, &lookup, page, page_size)? else {
            return Ok(None);
        };
        let tier = service::member_tier(conn, &rules, &lookup, Utc::now())?;
        Ok(Some((history, tier)))
    };
    let length = match (page - 1).saturating_mul(page_size) {
        skipped if skipped <= ENTRIES_SKIPPED_ON_WORKER_MAX => super::ReadLength::Short,
        _ => super::ReadLength::Long,
    };
    let found = super::read_ledger(&state, length, read).await??;
    let (history, tier) = found.ok_or_else(|| HistoryError::NotFound(format!("member {vip}")))?;
    let mut data = HistoryData::new(&vip, page, page_size, history);
    data.tier = tier.as_ref().map(super::balance::TierData::from);
    Ok(success(data))
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/trades/{number}",
    tag = "native",
    operation_id = "trade",
    summary = "One trade by trade_no or out_trade_no: grants, movements, refunds",
    params(("number" = String, Path, description = "trade_no or out_trade_no")),
    responses((status = 200, description = "The trade", body = crate::error::Envelope<TradeData>)),
    security(("api_key" = []))
)]
pub async fn trade(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, HistoryError> {
    let number = path.into_inner();
    let lookup = number.clone();
    let detail = super::on_pool(state.clone(), move || {
        service::trade_detail(&state.store, &lookup)
    })
    .await??
    .ok_or_else(|| HistoryError::NotFound(format!("trade {number}")))?;
    Ok(success(
        TradeData::try_from(detail).map_err(HistoryError::Corrupt)?,
    ))
}
