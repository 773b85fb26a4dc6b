//! The OpenAPI 3.1 document, generated from the handlers and their types (utoipa) and served at
//! `GET /openapi.json`: the native API and the three adapters (their envelopes as they are),
//! with the seeds' examples and the security schemes of each contract.

use super::{audit, balance, cblink, discount_card, health, history, identities, report, rules};
use super::{profile, trade_create, trade_refund, transaction_sync};
use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The native error: a non-zero `code`, the `msg` saying what is wrong, `data` null.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents the shape `error::failure` writes
pub struct NativeError {
    #[schema(example = 40001)]
    code: u32,
    #[schema(example = "sales_time is required")]
    msg: String,
    #[schema(value_type = Option<Object>)]
    data: Option<()>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "point-engine",
        description = "A loyalty points engine: receipts in, points out. The native API \
                       (/v1/point-engine/*, an API key with the endpoint's scope) and three \
                       wire-compatible adapters.",
        license(name = "MIT")
    ),
    paths(
        trade_create::trade_create,
        trade_refund::trade_refund,
        rules::trade_simulate,
        rules::rules,
        balance::balance,
        identities::link_identity,
        profile::set_profile,
        history::member_entries,
        history::trade,
        audit::audit,
        report::liability,
        report::movements,
        transaction_sync::transaction,
        cblink::trade,
        discount_card::add_user_records,
        health::health,
        health::ready,
    ),
    components(schemas(NativeError)),
    modifiers(&Contracts),
    tags(
        (name = "native", description = "Scopes: store (trade-create, trade-refund, trade-simulate, balance, identities, profile), marketer (rules, trade-simulate), finance (reports, entries, trades, audit), admin (all)"),
        (name = "pos", description = "Real-time transaction sync"),
        (name = "cblink", description = "cblink order receipt"),
        (name = "discount-card", description = "WeChat Pay discount-card user records"),
        (name = "operations", description = "Health, metrics, this document")
    )
)]
pub struct ApiDoc;

/// HTTP statuses every native endpoint may answer besides 200, each in the native error shape.
const NATIVE_ERRORS: [(&str, &str); 11] = [
    (
        "400",
        "A field is missing or bad, or the body is not a JSON object",
    ),
    ("401", "No API key, or one the server does not know"),
    ("403", "The key's scopes do not cover this endpoint"),
    ("404", "No such member or trade"),
    (
        "409",
        "The idempotency key was used with a different request",
    ),
    ("413", "The body is larger than the limit"),
    ("415", "Content-Type is not application/json"),
    ("422", "Not enough points, or a refund over what is left"),
    ("429", "Over the key's rate limit; see Retry-After"),
    ("500", "An internal failure; nothing was written"),
    (
        "503",
        "The ledger is busy; nothing was written; see Retry-After",
    ),
];

/// Adds what the derive cannot: the security schemes, the native error answers, and the seeds'
/// request examples.
struct Contracts;

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("the shipped examples are JSON")
}

impl Modify for Contracts {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
            scheme.description = Some(description.to_string());
            SecurityScheme::Http(scheme)
        };
        components.add_security_scheme(
            "api_key",
            bearer("A native API key (`point-engine keys create`): Authorization: Bearer <key>"),
        );
        components.add_security_scheme(
            "pos_token",
            bearer("A POS client's token: Authorization: bearer <token>"),
        );
        components.add_security_scheme(
            "cblink_app_id",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("App-Id"))),
        );
        components.add_security_scheme(
            "cblink_app_secret",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("App-Secret"))),
        );
        components.add_security_scheme(
            "wechatpay_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,timestamp=…,serial_no=…,signature=…",
            ))),
        );
        let examples = [
            (
                "/v1/point-engine/trade-create",
                include_str!("../../examples/requests/trade-create.json"),
            ),
            (
                "/v1/point-engine/trade-simulate",
                include_str!("../../examples/requests/trade-create.json"),
            ),
            (
                "/v1/point-engine/trade-refund",
                include_str!("../../examples/requests/trade-refund.json"),
            ),
            (
                "/tp/services/transaction",
                include_str!("../../examples/requests/transaction-sync.json"),
            ),
            (
                "/openapi/trade",
                include_str!("../../examples/requests/cblink-order.json"),
            ),
            (
                "/v3/discount-card/cards/{out_card_code}/add-user-records",
                include_str!("../../examples/requests/discount-card-records.json"),
            ),
        ];
        for (path, item) in doc.paths.paths.iter_mut() {
            let native = path.starts_with("/v1/point-engine/");
            for operation in [&mut item.get, &mut item.post, &mut item.put]
                .into_iter()
                .flatten()
            {
                if let Some((_, text)) = examples.iter().find(|(p, _)| p == path) {
                    if let Some(body) = operation.request_body.as_mut() {
                        if let Some(content) = body.content.get_mut("application/json") {
                            content.example = Some(example(text));
                        }
                    }
                }
                if native {
                    for (status, description) in NATIVE_ERRORS {
                        let response = ResponseBuilder::new()
                            .description(description)
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(Ref::from_schema_name("NativeError")))
                                    .build(),
                            )
                            .build();
                        operation
                            .responses
                            .responses
                            .entry(status.to_string())
                            .or_insert(RefOr::T(response));
                    }
                }
            }
        }
    }
}

/// `GET /openapi.json`.
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(
        ApiDoc::openapi()
            .to_json()
            .expect("the document serializes"),
    )
}
