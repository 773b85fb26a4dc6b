//! `POST /v1/point-engine/trade-create`: the native contract
//! (shared/seeds/point-engine-trade-create.md).

use super::fields::{self, FieldError};
use crate::domain::trade::{parse_free_text, parse_rfc3339};
use crate::domain::{
    Amount, CurrencyCode, ExpireType, Grant, ImageUrl, InvoiceId, OutTradeNo, PaymentMethod,
    Points, StoreCode, Trade, VipAccountNo,
};
use crate::error::{busy, failure, internal, success, ErrorCode};
use crate::ledger::probe::Probed;
use crate::ledger::writer::Answer;
use crate::ledger::{PostError, Posted};
use crate::rules::EvaluateError;
use crate::service::{self, ServiceError};
use crate::state::AppState;
use actix_web::{web, HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body as sent: every field loosely typed, so that a wrong type is reported by name.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TradeCreateRequest {
    /// The member: an account number, or an identity (`TEL:<phone>`, `WX:<openid>`, `CARD:<code>`).
    #[schema(value_type = String, required = true, example = "040xxxx")]
    vip_accountno: Option<Value>,
    /// The caller's order number: the idempotency key.
    #[schema(value_type = String, required = true, example = "XXXX")]
    out_trade_no: Option<Value>,
    #[schema(value_type = String, required = true, example = "DP01XXXX")]
    store_code: Option<Value>,
    #[schema(value_type = String, required = true, example = "123456")]
    invoice_id: Option<Value>,
    /// A decimal with at most 2 places, as a string or a number.
    #[schema(value_type = String, required = true, example = "1000.00")]
    total_amount: Option<Value>,
    /// At most total_amount.
    #[schema(value_type = String, required = true, example = "1000.00")]
    payment_amount: Option<Value>,
    #[schema(value_type = String, required = true, example = "Visa")]
    payment_method: Option<Value>,
    /// An ISO 4217 code the program accepts (default HKD).
    #[schema(value_type = String, example = "HKD")]
    currency: Option<Value>,
    /// RFC 3339; not more than the clock skew in the future.
    #[schema(value_type = String, required = true, format = DateTime, example = "2023-01-20T10:00:00+08:00")]
    sales_time: Option<Value>,
    #[schema(value_type = String, required = true, format = DateTime, example = "2023-01-20T10:00:00+08:00")]
    submit_time: Option<Value>,
    #[schema(value_type = String, required = true, format = DateTime, example = "2023-01-20T10:00:00+08:00")]
    approval_time: Option<Value>,
    /// Points to spend on this trade, an integer as a string or a number.
    #[schema(value_type = String, example = "0")]
    burn_point: Option<Value>,
    #[schema(value_type = String, example = "")]
    resource: Option<Value>,
    #[schema(value_type = String, example = "")]
    remark: Option<Value>,
    #[schema(value_type = Vec<String>, example = json!(["https://xxxx"]))]
    receipt_image_url: Option<Value>,
    #[schema(value_type = Vec<String>, example = json!(["https://xxxx"]))]
    payment_image_url: Option<Value>,
}

/// The currency when the request names none.
pub const CURRENCY_DEFAULT: &str = "HKD";

impl TradeCreateRequest {
    /// Parses the request into a trade, checking fields in the document's table order.
    pub fn into_trade(
        self,
        now: DateTime<Utc>,
        clock_skew_s_max: u32,
    ) -> Result<Trade, FieldError> {
        use fields::*;
        let vip_accountno = parsed(
            "vip_accountno",
            VipAccountNo::parse(&required_text("vip_accountno", &self.vip_accountno)?),
        )?;
        let out_trade_no = parsed(
            "out_trade_no",
            OutTradeNo::parse(&required_text("out_trade_no", &self.out_trade_no)?),
        )?;
        let store_code = parsed(
            "store_code",
            StoreCode::parse(&required_text("store_code", &self.store_code)?),
        )?;
        let invoice_id = parsed(
            "invoice_id",
            InvoiceId::parse(&required_text("invoice_id", &self.invoice_id)?),
        )?;
        let total_amount = parsed(
            "total_amount",
            Amount::parse(&required_decimal_text("total_amount", &self.total_amount)?),
        )?;
        let payment_amount = parsed(
            "payment_amount",
            Amount::parse(&required_decimal_text(
                "payment_amount",
                &self.payment_amount,
            )?),
        )?;
        if payment_amount > total_amount {
            return Err(FieldError {
                field: "payment_amount",
                problem: format!(
                    "{payment_amount} must not be more than total_amount {total_amount}"
                ),
            });
        }
        let payment_method = parsed(
            "payment_method",
            PaymentMethod::parse(&required_text("payment_method", &self.payment_method)?),
        )?;
        let currency = match optional_text("currency", &self.currency)? {
            Some(code) if !code.trim().is_empty() => {
                parsed("currency", CurrencyCode::parse(&code))?
            }
            _ => CurrencyCode::parse(CURRENCY_DEFAULT).expect("the default currency is valid"),
        };
        let sales_time = parsed(
            "sales_time",
            parse_rfc3339(&required_text("sales_time", &self.sales_time)?),
        )?;
        let clock = Clock {
            now,
            skew_s_max: clock_skew_s_max,
        };
        if let Some(problem) = clock.future(sales_time) {
            return Err(FieldError {
                field: "sales_time",
                problem,
            });
        }
        let submit_time = parsed(
            "submit_time",
            parse_rfc3339(&required_text("submit_time", &self.submit_time)?),
        )?;
        let approval_time = parsed(
            "approval_time",
            parse_rfc3339(&required_text("approval_time", &self.approval_time)?),
        )?;
        let burn_point = match optional_integer_text("burn_point", &self.burn_point)? {
            Some(text) => parsed("burn_point", Points::parse(&text))?,
            None => Points::ZERO,
        };
        let resource = optional_text("resource", &self.resource)?.unwrap_or_default();
        let resource = parsed(
            "resource",
            parse_free_text(&resource, Trade::RESOURCE_LEN_MAX),
        )?;
        let remark = optional_text("remark", &self.remark)?.unwrap_or_default();
        let remark = parsed("remark", parse_free_text(&remark, Trade::REMARK_LEN_MAX))?;
        let urls =
            |field: &'static str, value: &Option<Value>| -> Result<Vec<ImageUrl>, FieldError> {
                optional_text_list(field, value, ImageUrl::PER_TRADE_MAX)?
                    .iter()
                    .map(|url| parsed(field, ImageUrl::parse(url)))
                    .collect()
            };
        let receipt_image_urls = urls("receipt_image_url", &self.receipt_image_url)?;
        let payment_image_urls = urls("payment_image_url", &self.payment_image_url)?;
        Ok(Trade {
            vip_accountno,
            out_trade_no,
            store_code,
            invoice_id,
            total_amount,
            payment_amount,
            payment_method,
            currency,
            sales_time,
            submit_time,
            approval_time,
            burn_point,
            resource,
            remark,
            receipt_image_urls,
            payment_image_urls,
            lines: Vec::new(),
            post_fee: Amount::ZERO,
            discount: Amount::ZERO,
        })
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TradeCreateData {
    pub trade_no: String,
    pub total_point: i64,
    pub detail: Vec<GrantDetail>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GrantDetail {
    pub point: i64,
    #[serde(rename = "type")]
    pub point_type: &'static str,
    pub expire_type: &'static str,
    /// The quarter end date for QUARTER grants; "" for KDP grants, as the document shows.
    pub expire_time: String,
    pub remark: String,
    pub campaign_code: String,
}

impl From<&Grant> for GrantDetail {
    fn from(grant: &Grant) -> Self {
        // The contract shows QUARTER grants' dates and "" for KDP ones.
        let expire_time = match grant.expire_type {
            ExpireType::Quarter => grant.expire_date_text(),
            ExpireType::Kdp => String::new(),
        };
        Self {
            point: grant.points.value(),
            point_type: grant.point_type.as_str(),
            expire_type: grant.expire_type.as_str(),
            expire_time,
            remark: grant.remark.to_string(),
            campaign_code: grant.campaign_code_text().to_string(),
        }
    }
}

impl From<&Posted> for TradeCreateData {
    fn from(posted: &Posted) -> Self {
        Self {
            trade_no: posted.trade_no.to_string(),
            total_point: posted.grants.iter().map(|g| g.points.value()).sum(),
            detail: posted.grants.iter().map(GrantDetail::from).collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TradeCreateError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for TradeCreateError {
    fn error_response(&self) -> HttpResponse {
        use ServiceError::*;
        match self {
            Self::Invalid(e) => failure(ErrorCode::InvalidField, e.to_string()),
            Self::Service(Evaluate(EvaluateError::UnsupportedCurrency(c))) => failure(
                ErrorCode::InvalidField,
                format!("currency {c} is not accepted by this program"),
            ),
            Self::Service(Evaluate(EvaluateError::PointsOverflow)) => failure(
                ErrorCode::InvalidField,
                "payment_amount earns more points than one grant may hold",
            ),
            Self::Service(Post(PostError::Conflict { trade_no })) => failure(
                ErrorCode::Conflict,
                format!(
                    "out_trade_no was already used by trade {trade_no} with a different request"
                ),
            ),
            Self::Service(Post(PostError::InsufficientPoints {
                requested,
                available,
            })) => failure(
                ErrorCode::InsufficientPoints,
                format!("burn_point {requested} is more than the {available} points available"),
            ),
            Self::Service(Post(e @ PostError::BalanceLimit { .. })) => {
                failure(ErrorCode::BalanceLimit, e.to_string())
            }
            Self::Service(Unavailable(e)) => busy("trade-create", e),
            other => internal("trade-create", other),
        }
    }

    fn status_code(&self) -> actix_web::http::StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    post,
    path = "/v1/point-engine/trade-create",
    tag = "native",
    operation_id = "trade_create",
    summary = "Grant points for a receipt (idempotent by out_trade_no)",
    request_body = TradeCreateRequest,
    responses((status = 200, description = "The points granted (or, for the same request again, granted the first time)", body = crate::error::Envelope<TradeCreateData>)),
    security(("api_key" = []))
)]
pub async fn trade_create(
    state: web::Data<AppState>,
    body: web::Json<TradeCreateRequest>,
) -> Result<HttpResponse, TradeCreateError> {
    let now = Utc::now();
    let telemetry = state.telemetry.clone();
    let mut burned = 0;
    let posted = async {
        let trade = body.into_inner().into_trade(now, state.clock_skew_s_max)?;
        burned = trade.burn_point.value();
        let fingerprint = trade.fingerprint();
        if let Some(known) = service::recent_answer(&state.store, &trade, &fingerprint) {
            return known.map_err(TradeCreateError::from);
        }
        let out_trade_no = trade.out_trade_no.clone();
        let rules = state.rules.current();
        // The replay read on this worker where the store allows it (`Store::conn_here`); on
        // SQLite the write is then only queued, and awaited. On PostgreSQL with writer lanes the
        // read is asked with other receipts' (`Store::probe`), and a new trade queued from here.
        let answer = match state.store.conn_here() {
            Some(conn) => {
                service::create_trade_with(conn, &state.store, rules, fingerprint, trade, now)
            }
            None => match state
                .store
                .probe(trade.out_trade_no.as_str(), fingerprint)
                .await
            {
                Probed::New => {
                    service::create_new_trade(&state.store, rules, fingerprint, trade, now)
                }
                Probed::Recorded(replayed) => Answer::Ready(replayed.map_err(Into::into)),
                Probed::Unknown => {
                    let pooled = state.clone();
                    super::on_pool(state.clone(), move || {
                        service::create_trade(&pooled.store, rules, fingerprint, trade, now)
                    })
                    .await?
                }
            },
        };
        let posted = answer.outcome().await?;
        service::remember(&state.store, &out_trade_no, fingerprint, &posted);
        Ok(posted)
    }
    .await;
    telemetry.post("native", &posted, burned);
    Ok(success(TradeCreateData::from(&posted?)))
}
