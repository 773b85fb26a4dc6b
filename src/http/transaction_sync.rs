//! `POST /tp/services/transaction`: a POS's real-time transaction sync
//! (shared/seeds/realtime-transaction-sync.md). The customer is found, or created, by
//! `customer_identifier`; the purchase becomes a trade at the client's store.

use super::fields::{self, parsed, FieldError};
use crate::domain::{
    Amount, CurrencyCode, Gender, Identity, InvoiceId, OutTradeNo, PaymentMethod, Points, Profile,
    Sku, StoreCode, Trade, TradeLine,
};
use crate::ledger::PostError;
use crate::rules::EvaluateError;
use crate::service::{self, OrderRecord, ServiceError};
use crate::state::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The prefix of these trades' `out_trade_no`.
const OUT_TRADE_NO_PREFIX: &str = "TS-";

#[derive(Debug, Deserialize)]
pub struct TransactionRequest {
    transaction_id: Option<Value>,
    customer_identifier: Option<Value>,
    purchase_time: Option<Value>,
    purchase_amount: Option<Value>,
    coupon_detail_id: Option<Value>,
    coupon_amount: Option<Value>,
    wx_coupon_amount: Option<Value>,
    gender: Option<Value>,
    customer_nick_name: Option<Value>,
    customer_country: Option<Value>,
    customer_province: Option<Value>,
    customer_city: Option<Value>,
    goods_list: Option<Value>,
    coupon_id_list: Option<Value>,
}

/// The envelope of every answer, in the document's field order:
/// `{"status": {"code": "200", "message": …}, "result": …}`.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    status: EnvelopeStatus<'a>,
    result: Value,
}

#[derive(Debug, Serialize)]
struct EnvelopeStatus<'a> {
    code: String,
    message: &'a str,
}

/// A method other than POST, in this contract's envelope.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    answer(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
        Value::Null,
    )
}

fn answer(status: StatusCode, message: &str, result: Value) -> HttpResponse {
    HttpResponse::build(status).json(Envelope {
        status: EnvelopeStatus {
            code: status.as_u16().to_string(),
            message,
        },
        result,
    })
}

fn optional_amount(field: &'static str, value: &Option<Value>) -> Result<Amount, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(Amount::ZERO),
        some => parsed(
            field,
            Amount::parse(&fields::required_decimal_text(field, some)?),
        ),
    }
}

fn profile_field(field: &'static str, value: &Option<Value>) -> Result<Option<String>, FieldError> {
    match fields::optional_text(field, value)? {
        Some(text) => parsed(field, Profile::field(&text)),
        None => Ok(None),
    }
}

/// `purchase_time`: `yyyy-mm-dd HH:mm:ss` in the program's time zone.
fn purchase_time(
    raw: &str,
    tz: &crate::domain::ProgramTz,
) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    let local = NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S")
        .map_err(|_| format!("must be yyyy-mm-dd HH:mm:ss, got {raw:?}"))?;
    tz.from_local(local)
        .ok_or_else(|| format!("{raw:?} does not exist in the program's time zone"))
}

/// One `goods_list` item as a trade line: SKU = goods_id, amount = unit_price × quantity.
fn goods_line(index: usize, item: &Value) -> Result<TradeLine, FieldError> {
    let at = |problem: String| FieldError {
        field: "goods_list",
        problem: format!("item {index}: {problem}"),
    };
    let get = |name: &str| item.get(name).cloned();
    let text =
        |name: &'static str| fields::required_text(name, &get(name)).map_err(|e| at(e.to_string()));
    let sku = Sku::parse(&text("goods_id")?).map_err(|e| at(format!("goods_id {e}")))?;
    let name = text("goods_name")?;
    let quantity: i64 = fields::optional_integer_text("quantity", &get("quantity"))
        .map_err(|e| at(e.to_string()))?
        .ok_or_else(|| at("quantity is required".into()))?
        .trim()
        .parse()
        .map_err(|_| at("quantity must be a whole number".into()))?;
    let unit_price = fields::required_decimal_text("unit_price", &get("unit_price"))
        .map_err(|e| at(e.to_string()))
        .and_then(|t| Amount::parse(&t).map_err(|e| at(format!("unit_price {e}"))))?;
    let amount = unit_price
        .value()
        .checked_mul(quantity.into())
        .and_then(|v| Amount::new(v).ok())
        .ok_or_else(|| at("unit_price × quantity is out of range".into()))?;
    TradeLine::new(sku, &name, quantity, amount).map_err(at)
}

/// A parsed request: the customer, their profile, and the trade (its member filled in later).
pub struct Transaction {
    pub identity: Identity,
    pub profile: Profile,
    pub trade: Trade,
    pub transaction_id: String,
}

impl TransactionRequest {
    pub fn into_transaction(
        self,
        client: &crate::clients::PosClient,
        tz: &crate::domain::ProgramTz,
        currency: &CurrencyCode,
        clock: fields::Clock,
    ) -> Result<Transaction, FieldError> {
        use fields::*;
        let transaction_id = required_text("transaction_id", &self.transaction_id)?;
        let out_trade_no = parsed(
            "transaction_id",
            // A client's transaction ids are its own: scoped by the client.
            OutTradeNo::parse(&format!(
                "{OUT_TRADE_NO_PREFIX}{}-{}",
                client.key,
                transaction_id.trim()
            )),
        )?;
        let identity = parsed(
            "customer_identifier",
            Identity::customer(&required_text(
                "customer_identifier",
                &self.customer_identifier,
            )?),
        )?;
        let sales_time = parsed(
            "purchase_time",
            purchase_time(&required_text("purchase_time", &self.purchase_time)?, tz),
        )?;
        if let Some(problem) = clock.future(sales_time) {
            return Err(FieldError {
                field: "purchase_time",
                problem,
            });
        }
        let purchase_amount = parsed(
            "purchase_amount",
            Amount::parse(&required_decimal_text(
                "purchase_amount",
                &self.purchase_amount,
            )?),
        )?;
        let coupon = optional_amount("coupon_amount", &self.coupon_amount)?;
        let wx_coupon = optional_amount("wx_coupon_amount", &self.wx_coupon_amount)?;
        optional_integer_text("coupon_detail_id", &self.coupon_detail_id)?;
        optional_text_list("coupon_id_list", &self.coupon_id_list, 100)?;
        let discount = parsed(
            "coupon_amount",
            Amount::new(coupon.value() + wx_coupon.value()),
        )?;
        let total = parsed(
            "purchase_amount",
            Amount::new(purchase_amount.value() + discount.value()),
        )?;
        let gender = match &self.gender {
            None | Some(Value::Null) => None,
            Some(value) => Some(parsed(
                "gender",
                Gender::parse(&match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
            )?),
        };
        let profile = Profile {
            name: None,
            nick_name: profile_field("customer_nick_name", &self.customer_nick_name)?,
            gender,
            country: profile_field("customer_country", &self.customer_country)?,
            province: profile_field("customer_province", &self.customer_province)?,
            city: profile_field("customer_city", &self.customer_city)?,
        };
        let lines = match &self.goods_list {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() <= TradeLine::PER_TRADE_MAX => items
                .iter()
                .enumerate()
                .map(|(i, item)| goods_line(i, item))
                .collect::<Result<_, _>>()?,
            Some(Value::Array(_)) => {
                return Err(FieldError {
                    field: "goods_list",
                    problem: format!("must have at most {} items", TradeLine::PER_TRADE_MAX),
                })
            }
            Some(_) => {
                return Err(FieldError {
                    field: "goods_list",
                    problem: "must be an array".into(),
                })
            }
        };
        let trade = Trade {
            vip_accountno: identity.account_number(),
            out_trade_no,
            store_code: parsed("store", StoreCode::parse(&client.store_code))?,
            invoice_id: parsed("transaction_id", InvoiceId::parse(&transaction_id))?,
            total_amount: total,
            payment_amount: purchase_amount,
            payment_method: PaymentMethod::parse("POS").expect("a valid method"),
            currency: *currency,
            sales_time,
            submit_time: sales_time,
            approval_time: sales_time,
            burn_point: Points::ZERO,
            resource: service::TRANSACTION_SYNC_SOURCE.to_string(),
            remark: String::new(),
            receipt_image_urls: Vec::new(),
            payment_image_urls: Vec::new(),
            lines,
            post_fee: Amount::ZERO,
            discount,
        };
        Ok(Transaction {
            identity,
            profile,
            trade,
            transaction_id,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("Authorization must be \"bearer\" and a valid access_token")]
    Unauthorized,
    #[error("{}", crate::error::rate_limited_msg(*.0))]
    RateLimited(u32),
    #[error(transparent)]
    Body(#[from] super::BodyError),
    #[error("the body is not a valid JSON object: {0}")]
    NotJson(String),
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for TransactionError {
    fn error_response(&self) -> HttpResponse {
        use ServiceError::*;
        match self {
            Self::Unauthorized => answer(StatusCode::UNAUTHORIZED, &self.to_string(), Value::Null),
            Self::RateLimited(seconds) => {
                let mut response = answer(
                    StatusCode::TOO_MANY_REQUESTS,
                    &self.to_string(),
                    Value::Null,
                );
                crate::error::with_retry_after_s(&mut response, *seconds);
                response
            }
            Self::Body(super::BodyError::TooLarge(_)) => answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &self.to_string(),
                Value::Null,
            ),
            Self::Body(_) | Self::NotJson(_) => {
                answer(StatusCode::BAD_REQUEST, &self.to_string(), Value::Null)
            }
            Self::Invalid(e) => answer(StatusCode::BAD_REQUEST, &e.to_string(), Value::Null),
            Self::Service(Evaluate(EvaluateError::UnsupportedCurrency(c))) => answer(
                StatusCode::BAD_REQUEST,
                &format!("currency {c} is not accepted"),
                Value::Null,
            ),
            Self::Service(Post(PostError::Conflict { .. })) => answer(
                StatusCode::CONFLICT,
                "transaction_id was already used with a different request",
                Value::Null,
            ),
            Self::Service(Post(e @ PostError::BalanceLimit { .. })) => answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.to_string(),
                Value::Null,
            ),
            Self::Service(Evaluate(EvaluateError::PointsOverflow)) => answer(
                StatusCode::BAD_REQUEST,
                "purchase_amount earns more points than one grant may hold",
                Value::Null,
            ),
            Self::Service(Unavailable(e)) => {
                log::warn!("transaction sync: {e}");
                let mut response = answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy; nothing was written, retry",
                    Value::Null,
                );
                crate::error::with_retry_after(&mut response);
                response
            }
            other => {
                log::error!("transaction sync: {other}");
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error",
                    Value::Null,
                )
            }
        }
    }

    fn status_code(&self) -> StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    post,
    path = "/tp/services/transaction",
    tag = "pos",
    operation_id = "transaction_sync",
    summary = "Real-time transaction sync from a POS (the document's envelope)",
    request_body(content = Object, description = "The document's transaction"),
    responses(
        (status = 200, description = "Recorded: result is the record id", body = Object),
        (status = 400, description = "A field is missing or bad", body = Object),
        (status = 401, description = "No or a wrong token", body = Object),
        (status = 409, description = "transaction_id used with a different request", body = Object),
        (status = 413, description = "The body is too large", body = Object),
        (status = 429, description = "Over the client's rate limit", body = Object),
        (status = 503, description = "Busy; retry", body = Object)
    ),
    security(("pos_token" = []))
)]
pub async fn transaction(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, TransactionError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
        .ok_or(TransactionError::Unauthorized)?;
    let client = state
        .clients
        .pos_client(&token)
        .ok_or(TransactionError::Unauthorized)?
        .clone();
    let caller = format!("pos_client {}", client.name);
    state
        .take_rate(&caller)
        .map_err(TransactionError::RateLimited)?;
    req.extensions_mut().insert(super::auth::Caller(caller));
    // Authenticated: now the body. A JSON object only (serde would take an array as the
    // struct's fields in order).
    let bytes = super::read_body(payload, state.body_bytes_max).await?;
    let not_json =
        |e: serde_json::Error| TransactionError::NotJson(format!("Json deserialize error: {e}"));
    let body: TransactionRequest =
        match serde_json::from_slice::<Value>(&bytes).map_err(not_json)? {
            object @ Value::Object(_) => serde_json::from_value(object).map_err(not_json)?,
            _ => return Err(TransactionError::NotJson("it must be an object".into())),
        };
    let rules = state.rules.current();
    let record_body = json!({
        "coupon_detail_id": body.coupon_detail_id,
        "coupon_amount": body.coupon_amount,
        "wx_coupon_amount": body.wx_coupon_amount,
        "coupon_id_list": body.coupon_id_list,
        "client": client.name,
    })
    .to_string();
    let now = Utc::now();
    let transaction = body.into_transaction(
        &client,
        &rules.program.time_zone,
        &rules.program.base_currency,
        fields::Clock {
            now,
            skew_s_max: state.clock_skew_s_max,
        },
    )?;
    let order = OrderRecord {
        source: service::TRANSACTION_SYNC_SOURCE,
        external_id: format!("{}/{}", client.key, transaction.transaction_id),
        status: "RECORDED".into(),
        updated_at: transaction.trade.sales_time.to_rfc3339(),
        body: record_body,
    };
    let telemetry = state.telemetry.clone();
    let burned = transaction.trade.burn_point.value();
    let posted = super::on_pool(state.clone(), move || {
        service::post_for_identities(
            &state.store,
            rules,
            vec![transaction.identity],
            transaction.profile,
            transaction.trade,
            order,
            now,
        )
    })
    .await?;
    telemetry.post("pos", &posted, burned);
    Ok(answer(StatusCode::OK, "success", json!(posted?.trade_id)))
}
