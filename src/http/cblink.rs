//! `POST /openapi/trade`: cblink's third-party order receipt (shared/seeds/cblink-openapi-trade.md).
//! An order is re-sent as its status changes: points are granted when it reaches an earning
//! status and reversed when it is closed or refunded; an older update than the last one seen
//! is ignored.

use crate::clients::CblinkApp;
use crate::domain::{
    Amount, Gender, Identity, IdentityKind, InvoiceId, OutTradeNo, PaymentMethod, Points, Profile,
    Sku, StoreCode, Trade, TradeLine,
};
use crate::service::{self, CblinkOrder, ServiceError};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chrono::{NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

/// Every status the document lists.
const STATUSES: [&str; 10] = [
    "TRADE_BUYER_REFUND",
    "TRADE_BUYER_SIGNED",
    "TRADE_CLOSED",
    "TRADE_CLOSED_BY_USER",
    "TRADE_INVALID",
    "TRADE_REFUNDING",
    "WAIT_BUYER_CONFIRM_GOODS",
    "WAIT_BUYER_PAY",
    "WAIT_SELLER_SEND_GOODS",
    "WAIT_USE",
];

/// An error in the document's style: `{"err_code": 400, "msg": "tid 不能为空。"}`.
/// A method other than POST, in the document's style.
pub fn method_not_allowed(allow: &str) -> HttpResponse {
    failure(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("请求方法不允许，请使用 {allow}。"),
    )
}

fn failure(status: StatusCode, msg: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"err_code": status.as_u16(), "msg": msg}))
}

/// A field that is missing (`不能为空`) or malformed (`格式不正确`), named as the document names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CblinkFieldError {
    #[error("{0} 不能为空。")]
    Missing(String),
    #[error("{0} 格式不正确。")]
    Malformed(String),
    #[error("{0} 晚于服务器当前时间。")]
    Future(String),
}

type FieldResult<T> = Result<T, CblinkFieldError>;

fn lookup<'a>(object: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| object.get(*n))
        .filter(|v| !v.is_null())
}

/// Text of a field sent as a string or a number (the document types numbers as strings and
/// the reverse); empty text counts as missing.
fn text(object: &Map<String, Value>, names: &[&str], shown: &str) -> FieldResult<String> {
    match lookup(object, names) {
        None => Err(CblinkFieldError::Missing(shown.into())),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(CblinkFieldError::Missing(shown.into()))
        }
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(CblinkFieldError::Malformed(shown.into())),
    }
}

fn optional_text(
    object: &Map<String, Value>,
    names: &[&str],
    shown: &str,
) -> FieldResult<Option<String>> {
    match text(object, names, shown) {
        Ok(t) => Ok(Some(t)),
        Err(CblinkFieldError::Missing(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn amount(object: &Map<String, Value>, name: &str) -> FieldResult<Amount> {
    Amount::parse(&text(object, &[name], name)?)
        .map_err(|_| CblinkFieldError::Malformed(name.into()))
}

/// `yyyy-mm-dd HH:mm:ss` in the program's time zone.
fn local_time(
    raw: &str,
    name: &str,
    tz: &crate::domain::ProgramTz,
) -> FieldResult<chrono::DateTime<chrono::FixedOffset>> {
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
        .ok()
        .and_then(|local| tz.from_local(local))
        .ok_or_else(|| CblinkFieldError::Malformed(name.into()))
}

fn line(index: usize, item: &Value) -> FieldResult<TradeLine> {
    let shown = |name: &str| format!("orders.{index}.{name}");
    let object = item
        .as_object()
        .ok_or_else(|| CblinkFieldError::Malformed(format!("orders.{index}")))?;
    for required in [
        "product_specification",
        "title",
        "pic_thumb_url",
        "price",
        "total_fee",
    ] {
        text(object, &[required], &shown(required))?;
    }
    let sku = Sku::parse(&text(object, &["product_id"], &shown("product_id"))?)
        .map_err(|_| CblinkFieldError::Malformed(shown("product_id")))?;
    let quantity: i64 = text(object, &["num"], &shown("num"))?
        .parse()
        .map_err(|_| CblinkFieldError::Malformed(shown("num")))?;
    let paid = Amount::parse(&text(object, &["payment"], &shown("payment"))?)
        .map_err(|_| CblinkFieldError::Malformed(shown("payment")))?;
    let title = text(object, &["title"], &shown("title"))?;
    TradeLine::new(sku, &title, quantity, paid)
        .map_err(|_| CblinkFieldError::Malformed(shown("num")))
}

/// Parses a cblink trade into the order the service works on.
pub fn parse_order(
    body: &Value,
    app: &CblinkApp,
    tz: &crate::domain::ProgramTz,
    currency: &crate::domain::CurrencyCode,
    clock: super::fields::Clock,
) -> FieldResult<CblinkOrder> {
    let object = body
        .as_object()
        .ok_or_else(|| CblinkFieldError::Malformed("trade".into()))?;
    let tid = text(object, &["tid"], "tid")?;
    // An order belongs to the app that sent it: the same tid from two apps is two orders.
    let out_trade_no = OutTradeNo::parse(&format!("CB-{}-{tid}", app.app_id))
        .map_err(|_| CblinkFieldError::Malformed("tid".into()))?;
    let out_refund_no = crate::domain::OutRefundNo::parse(&format!("{out_trade_no}-R"))
        .map_err(|_| CblinkFieldError::Malformed("tid".into()))?;
    let shop_id = text(object, &["shop_id"], "shop_id")?;
    // An Integer in the document's table: digits only, as a number or as text.
    if !shop_id.chars().all(|c| c.is_ascii_digit()) {
        return Err(CblinkFieldError::Malformed("shop_id".into()));
    }
    let store_code = StoreCode::parse(&format!("{}{shop_id}", app.store_prefix))
        .map_err(|_| CblinkFieldError::Malformed("shop_id".into()))?;
    for required in [
        "serial_number",
        "transaction_tid",
        "type",
        "title",
        "pay_type",
        "handled",
        "shipping_type",
    ] {
        text(object, &[required], required)?;
    }
    let remark = lookup(object, &["remark"])
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .ok_or_else(|| CblinkFieldError::Missing("remark".into()))?;
    let total_fee = amount(object, "total_fee")?;
    let payment = amount(object, "payment")?;
    let post_fee = amount(object, "post_fee")?;
    let discount_fee = amount(object, "discount_fee")?;
    amount(object, "adjust_fee").or_else(|e| {
        // adjust_fee may be negative (a price cut): only its presence is required.
        text(object, &["adjust_fee"], "adjust_fee")
            .map(|_| Amount::ZERO)
            .map_err(|_| e)
    })?;
    let status = text(object, &["status"], "status")?;
    if !STATUSES.contains(&status.as_str()) {
        return Err(CblinkFieldError::Malformed("status".into()));
    }
    let refund_status = optional_text(object, &["refund_status"], "refund_status")?;
    let created_at_text = text(object, &["created_at"], "created_at")?;
    let created_at = local_time(&created_at_text, "created_at", tz)?;
    let updated_at = text(object, &["updated_at"], "updated_at")?;
    let updated_at_time = local_time(&updated_at, "updated_at", tz)?;
    let pay_at = match optional_text(object, &["pay_at"], "pay_at")? {
        Some(raw) => Some(local_time(&raw, "pay_at", tz)?),
        None => None,
    };
    // No time may be ahead of the server's clock by more than the allowed skew.
    for (name, at) in [
        ("created_at", Some(created_at)),
        ("updated_at", Some(updated_at_time)),
        ("pay_at", pay_at),
    ] {
        if at.is_some_and(|at| clock.future(at).is_some()) {
            return Err(CblinkFieldError::Future(name.into()));
        }
    }
    let member = lookup(object, &["member"])
        .ok_or_else(|| CblinkFieldError::Missing("member".into()))?
        .as_object()
        .ok_or_else(|| CblinkFieldError::Malformed("member".into()))?;
    let openid = text(
        member,
        &["weixin_openid", "weixin_open_id"],
        "member.weixin_open_id",
    )?;
    let phone = text(member, &["mobile_phone"], "member.mobile_phone")?;
    let name = text(member, &["name"], "member.name")?;
    // Required by the document's member table, whether or not points need them.
    let gender = Some(
        Gender::parse(&text(member, &["gender"], "member.gender")?)
            .map_err(|_| CblinkFieldError::Malformed("member.gender".into()))?,
    );
    for required in ["receiver_province", "receiver_city", "receiver_district"] {
        text(member, &[required], &format!("member.{required}"))?;
    }
    let profile_field = |names: &[&str], shown: &str| -> FieldResult<Option<String>> {
        optional_text(member, names, shown)?
            .map(|t| Profile::field(&t).map_err(|_| CblinkFieldError::Malformed(shown.into())))
            .transpose()
            .map(Option::flatten)
    };
    let profile = Profile {
        name: Profile::field(&name)
            .map_err(|_| CblinkFieldError::Malformed("member.name".into()))?,
        nick_name: None,
        gender,
        country: None,
        province: profile_field(&["receiver_province"], "member.receiver_province")?,
        city: profile_field(&["receiver_city"], "member.receiver_city")?,
    };
    let identities = vec![
        Identity::new(IdentityKind::WeixinOpenid, &openid)
            .map_err(|_| CblinkFieldError::Malformed("member.weixin_open_id".into()))?,
        Identity::new(IdentityKind::MobilePhone, &phone)
            .map_err(|_| CblinkFieldError::Malformed("member.mobile_phone".into()))?,
    ];
    let orders = match lookup(object, &["orders", "Orders"]) {
        None => return Err(CblinkFieldError::Missing("Orders".into())),
        Some(Value::Array(items)) if items.len() <= TradeLine::PER_TRADE_MAX => items,
        Some(_) => return Err(CblinkFieldError::Malformed("Orders".into())),
    };
    let lines = orders
        .iter()
        .enumerate()
        .map(|(i, item)| line(i, item))
        .collect::<FieldResult<Vec<_>>>()?;
    if payment > total_fee {
        return Err(CblinkFieldError::Malformed("payment".into()));
    }
    let sold_at = pay_at.unwrap_or(created_at);
    let method = text(object, &["pay_type"], "pay_type")?;
    let trade = Trade {
        vip_accountno: identities[0].account_number(),
        out_trade_no,
        store_code,
        invoice_id: InvoiceId::parse(&tid)
            .map_err(|_| CblinkFieldError::Malformed("tid".into()))?,
        total_amount: total_fee,
        payment_amount: payment,
        payment_method: PaymentMethod::parse(&method)
            .map_err(|_| CblinkFieldError::Malformed("pay_type".into()))?,
        currency: *currency,
        sales_time: sold_at,
        submit_time: created_at,
        approval_time: sold_at,
        burn_point: Points::ZERO,
        resource: service::CBLINK_SOURCE.to_string(),
        remark: crate::domain::trade::parse_free_text(&remark, Trade::REMARK_LEN_MAX)
            .map_err(|_| CblinkFieldError::Malformed("remark".into()))?,
        receipt_image_urls: Vec::new(),
        payment_image_urls: Vec::new(),
        lines,
        post_fee,
        discount: discount_fee,
    };
    Ok(CblinkOrder {
        order_key: format!("{}/{tid}", app.app_id),
        out_refund_no,
        status,
        refund_status,
        // Kept as a UTC instant of fixed width, so that updates compare in time order
        // (the 9th is earlier than the 10th, however either is written).
        updated_at: updated_at_time
            .to_utc()
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
        updated_at_time,
        identities,
        profile,
        trade,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum CblinkError {
    #[error("App-Id 或 App-Secret 错误。")]
    Unauthorized,
    #[error("请求过于频繁，请 {0} 秒后重试。")]
    RateLimited(u32),
    #[error("请求体超过 {0} 字节。")]
    TooLarge(usize),
    #[error("请求体不是有效的 JSON。")]
    NotJson,
    #[error(transparent)]
    Invalid(#[from] CblinkFieldError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("the blocking task failed: {0}")]
    Blocking(#[from] actix_web::error::BlockingError),
}

impl ResponseError for CblinkError {
    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Unauthorized => failure(StatusCode::UNAUTHORIZED, &self.to_string()),
            Self::RateLimited(seconds) => {
                let mut response = failure(StatusCode::TOO_MANY_REQUESTS, &self.to_string());
                crate::error::with_retry_after_s(&mut response, *seconds);
                response
            }
            Self::TooLarge(_) => failure(StatusCode::PAYLOAD_TOO_LARGE, &self.to_string()),
            Self::NotJson => failure(StatusCode::BAD_REQUEST, &self.to_string()),
            Self::Invalid(e) => failure(StatusCode::BAD_REQUEST, &e.to_string()),
            Self::Service(ServiceError::Post(crate::ledger::PostError::Conflict { .. })) => {
                failure(StatusCode::CONFLICT, "tid 已用于另一笔不同的交易。")
            }
            Self::Service(ServiceError::Post(crate::ledger::PostError::BalanceLimit {
                ..
            })) => failure(
                StatusCode::UNPROCESSABLE_ENTITY,
                "会员积分将超过上限（1000000000000），未入账。",
            ),
            Self::Service(ServiceError::Evaluate(crate::rules::EvaluateError::PointsOverflow)) => {
                failure(StatusCode::BAD_REQUEST, "payment 格式不正确。")
            }
            Self::Service(ServiceError::Unavailable(e)) => {
                log::warn!("cblink: {e}");
                let mut response = failure(StatusCode::SERVICE_UNAVAILABLE, "系统繁忙，请重试。");
                crate::error::with_retry_after(&mut response);
                response
            }
            other => {
                log::error!("cblink: {other}");
                failure(StatusCode::INTERNAL_SERVER_ERROR, "系统错误。")
            }
        }
    }

    fn status_code(&self) -> StatusCode {
        self.error_response().status()
    }
}

#[utoipa::path(
    post,
    path = "/openapi/trade",
    tag = "cblink",
    operation_id = "cblink_trade",
    summary = "A cblink order's state (the document's envelope)",
    request_body(content = Object, description = "The document's order"),
    responses(
        (status = 200, description = "Received", body = Object),
        (status = 400, description = "A field is missing or bad", body = Object),
        (status = 401, description = "A wrong App-Id or App-Secret", body = Object),
        (status = 409, description = "tid used with a different order", body = Object),
        (status = 413, description = "The body is too large", body = Object),
        (status = 429, description = "Over the app's rate limit", body = Object),
        (status = 503, description = "Busy; retry", body = Object)
    ),
    security(("cblink_app_id" = [], "cblink_app_secret" = []))
)]
pub async fn trade(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, CblinkError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_default()
    };
    let app = state
        .clients
        .cblink_app(&header("App-Id"), &header("App-Secret"))
        .ok_or(CblinkError::Unauthorized)?
        .clone();
    let caller = format!("cblink_app {}", app.app_id);
    state.take_rate(&caller).map_err(CblinkError::RateLimited)?;
    req.extensions_mut().insert(super::auth::Caller(caller));
    // Authenticated: now the body.
    let bytes = super::read_body(payload, state.body_bytes_max)
        .await
        .map_err(|e| match e {
            super::BodyError::TooLarge(limit) => CblinkError::TooLarge(limit),
            super::BodyError::Unreadable => CblinkError::NotJson,
        })?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| CblinkError::NotJson)?;
    let rules = state.rules.current();
    let now = Utc::now();
    let order = parse_order(
        &body,
        &app,
        &rules.program.time_zone,
        &rules.program.base_currency,
        super::fields::Clock {
            now,
            skew_s_max: state.clock_skew_s_max,
        },
    )?;
    let text = body.to_string();
    super::on_pool(state.clone(), move || {
        service::cblink_order(
            &state.store,
            rules,
            app,
            order,
            text,
            state.refund_shortfall_policy,
            now,
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(json!({"code": 200, "data": ""})))
}
