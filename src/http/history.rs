//! `GET /v1/point-engine/members/{vip_accountno}/entries?page=&page_size=`: a member's
//! movements, newest first. `GET /v1/point-engine/trades/{trade_no or out_trade_no}`: one trade
//! with its grants and every movement that names it.

use super::fields::{parsed, FieldError};
use super::json::{self, UtcMillis};
use crate::domain::{Amount, VipAccountNo};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::history::{History, Movement, Movements, TradeDetail, PAGE_SIZE_MAX};
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{http::header::ContentType, web, HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub const PAGE_SIZE_DEFAULT: i64 = 50;

/// A page that skips more of a member's entries than this is read on a blocking thread, not
/// on the worker (SQLite) nor with other pages (PostgreSQL's reads probe): skipping costs a
/// step of the index for each entry skipped.
const ENTRIES_SKIPPED_ON_WORKER_MAX: i64 = 1_000;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page: Option<String>,
    page_size: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MovementData<'a> {
    pub entry_id: i64,
    pub kind: &'a str,
    pub point: i64,
    #[serde(rename = "type")]
    pub point_type: &'a str,
    pub campaign_code: &'a str,
    pub trade_no: &'a str,
    pub out_trade_no: &'a str,
    /// When the movement counts for finance (an expiry: the end of the expiry date).
    #[schema(value_type = String)]
    pub effective_time: UtcMillis,
    #[schema(value_type = String)]
    pub created_time: UtcMillis,
}

/// Borrows the movement's text: a page holds up to `PAGE_SIZE_MAX` of them, kept as read.
impl<'a> From<Movement<'a>> for MovementData<'a> {
    fn from(m: Movement<'a>) -> Self {
        Self {
            entry_id: m.id,
            kind: m.kind,
            point: m.points,
            point_type: m.point_type,
            campaign_code: m.campaign_code,
            trade_no: m.trade_no,
            out_trade_no: m.out_trade_no,
            effective_time: UtcMillis(m.effective_at),
            created_time: UtcMillis(m.created_at),
        }
    }
}

/// Movements written as a list of `MovementData`, each from the movements as read (or kept),
/// without a copy of their text.
#[derive(Debug)]
pub struct MovementsData(std::sync::Arc<Movements>);

impl Serialize for MovementsData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(MovementData::from))
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
    #[schema(value_type = Vec<MovementData>)]
    pub entries: MovementsData,
}

impl HistoryData {
    /// The body `success(self)` answers, written by hand: serde_json escapes every key and text
    /// of a page's hundreds in a call of its own, where nearly none needs it (a kept page took
    /// 70 µs of server CPU with serde, 50 µs so). A property test checks the two agree byte for
    /// byte.
    pub fn success_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 320 * self.entries.0.len());
        out.extend_from_slice(br#"{"code":0,"msg":"success","data":{"vip_accountno":"#);
        json::text(&mut out, &self.vip_accountno);
        for (key, n) in [
            (&br#","page":"#[..], self.page),
            (br#","page_size":"#, self.page_size),
            (br#","total":"#, self.total),
        ] {
            out.extend_from_slice(key);
            json::number(&mut out, n);
        }
        if let Some(tier) = &self.tier {
            out.extend_from_slice(br#","tier":"#);
            json::value(&mut out, tier);
        }
        out.extend_from_slice(br#","entries":["#);
        for (i, m) in self.entries.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"entry_id":"#);
            json::number(&mut out, m.id);
            out.extend_from_slice(br#","kind":"#);
            json::text(&mut out, m.kind);
            out.extend_from_slice(br#","point":"#);
            json::number(&mut out, m.points);
            for (key, text) in [
                (&br#","type":"#[..], m.point_type),
                (br#","campaign_code":"#, m.campaign_code),
                (br#","trade_no":"#, m.trade_no),
                (br#","out_trade_no":"#, m.out_trade_no),
            ] {
                out.extend_from_slice(key);
                json::text(&mut out, text);
            }
            out.extend_from_slice(br#","effective_time":"#);
            json::instant(&mut out, m.effective_at, SecondsFormat::Millis);
            out.extend_from_slice(br#","created_time":"#);
            json::instant(&mut out, m.created_at, SecondsFormat::Millis);
            out.push(b'}');
        }
        out.extend_from_slice(b"]}}");
        out
    }

    pub fn new(vip: &VipAccountNo, page: i64, page_size: i64, history: History) -> Self {
        Self {
            vip_accountno: vip.to_string(),
            page,
            page_size,
            total: history.total,
            tier: None,
            entries: MovementsData(history.movements),
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
    #[schema(value_type = Vec<MovementData>)]
    pub entries: MovementsData,
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
            entries: MovementsData(detail.movements.clone()),
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
    let pages = state.store.pages.clone();
    let length = match (page - 1).saturating_mul(page_size) {
        skipped if skipped <= ENTRIES_SKIPPED_ON_WORKER_MAX => super::ReadLength::Short,
        _ => super::ReadLength::Long,
    };
    // PostgreSQL, without tiers, a page near the start: the member and its newest entry asked
    // with other reads', then its page known for them or read with other pages, without a
    // connection of the pool.
    let now = Utc::now();
    let member = match (service::tier_reads_ledger(&rules, now), length) {
        (false, super::ReadLength::Short) => state.store.member_version(&vip).await,
        _ => None,
    };
    if let Some(member) = member {
        if let Some(history) = state.store.member_page(member, page, page_size).await {
            return Ok(page_response(HistoryData::new(
                &vip, page, page_size, history,
            )));
        }
    }
    let read = move |conn: &mut crate::ledger::Conn| {
        let history = match member {
            Some(member) => service::found_member_history(conn, member, page, page_size, &pages)?,
            None => match service::member_history(conn, &lookup, page, page_size, &pages)? {
                Some(history) => history,
                None => return Ok(None),
            },
        };
        let tier = service::member_tier(conn, &rules, &lookup, now)?;
        Ok(Some((history, tier)))
    };
    let found = super::read_ledger(&state, length, read).await??;
    let (history, tier) = found.ok_or_else(|| HistoryError::NotFound(format!("member {vip}")))?;
    let mut data = HistoryData::new(&vip, page, page_size, history);
    data.tier = tier.as_ref().map(super::balance::TierData::from);
    Ok(page_response(data))
}

fn page_response(data: HistoryData) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(data.success_json())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::http::json::tests::any_text;

    prop_compose! {
        fn any_row()(
            id in any::<i64>(),
            points in any::<i64>(),
            texts in [any_text(), any_text(), any_text(), any_text(), any_text()],
            effective_at_ms in -62_167_219_200_000i64..=300_000_000_000_000,
            created_at_ms in -62_167_219_200_000i64..=253_402_300_799_999,
        ) -> crate::ledger::models::ShownEntryRow {
            let [kind, point_type, campaign_code, trade_no, out_trade_no] = texts;
            crate::ledger::models::ShownEntryRow {
                id,
                kind: kind.chars().take(30).collect(),
                points,
                point_type: point_type.chars().take(30).collect(),
                campaign_code,
                trade_no,
                out_trade_no,
                effective_at_ms,
                created_at_ms,
            }
        }
    }

    proptest! {
        #[test]
        fn a_page_is_written_by_hand_as_serde_json_writes_it(
            vip in any_text(),
            (page, page_size, total) in (any::<i64>(), any::<i64>(), any::<i64>()),
            rows in proptest::collection::vec(any_row(), 0..6),
            tier in proptest::option::of([any_text(), any_text(), any_text(), any_text()]),
        ) {
            let mut data = HistoryData {
                vip_accountno: vip,
                page,
                page_size,
                total,
                tier: tier.map(|[name, qualifying, next_tier, to_next_tier]| {
                    super::super::balance::TierData { name, qualifying, next_tier, to_next_tier }
                }),
                entries: MovementsData(std::sync::Arc::new(
                    Movements::of(rows).unwrap(),
                )),
            };
            let serde = serde_json::to_vec(&crate::error::Envelope {
                code: 0,
                msg: "success".to_string(),
                data: Some(&data),
            })
            .unwrap();
            prop_assert_eq!(
                String::from_utf8(data.success_json()).unwrap(),
                String::from_utf8(serde).unwrap()
            );
            data.entries = MovementsData(std::sync::Arc::new(Movements::of(vec![]).unwrap()));
            prop_assert!(String::from_utf8(data.success_json()).unwrap().ends_with(r#""entries":[]}}"#));
        }
    }
}
