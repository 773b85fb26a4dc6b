//! `POST /v1/point-engine/trade-refund`: a full or partial refund of a trade posted through
//! trade-create. The points the trade keeps are re-priced at its net amount; the response lists
//! what was reversed.

use super::fields::{self, FieldError};
use crate::domain::trade::parse_rfc3339;
use crate::domain::{Amount, OutRefundNo, OutTradeNo, Refund};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::refund::{RefundLine, Refunded};
use crate::ledger::PostError;
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body as sent, loosely typed so that a wrong type is reported by name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TradeRefundRequest {
    /// The caller's refund number: the idempotency key.
    #[schema(value_type = String, required = true, example = "XXXX-R1")]
    out_refund_no: Option<Value>,
    /// The trade refunded, by its out_trade_no or trade_no.
    #[schema(value_type = String, required = true, example = "XXXX")]
    out_trade_no: Option<Value>,
    /// A decimal with at most 2 places; at most what is left of the payment.
    #[schema(value_type = String, required = true, example = "100.00")]
    refund_amount: Option<Value>,
    #[schema(value_type = String, required = true, format = DateTime, example = "2023-01-21T10:00:00+08:00")]
    refund_time: Option<Value>,
}

impl TradeRefundRequest {
    pub fn into_refund(
        self,
        now: DateTime<Utc>,
        clock_skew_s_max: u32,
    ) -> Result<Refund, FieldError> {
        use fields::*;
        let out_refund_no = parsed(
            "out_refund_no",
            OutRefundNo::parse(&required_text("out_refund_no", &self.out_refund_no)?),
        )?;
        let out_trade_no = parsed(
            "out_trade_no",
            OutTradeNo::parse(&required_text("out_trade_no", &self.out_trade_no)?),
        )?;
        let refund_amount = parsed(
            "refund_amount",
            Amount::parse(&required_decimal_text(
                "refund_amount",
                &self.refund_amount,
            )?),
        )?;
        let refund_time = parsed(
            "refund_time",
            parse_rfc3339(&required_text("refund_time", &self.refund_time)?),
        )?;
        let clock = fields::Clock {
            now,
            skew_s_max: clock_skew_s_max,
        };
        if let Some(problem) = clock.future(refund_time) {
            return Err(FieldError {
                field: "refund_time",
                problem,
            });
        }
        Ok(Refund::new(
            out_refund_no,
            out_trade_no,
            refund_amount,
            refund_time,
        ))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TradeRefundData {
    pub out_refund_no: String,
    pub trade_no: String,
    pub out_trade_no: String,
    pub refund_amount: String,
    /// Every refund of the trade so far, this one included.
    pub refunded_amount: String,
    pub payment_amount: String,
    /// Points the trade's grants lost to this refund.
    pub reversed_point: i64,
    /// Of those, what had expired before the refund: gone from the balance already.
    pub expired_point: i64,
    /// Of those, what the member's points could not cover.
    pub shortfall_point: i64,
    /// Of the shortfall, what the member owes (allow_negative only).
    pub owed_point: i64,
    /// Burned points given back.
    pub returned_burn_point: i64,
    /// Of those, what settled earlier refunds of the trades that earned them (points those
    /// refunds could not take back when they were made); the rest is the member's again.
    pub settled_point: i64,
    pub shortfall_policy: &'static str,
    pub detail: Vec<ReversalDetail>,
    /// The earlier refunds the returned points settled, per grant.
    pub settled: Vec<SettledDetail>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SettledDetail {
    /// The trade whose earlier refund was settled.
    pub out_trade_no: String,
    #[serde(rename = "type")]
    pub point_type: &'static str,
    pub campaign_code: String,
    pub point: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReversalDetail {
    #[serde(rename = "type")]
    pub point_type: &'static str,
    pub campaign_code: String,
    /// What the grant earned.
    pub granted_point: i64,
    /// What this refund took from it.
    pub point: i64,
    /// Of `point`, what had expired before the refund.
    pub expired: i64,
    /// Of `point`, what the member's points could not cover.
    pub shortfall: i64,
    pub owed: i64,
}

impl From<&RefundLine> for ReversalDetail {
    fn from(line: &RefundLine) -> Self {
        Self {
            point_type: line.grant.point_type.as_str(),
            campaign_code: line.grant.campaign_code_text().to_string(),
            granted_point: line.grant.points.value(),
            point: line.points,
            expired: line.expired,
            shortfall: line.shortfall,
            owed: line.owed,
        }
    }
}

impl From<&Refunded> for TradeRefundData {
    fn from(refunded: &Refunded) -> Self {
        Self {
            out_refund_no: refunded.out_refund_no.clone(),
            trade_no: refunded.trade_no.to_string(),
            out_trade_no: refunded.out_trade_no.clone(),
            refund_amount: refunded.refund_amount.to_string(),
            refunded_amount: refunded.refunded_total.to_string(),
            payment_amount: refunded.payment_amount.to_string(),
            reversed_point: refunded.reversed_points(),
            expired_point: refunded.lines.iter().map(|l| l.expired).sum(),
            shortfall_point: refunded.shortfall_points(),
            owed_point: refunded.lines.iter().map(|l| l.owed).sum(),
            returned_burn_point: refunded.burn_returned,
            settled_point: refunded.settled.iter().map(|s| s.points).sum(),
            shortfall_policy: refunded.policy.as_str(),
            detail: refunded.lines.iter().map(ReversalDetail::from).collect(),
            settled: refunded
                .settled
                .iter()
                .map(|s| SettledDetail {
                    out_trade_no: s.out_trade_no.clone(),
                    point_type: s.grant.point_type.as_str(),
                    campaign_code: s.grant.campaign_code_text().to_string(),
                    point: s.points,
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TradeRefundError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for TradeRefundError {
    fn error_response(&self) -> HttpResponse {
        use ServiceError::*;
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::Service(e @ (RefundBeforeSale { .. } | ZeroRefund)) => {
                failure(ErrorCode::InvalidField, e.to_string())
            }
            Self::Service(TradeNotFound(no)) => failure(
                ErrorCode::NotFound,
                format!("no trade has out_trade_no {no}"),
            ),
            Self::Service(Post(e @ PostError::RefundConflict { .. })) => {
                failure(ErrorCode::Conflict, e.to_string())
            }
            Self::Service(Post(
                e @ (PostError::OverRefund { .. } | PostError::RefundedInFull { .. }),
            )) => failure(ErrorCode::RefundExceedsPayment, e.to_string()),
            Self::Service(Post(PostError::Race)) => busy("trade-refund", self),
            Self::Service(Unavailable(e)) => busy("trade-refund", e),
            other => internal("trade-refund", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    post,
    path = "/v1/point-engine/trade-refund",
    tag = "native",
    operation_id = "trade_refund",
    summary = "Refund part or all of a trade's payment: its points are taken back in proportion (idempotent by out_refund_no)",
    request_body = TradeRefundRequest,
    responses((status = 200, description = "What the refund took back and gave back", body = crate::error::Envelope<TradeRefundData>)),
    security(("api_key" = []))
)]
pub async fn trade_refund(
    state: web::Data<AppState>,
    body: web::Json<TradeRefundRequest>,
) -> Result<HttpResponse, TradeRefundError> {
    let now = Utc::now();
    let refund = body.into_inner().into_refund(now, state.clock_skew_s_max)?;
    let telemetry = state.telemetry.clone();
    let refunded = super::on_pool(state.clone(), move || {
        service::refund_trade(
            &state.store,
            state.rules.current(),
            refund,
            state.refund_shortfall_policy,
            now,
        )
    })
    .await??;
    if !refunded.replayed {
        telemetry.points("reversed", refunded.lines.iter().map(|l| l.points).sum());
        telemetry.points("returned", refunded.burn_returned);
    }
    Ok(success(TradeRefundData::from(&refunded)))
}
