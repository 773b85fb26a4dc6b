//! `GET /v1/point-engine/members/{vip_accountno}/balance[?as_of=RFC3339]`: a member's usable
//! points and lots at one moment (now by default).

use super::fields::{parsed, FieldError};
use super::json;
use crate::domain::trade::parse_rfc3339;
use crate::domain::VipAccountNo;
use crate::error::{busy, failure, internal, ErrorCode};
use crate::ledger::{Balance, HeldLot};
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{http::header::ContentType, web, HttpResponse, ResponseError};
use chrono::{SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct BalanceQuery {
    as_of: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BalanceData {
    pub vip_accountno: String,
    /// What can be burned: usable points less `owed_point` (negative while the member owes).
    pub available_point: i64,
    pub lots: Vec<LotDetail>,
    /// Points still in the program's pending period (`pending_days`): shown, not burnable.
    pub pending_point: i64,
    pub pending_lots: Vec<LotDetail>,
    /// Points owed from refunds under the allow_negative policy; later earns pay them off.
    pub owed_point: i64,
    /// The member's tier, when the program has tiers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierData>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TierData {
    pub name: String,
    /// What qualifies the member now: points (or spend, in base currency) in the current window.
    pub qualifying: String,
    /// The next tier up ("" at the top) and what it still needs.
    pub next_tier: String,
    pub to_next_tier: String,
}

impl From<&service::MemberTier> for TierData {
    fn from(tier: &service::MemberTier) -> Self {
        let (next_tier, to_next_tier) = match &tier.next {
            Some((name, from)) => (name.clone(), (*from - tier.qualifying).max(Decimal::ZERO)),
            None => (String::new(), Decimal::ZERO),
        };
        Self {
            name: tier.name.clone(),
            qualifying: tier.qualifying.normalize().to_string(),
            next_tier,
            to_next_tier: to_next_tier.normalize().to_string(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LotDetail {
    pub point: i64,
    #[serde(rename = "type")]
    pub point_type: &'static str,
    pub expire_type: &'static str,
    /// The last day the points are usable, KDP ones included; "" when they never expire.
    pub expire_time: String,
    pub campaign_code: String,
    /// When the points become usable (RFC 3339, UTC).
    pub available_time: String,
}

impl From<&HeldLot> for LotDetail {
    fn from(lot: &HeldLot) -> Self {
        Self {
            point: lot.points.value(),
            point_type: lot.point_type.as_str(),
            expire_type: lot.expire_type.as_str(),
            expire_time: lot.expire_date.clone(),
            campaign_code: lot.campaign_code.clone(),
            available_time: lot
                .available_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// The body `success(BalanceData::from(balance))` with `tier` answers, written by hand
/// (`json`): a balance of 80 lots has about 800 keys and texts, each a call of its own in
/// serde_json. A property test checks the two agree byte for byte.
pub fn balance_success_json(balance: &Balance, tier: Option<&TierData>) -> Vec<u8> {
    let lots = balance.lots.len() + balance.pending_lots.len();
    let mut out = Vec::with_capacity(256 + 160 * lots);
    out.extend_from_slice(br#"{"code":0,"msg":"success","data":{"vip_accountno":"#);
    json::text(&mut out, balance.vip_accountno.as_str());
    out.extend_from_slice(br#","available_point":"#);
    json::number(&mut out, balance.spendable());
    out.extend_from_slice(br#","lots":"#);
    lots_json(&mut out, &balance.lots);
    out.extend_from_slice(br#","pending_point":"#);
    json::number(&mut out, balance.pending.value());
    out.extend_from_slice(br#","pending_lots":"#);
    lots_json(&mut out, &balance.pending_lots);
    out.extend_from_slice(br#","owed_point":"#);
    json::number(&mut out, balance.owed.value());
    if let Some(tier) = tier {
        out.extend_from_slice(br#","tier":"#);
        json::value(&mut out, tier);
    }
    out.extend_from_slice(b"}}");
    out
}

/// `lots` as a list of `LotDetail`.
fn lots_json(out: &mut Vec<u8>, lots: &[HeldLot]) {
    out.push(b'[');
    for (i, lot) in lots.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"point":"#);
        json::number(out, lot.points.value());
        for (key, text) in [
            (&br#","type":"#[..], lot.point_type.as_str()),
            (br#","expire_type":"#, lot.expire_type.as_str()),
            (br#","expire_time":"#, &lot.expire_date),
            (br#","campaign_code":"#, &lot.campaign_code),
        ] {
            out.extend_from_slice(key);
            json::text(out, text);
        }
        out.extend_from_slice(br#","available_time":"#);
        json::instant(out, lot.available_at, SecondsFormat::Secs);
        out.push(b'}');
    }
    out.push(b']');
}

impl From<&Balance> for BalanceData {
    fn from(balance: &Balance) -> Self {
        Self {
            available_point: balance.spendable(),
            vip_accountno: balance.vip_accountno.to_string(),
            lots: balance.lots.iter().map(LotDetail::from).collect(),
            pending_point: balance.pending.value(),
            pending_lots: balance.pending_lots.iter().map(LotDetail::from).collect(),
            owed_point: balance.owed.value(),
            tier: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("member {0} not found")]
    NotFound(VipAccountNo),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for BalanceError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::NotFound(vip) => failure(ErrorCode::NotFound, format!("member {vip} not found")),
            Self::Service(ServiceError::Unavailable(e)) => busy("balance", e),
            other => internal("balance", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    get,
    path = "/v1/point-engine/members/{vip_accountno}/balance",
    tag = "native",
    operation_id = "member_balance",
    summary = "A member's usable points and lots",
    params(
        ("vip_accountno" = String, Path, description = "An account number or an identity (TEL:…, WX:…, CARD:…)"),
        ("as_of" = Option<String>, Query, format = DateTime, description = "RFC 3339 (default: now)")
    ),
    responses((status = 200, description = "The balance", body = crate::error::Envelope<BalanceData>)),
    security(("api_key" = []))
)]
pub async fn balance(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<BalanceQuery>,
) -> Result<HttpResponse, BalanceError> {
    let vip = parsed("vip_accountno", VipAccountNo::parse(&path.into_inner()))?;
    let as_of = match &query.as_of {
        Some(text) => parsed("as_of", parse_rfc3339(text))?.to_utc(),
        None => Utc::now(),
    };
    let lookup = vip.clone();
    let rules = state.rules.current();
    let known = state.store.balances.clone();
    // PostgreSQL, without tiers: the member and its ledger version asked with other reads',
    // then its balance known for them or read with other balances', without a connection of
    // the pool.
    let member = match service::tier_reads_ledger(&rules, as_of) {
        false => state.store.member_version(&vip).await,
        true => None,
    };
    if let Some(member) = member {
        if let Some(balance) = state.store.member_balance(member, &vip, as_of).await {
            return Ok(balance_response(&balance, None));
        }
    }
    let found = super::read_ledger(&state, super::ReadLength::Short, move |conn| {
        let balance = match member {
            Some(member) => service::found_member_balance(conn, member, &lookup, as_of, &known)?,
            None => match service::member_balance(conn, &lookup, as_of, &known)? {
                Some(balance) => balance,
                None => return Ok(None),
            },
        };
        let tier = service::member_tier(conn, &rules, &lookup, as_of)?;
        Ok(Some((balance, tier)))
    })
    .await??;
    let (balance, tier) = found.ok_or(BalanceError::NotFound(vip))?;
    let tier = tier.as_ref().map(TierData::from);
    Ok(balance_response(&balance, tier.as_ref()))
}

fn balance_response(balance: &Balance, tier: Option<&TierData>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(balance_success_json(balance, tier))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExpireType, PointType, Points};
    use crate::http::json::tests::any_text;
    use proptest::prelude::*;

    prop_compose! {
        fn any_lot()(
            points in 0..=Points::MAX,
            e in any::<bool>(),
            kdp in any::<bool>(),
            expire_date in any_text(),
            campaign_code in any_text(),
            available_at_ms in -62_167_219_200_000i64..=300_000_000_000_000,
        ) -> HeldLot {
            HeldLot {
                point_type: if e { PointType::E } else { PointType::A },
                points: Points::new(points).unwrap(),
                expire_type: if kdp { ExpireType::Kdp } else { ExpireType::Quarter },
                expire_date,
                campaign_code,
                available_at: chrono::DateTime::from_timestamp_millis(available_at_ms).unwrap(),
            }
        }
    }

    proptest! {
        #[test]
        fn a_balance_is_written_by_hand_as_serde_json_writes_it(
            vip in "[A-Za-z0-9-]{1,20}",
            (available, pending, owed) in (0..=Points::MAX, 0..=Points::MAX, 0..=Points::MAX),
            lots in proptest::collection::vec(any_lot(), 0..5),
            pending_lots in proptest::collection::vec(any_lot(), 0..3),
            tier in proptest::option::of([any_text(), any_text(), any_text(), any_text()]),
        ) {
            let Ok(vip_accountno) = VipAccountNo::parse(&vip) else {
                return Ok(());
            };
            let balance = Balance {
                vip_accountno,
                available: Points::new(available).unwrap(),
                pending: Points::new(pending).unwrap(),
                lots,
                pending_lots,
                owed: Points::new(owed).unwrap(),
            };
            let tier = tier.map(|[name, qualifying, next_tier, to_next_tier]| TierData {
                name,
                qualifying,
                next_tier,
                to_next_tier,
            });
            let by_hand = balance_success_json(&balance, tier.as_ref());
            let mut data = BalanceData::from(&balance);
            data.tier = tier;
            let serde = serde_json::to_vec(&crate::error::Envelope {
                code: 0,
                msg: "success".to_string(),
                data: Some(data),
            })
            .unwrap();
            prop_assert_eq!(String::from_utf8(by_hand).unwrap(), String::from_utf8(serde).unwrap());
        }
    }
}
