//! `GET /openapi.json`: a valid OpenAPI 3.1 document whose request examples go through the
//! handlers and whose answers match the document's own schemas.

use crate::helpers::*;
use serde_json::{json, Value};

fn document(app: &TestApp) -> Value {
    let response = ureq::get(&format!("{}/openapi.json", app.address))
        .call()
        .unwrap();
    assert_eq!(response.content_type(), "application/json");
    response.into_json().unwrap()
}

/// Resolves `#/components/schemas/Name`.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the schemas: {reference}"));
            let target = &doc["components"]["schemas"][name];
            assert!(!target.is_null(), "{reference} does not resolve");
            resolve(doc, target)
        }
        None => schema,
    }
}

/// Checks `value` against the subset of JSON Schema the document uses: types (one or a list),
/// properties and required, items, oneOf; `where` names the place for the failure message.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(doc, schema);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        return match options.iter().any(|o| conforms(doc, o, value, at).is_ok()) {
            true => Ok(()),
            false => Err(format!("{at}: {value} matches none of {options:?}")),
        };
    }
    let type_of = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let actual = type_of(value);
    let fits = allowed.is_empty()
        || allowed.contains(&actual)
        || (actual == "integer" && allowed.contains(&"number"));
    if !fits {
        return Err(format!("{at}: {value} is {actual}, not {allowed:?}"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap();
            if !object.contains_key(name) {
                return Err(format!("{at}: {name} is required"));
            }
        }
        for (name, field) in object {
            if let Some(property) = properties.get(name) {
                conforms(doc, property, field, &format!("{at}.{name}"))?;
            }
        }
    }
    if let (Some(items), Some(schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            conforms(doc, schema, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The schema of `path`'s `method` answer with `status`.
fn answer_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let schema = &doc["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(!schema.is_null(), "{method} {path} documents no {status}");
    schema
}

fn request_example<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let example =
        &doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"];
    assert!(!example.is_null(), "{path} has no request example");
    example
}

fn the_document_is_valid_and_its_examples_go_through_the_handlers() {
    let app = spawn_app();
    let doc = document(&app);
    assert_eq!(doc["openapi"], json!("3.1.0"));
    // Every reference resolves; every native operation names its key and the errors it may
    // answer; every endpoint served is in the document.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let reference = &reference[..reference.find('"').unwrap()];
        resolve(&doc, &json!({ "$ref": reference }));
    }
    for path in [
        "/v1/point-engine/trade-create",
        "/v1/point-engine/trade-refund",
        "/v1/point-engine/trade-simulate",
        "/v1/point-engine/rules",
        "/v1/point-engine/members/{vip_accountno}/balance",
        "/v1/point-engine/members/{vip_accountno}/entries",
        "/v1/point-engine/members/{vip_accountno}/identities",
        "/v1/point-engine/members/{vip_accountno}/profile",
        "/v1/point-engine/trades/{number}",
        "/v1/point-engine/audit",
        "/v1/point-engine/reports/liability",
        "/v1/point-engine/reports/movements",
    ] {
        let item = doc["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("{path}"));
        for (method, operation) in item {
            assert_eq!(operation["security"], json!([{"api_key": []}]), "{path}");
            for status in [400, 401, 403, 429, 500, 503] {
                answer_schema(&doc, path, method, status);
            }
        }
    }
    for path in [
        "/tp/services/transaction",
        "/openapi/trade",
        "/v3/discount-card/cards/{out_card_code}/add-user-records",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        json!("bearer")
    );

    // The native examples, through the handlers, answered as documented.
    let sale = request_example(&doc, "/v1/point-engine/trade-create");
    let (status, answer) = app.post_trade(sale);
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        crate::trade_create::seed_answer(&app.trade_no("XXXX"))
    );
    let schema = answer_schema(&doc, "/v1/point-engine/trade-create", "post", 200);
    conforms(&doc, schema, &answer, "trade-create").unwrap();
    // The checker is not vacuous: a wrong answer fails it.
    let mut wrong = answer.clone();
    wrong["data"]["detail"][0]["point"] = json!("100");
    assert!(conforms(&doc, schema, &wrong, "wrong").is_err());
    assert!(conforms(&doc, schema, &json!({"code": 0}), "wrong").is_err());
    let (status, simulated) = app.post_to_path(
        "/v1/point-engine/trade-simulate",
        request_example(&doc, "/v1/point-engine/trade-simulate"),
    );
    assert_eq!(status, 200);
    let schema = answer_schema(&doc, "/v1/point-engine/trade-simulate", "post", 200);
    conforms(&doc, schema, &simulated, "trade-simulate").unwrap();
    // The refund example refunds the trade example: its time is moved to now.
    let mut refund = request_example(&doc, "/v1/point-engine/trade-refund").clone();
    refund["refund_time"] = json!(hours_ago(0));
    let (status, refunded) = app.post_refund(&refund);
    assert_eq!(status, 200, "{refunded}");
    let schema = answer_schema(&doc, "/v1/point-engine/trade-refund", "post", 200);
    conforms(&doc, schema, &refunded, "trade-refund").unwrap();
    // The reads, on the member and trade the examples made.
    for (path, url) in [
        (
            "/v1/point-engine/rules",
            "/v1/point-engine/rules".to_string(),
        ),
        (
            "/v1/point-engine/members/{vip_accountno}/balance",
            "/v1/point-engine/members/040xxxx/balance".to_string(),
        ),
        (
            "/v1/point-engine/members/{vip_accountno}/entries",
            "/v1/point-engine/members/040xxxx/entries".to_string(),
        ),
        (
            "/v1/point-engine/trades/{number}",
            "/v1/point-engine/trades/XXXX".to_string(),
        ),
        (
            "/v1/point-engine/audit",
            "/v1/point-engine/audit".to_string(),
        ),
    ] {
        let (status, answer) = app.get(&url);
        assert_eq!(status, 200, "{url}: {answer}");
        conforms(&doc, answer_schema(&doc, path, "get", 200), &answer, path).unwrap();
    }
    // The profile of the member the examples made, and an unknown member's, as documented.
    let profile = |vip: &str| {
        let path = format!("/v1/point-engine/members/{vip}/profile");
        app.call_as(
            &bearer(STORE_KEY),
            "PUT",
            &path,
            Some(&json!({"birthday": "12-05"})),
        )
    };
    let path = "/v1/point-engine/members/{vip_accountno}/profile";
    let (status, answer) = profile("040xxxx");
    assert_eq!(status, 200, "{answer}");
    conforms(&doc, answer_schema(&doc, path, "put", 200), &answer, path).unwrap();
    let (status, answer) = profile("NOBODY");
    assert_eq!(status, 404, "{answer}");
    conforms(&doc, answer_schema(&doc, path, "put", 404), &answer, path).unwrap();
    // A refusal, in the documented error shape.
    let (status, refused) = app.call_as("none", "GET", "/v1/point-engine/audit", None);
    assert_eq!(status, 401);
    conforms(
        &doc,
        answer_schema(&doc, "/v1/point-engine/audit", "get", 401),
        &refused,
        "401",
    )
    .unwrap();

    // The adapters' examples, each with its contract's credentials.
    let pos = request_example(&doc, "/tp/services/transaction");
    let (status, answer) = crate::transaction_sync::sync(&app, Some("pos-token"), &pos.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["status"],
        json!({"code": "200", "message": "success"})
    );
    let order = request_example(&doc, "/openapi/trade");
    assert_eq!(
        crate::cblink::send(&app, order),
        (200, json!({"code": 200, "data": ""}))
    );
    let records = request_example(
        &doc,
        "/v3/discount-card/cards/{out_card_code}/add-user-records",
    );
    let (status, _) = crate::discount_card::send(&app, crate::discount_card::CARD, records);
    assert_eq!(status, 204);
}

on_both_backends!(the_document_is_valid_and_its_examples_go_through_the_handlers);
