use crate::helpers::*;
use serde_json::{json, Value};

const REQUIRED: [&str; 10] = [
    "vip_accountno",
    "out_trade_no",
    "store_code",
    "invoice_id",
    "total_amount",
    "payment_amount",
    "payment_method",
    "sales_time",
    "submit_time",
    "approval_time",
];

fn each_required_field_missing_or_null_is_named() {
    let app = spawn_app();
    for field in REQUIRED {
        for absent in [None, Some(Value::Null)] {
            let mut body = seed();
            match &absent {
                None => {
                    body.as_object_mut().unwrap().remove(field);
                }
                Some(null) => body[field] = null.clone(),
            }
            let (status, answer) = app.post_trade(&body);
            assert_eq!(status, 400, "{field}");
            assert_eq!(
                answer,
                error_body(40001, &format!("{field} is required")),
                "{field}"
            );
        }
    }
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn each_malformed_field_is_named_with_what_is_wrong() {
    let app = spawn_app();
    let long = |n: usize| Value::String("x".repeat(n));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("vip_accountno", json!(""), "vip_accountno must not be empty"),
        ("vip_accountno", json!(["040"]), "vip_accountno must be a string, got an array"),
        ("vip_accountno", long(65), "vip_accountno must be at most 64 characters, got 65"),
        ("out_trade_no", long(65), "out_trade_no must be at most 64 characters, got 65"),
        ("out_trade_no", json!("  "), "out_trade_no must not be empty"),
        ("store_code", json!(true), "store_code must be a string, got a boolean"),
        ("invoice_id", json!({}), "invoice_id must be a string, got an object"),
        ("total_amount", json!("abc"), "total_amount must be a decimal amount such as \"1000.00\", got \"abc\""),
        ("total_amount", json!("-1.00"), "total_amount must not be negative, got -1.00"),
        ("total_amount", json!([1]), "total_amount must be a decimal amount, got an array"),
        ("total_amount", json!("99999999999"), "total_amount must be at most 10000000000, got 99999999999"),
        ("payment_amount", json!("1.005"), "payment_amount must have at most 2 decimal places, got 1.005"),
        ("payment_amount", json!("1000.01"), "payment_amount 1000.01 must not be more than total_amount 1000.00"),
        ("payment_method", json!(""), "payment_method must not be empty"),
        ("currency", json!("HK"), "currency must be a three-letter currency code such as \"HKD\", got \"HK\""),
        ("currency", json!(344), "currency must be a three-letter currency code such as \"HKD\", got \"344\""),
        (
            "sales_time",
            json!("2023-01-20 10:00:00"),
            "sales_time must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got \"2023-01-20 10:00:00\"",
        ),
        ("sales_time", json!("2100-01-01T00:00:00+08:00"), "sales_time 2100-01-01T00:00:00+08:00 is in the future (more than 300 s ahead of the server's clock)"),
        (
            "submit_time",
            json!("yesterday"),
            "submit_time must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got \"yesterday\"",
        ),
        (
            "approval_time",
            json!("2023-02-30T10:00:00+08:00"),
            "approval_time must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got \"2023-02-30T10:00:00+08:00\"",
        ),
        ("burn_point", json!("abc"), "burn_point must be a whole number of points, got \"abc\""),
        ("burn_point", json!(2.5), "burn_point must be a whole number of points, got \"2.5\""),
        ("burn_point", json!(-5), "burn_point must not be negative, got -5"),
        ("burn_point", json!(true), "burn_point must be a whole number, got a boolean"),
        ("resource", long(65), "resource must be at most 64 characters, got 65"),
        ("remark", long(513), "remark must be at most 512 characters, got 513"),
        ("remark", json!(1.5), "remark must be a string, got a number"),
        ("receipt_image_url", json!("https://x"), "receipt_image_url must be an array of strings, got a string"),
        ("receipt_image_url", json!(["ftp://x"]), "receipt_image_url must be an http(s) URL, got \"ftp://x\""),
        ("payment_image_url", json!([1]), "payment_image_url must hold only strings, got a number"),
        (
            "payment_image_url",
            Value::Array(vec![json!("https://x"); 21]),
            "payment_image_url must have at most 20 items, got 21",
        ),
    ];
    for (field, value, msg) in cases {
        let mut body = seed();
        body[field] = value.clone();
        let (status, answer) = app.post_trade(&body);
        assert_eq!(status, 400, "{field} = {value}");
        assert_eq!(answer, error_body(40001, msg), "{field} = {value}");
    }
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn optional_fields_may_be_left_out() {
    let app = spawn_app();
    let mut body = trade("MINIMAL", "M-MIN", &hours_ago(1));
    for field in [
        "currency",
        "burn_point",
        "resource",
        "remark",
        "receipt_image_url",
        "payment_image_url",
    ] {
        body.as_object_mut().unwrap().remove(field);
    }
    let (status, answer) = app.post_trade(&body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["total_point"], json!(100));
}

fn a_body_that_is_not_a_json_object_is_rejected() {
    let app = spawn_app();
    for body in ["{", "[]", "\"text\"", "", "{\"vip_accountno\": }"] {
        let (status, answer) = app.post_raw("application/json", body);
        assert_eq!(status, 400, "{body:?}");
        assert_eq!(answer["code"], json!(40000), "{body:?}");
        assert_eq!(answer["data"], Value::Null);
        assert!(
            answer["msg"]
                .as_str()
                .unwrap()
                .starts_with("the body is not a JSON object: "),
            "{answer}"
        );
    }
}

fn a_wrong_content_type_is_rejected() {
    let app = spawn_app();
    let (status, answer) = app.post_raw("text/plain", SEED_WITH_RECEIPT);
    assert_eq!(
        (status, answer),
        (
            415,
            error_body(41500, "Content-Type must be application/json")
        )
    );
}

fn an_oversized_body_is_rejected() {
    let app = spawn_app();
    let mut body = seed();
    body["remark"] = json!("x".repeat(70 * 1024));
    let (status, answer) = app.post_trade(&body);
    assert_eq!(
        (status, answer),
        (
            413,
            error_body(41300, "the body is larger than 65536 bytes")
        )
    );
    assert_eq!(app.counts(), (0, 0, 0, 0));
}

fn unknown_endpoints_answer_in_the_native_shape() {
    let app = spawn_app();
    assert_eq!(
        app.get("/v1/point-engine/nope"),
        (
            404,
            error_body(40400, "no endpoint GET /v1/point-engine/nope")
        )
    );
    // A query that does not parse (a field given twice): the native shape, not plain text.
    let (status, body) = app.get("/v1/point-engine/members/M1/balance?as_of=a&as_of=b");
    assert_eq!(status, 400);
    assert_eq!(body["code"], json!(40001));
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .starts_with("the query string is not valid: "),
        "{body}"
    );
    // A known endpoint and the wrong method: 405 with `Allow`, in each contract's own shape.
    let wrong_method = |method: &str, path: &str| {
        let response = match admin_agent()
            .request(method, &format!("{}{path}", app.address))
            .call()
        {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        let allow = response.header("Allow").map(str::to_string);
        (
            response.status(),
            allow,
            response.into_json::<serde_json::Value>().unwrap(),
        )
    };
    assert_eq!(
        wrong_method("GET", "/v1/point-engine/trade-create"),
        (
            405,
            Some("POST".into()),
            error_body(40500, "method not allowed; use POST")
        )
    );
    assert_eq!(
        wrong_method("DELETE", "/v1/point-engine/members/M1/balance"),
        (
            405,
            Some("GET".into()),
            error_body(40500, "method not allowed; use GET")
        )
    );
    assert_eq!(
        wrong_method("GET", "/tp/services/transaction"),
        (
            405,
            Some("POST".into()),
            json!({"status": {"code": "405", "message": "method not allowed; use POST"}, "result": null})
        )
    );
    assert_eq!(
        wrong_method("GET", "/openapi/trade"),
        (
            405,
            Some("POST".into()),
            json!({"err_code": 405, "msg": "请求方法不允许，请使用 POST。"})
        )
    );
    assert_eq!(
        wrong_method("PUT", "/v3/discount-card/cards/C1/add-user-records"),
        (
            405,
            Some("POST".into()),
            json!({"code": "INVALID_REQUEST", "message": "method not allowed; use POST"})
        )
    );
}

on_both_backends!(
    each_required_field_missing_or_null_is_named,
    each_malformed_field_is_named_with_what_is_wrong,
    optional_fields_may_be_left_out,
    a_body_that_is_not_a_json_object_is_rejected,
    a_wrong_content_type_is_rejected,
    an_oversized_body_is_rejected,
    unknown_endpoints_answer_in_the_native_shape,
);
