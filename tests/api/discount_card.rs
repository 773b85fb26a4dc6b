use crate::helpers::*;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{json, Value};

pub(crate) const CARD: &str = "6e8369071cd942c0476613f9d1ce9ca3";

/// The document's request body (its `json`), as the platform's SDK sends it.
pub(crate) fn seed() -> Value {
    json!({
        "card_template_id": "87789b2f25177433bcbf407e8e471f95",
        "objective_completion_records": [{
            "objective_completion_serial_no": "578354545",
            "objective_id": "123456",
            "completion_time": "2015-05-20T13:29:35.120+08:00",
            "completion_type": "INCREASE",
            "description": "购买商品",
            "completion_count": 1,
            "remark": "特价商品",
        }],
        "reward_usage_records": [{
            "reward_usage_serial_no": "578354",
            "reward_id": "123456",
            "usage_time": "2015-05-20T13:29:35.120+08:00",
            "usage_type": "INCREASE",
            "description": "购买商品",
            "usage_count": 1,
            "amount": 100,
            "remark": "特价商品",
        }],
    })
}

pub(crate) fn path(card: &str) -> String {
    format!("/v3/discount-card/cards/{card}/add-user-records")
}

/// The Authorization header the platform's SDK would send for this request.
pub(crate) fn authorization(url: &str, body: &str, timestamp: i64, nonce: &str) -> String {
    let key =
        rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../../config/test-keys/merchant_key.pem"))
            .unwrap();
    let message = format!("POST\n{url}\n{timestamp}\n{nonce}\n{body}\n");
    let signature = SigningKey::<sha2::Sha256>::new(key).sign(message.as_bytes());
    use base64ct::Encoding;
    format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"TEST-SERIAL-1\",signature=\"{}\"",
        base64ct::Base64::encode_string(&signature.to_vec())
    )
}

pub(crate) fn next_nonce() -> String {
    static NONCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "nonce-{}-{}",
        std::process::id(),
        NONCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

pub(crate) fn send(app: &TestApp, card: &str, body: &Value) -> (u16, Value) {
    let text = body.to_string();
    let url = path(card);
    let header = authorization(&url, &text, chrono::Utc::now().timestamp(), &next_nonce());
    app.post_with_headers(&url, &[("Authorization", header)], &text)
}

fn param_error(message: &str) -> (u16, Value) {
    (400, json!({"code": "PARAM_ERROR", "message": message}))
}

fn the_documents_example_earns_through_the_objective_and_answers_204() {
    let app = spawn_app();
    assert_eq!(send(&app, CARD, &seed()), (204, Value::Null));
    // One completion of objective 123456: 20 A points (QUARTER; 2015, so long expired).
    let trade_no = point_engine::service::card_trade_no(CARD, "578354545");
    let (_, trade) = app.get(&format!("/v1/point-engine/trades/{trade_no}"));
    assert_eq!(
        trade["data"]["vip_accountno"],
        json!(format!("CARD:{CARD}"))
    );
    assert_eq!(trade["data"]["total_point"], json!(20));
    assert_eq!(
        trade["data"]["grants"][0]["campaign_code"],
        json!("CARD-OBJECTIVE")
    );
    // The same records again (a new signature and nonce): nothing new.
    assert_eq!(send(&app, CARD, &seed()), (204, Value::Null));
    assert_eq!(app.counts().0, 1);
    // The reward usage and the card's template are kept.
    use diesel::prelude::*;
    use point_engine::ledger::schema::card_records;
    let rows: Vec<(String, String, i64, Option<i64>)> = card_records::table
        .order(card_records::id)
        .select((
            card_records::kind,
            card_records::card_template_id,
            card_records::count,
            card_records::amount,
        ))
        .load(&mut app.conn())
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "objective".into(),
                "87789b2f25177433bcbf407e8e471f95".into(),
                1,
                None
            ),
            (
                "reward".into(),
                "87789b2f25177433bcbf407e8e471f95".into(),
                1,
                Some(100)
            ),
        ]
    );
    // The same serial with another record is refused.
    let mut changed = seed();
    changed["objective_completion_records"][0]["completion_count"] = json!(2);
    assert_eq!(
        send(&app, CARD, &changed),
        param_error("serial number 578354545 was already used with a different record")
    );
    // A serial is unique within its card only: another card's record with the same serial is
    // its own (a trade of its own), and cannot reach or replay the first card's.
    let other_card = "7a1b2c3d4e5f60718293a4b5c6d7e8f9";
    assert_eq!(send(&app, other_card, &changed), (204, Value::Null));
    assert_eq!(app.counts().0, 2);
    let other_trade = point_engine::service::card_trade_no(other_card, "578354545");
    let (_, other) = app.get(&format!("/v1/point-engine/trades/{other_trade}"));
    assert_eq!(other["data"]["total_point"], json!(40));
    assert_eq!(
        other["data"]["vip_accountno"],
        json!(format!("CARD:{other_card}"))
    );
    app.assert_ledger_consistent();
}

/// Retries of one record at once, each signed anew (as the platform resends) or the very same
/// request sent again: every copy answers 204 and the record earns once.
fn concurrent_retries_of_one_record_answer_204_and_earn_once() {
    let app = std::sync::Arc::new(spawn_app());
    let body = seed().to_string();
    let url = path(CARD);
    let now = chrono::Utc::now().timestamp();
    let same = authorization(&url, &body, now, &next_nonce());
    let sends: Vec<_> = (0..16)
        .map(|i| {
            let header = if i % 2 == 0 {
                same.clone()
            } else {
                authorization(&url, &body, now, &next_nonce())
            };
            let (app, url, body) = (app.clone(), url.clone(), body.clone());
            std::thread::spawn(move || {
                app.post_with_headers(&url, &[("Authorization", header)], &body)
            })
        })
        .collect();
    for s in sends {
        assert_eq!(s.join().unwrap(), (204, Value::Null));
    }
    assert_eq!(app.counts().0, 1);
    assert_eq!(
        app.balance(&format!("CARD:{CARD}"), Some("2015-05-21T00:00:00+08:00"))
            .1["data"]["available_point"],
        json!(20)
    );
    app.assert_ledger_consistent();
}

fn completion(serial: &str, kind: &str, count: i64, at: &str) -> Value {
    json!({
        "card_template_id": "T1",
        "objective_completion_records": [{
            "objective_completion_serial_no": serial,
            "objective_id": "123456",
            "completion_time": at,
            "completion_type": kind,
            "description": "paid with the card",
            "completion_count": count,
        }],
    })
}

fn increase_grants_and_decrease_takes_back() {
    let app = spawn_app();
    // The objective's points expire at the end of the completion's quarter: the balance is read
    // as of the completions, so a run at a quarter's end sees them too.
    let at = hours_ago(1);
    let completion = |serial: &str, kind: &str, count: i64| completion(serial, kind, count, &at);
    assert_eq!(
        send(&app, "CARD-2", &completion("S1", "INCREASE", 3)),
        (204, Value::Null)
    );
    let balance = |app: &TestApp| {
        app.balance("CARD:CARD-2", Some(&at)).1["data"]["available_point"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(balance(&app), 60);
    assert_eq!(
        send(&app, "CARD-2", &completion("S2", "DECREASE", 1)),
        (204, Value::Null)
    );
    assert_eq!(balance(&app), 40);
    assert_eq!(
        send(&app, "CARD-2", &completion("S3", "INCREASE", 1)),
        (204, Value::Null)
    );
    assert_eq!(balance(&app), 60);
    app.assert_ledger_consistent();
}

fn every_required_field_missing_and_malformed_is_named() {
    let app = spawn_app();
    let fields = [
        "objective_completion_serial_no",
        "objective_id",
        "completion_time",
        "completion_type",
        "description",
        "completion_count",
    ];
    for field in fields {
        let mut body = seed();
        body["objective_completion_records"][0]
            .as_object_mut()
            .unwrap()
            .remove(field);
        assert_eq!(
            send(&app, CARD, &body),
            param_error(&format!(
                "objective_completion_records[0].{field} is required"
            )),
            "{field}"
        );
    }
    for field in [
        "reward_usage_serial_no",
        "reward_id",
        "usage_time",
        "usage_type",
        "description",
        "usage_count",
        "amount",
    ] {
        let mut body = seed();
        body["reward_usage_records"][0]
            .as_object_mut()
            .unwrap()
            .remove(field);
        assert_eq!(
            send(&app, CARD, &body),
            param_error(&format!("reward_usage_records[0].{field} is required")),
            "{field}"
        );
    }
    // Each field with a value of the wrong kind.
    for (field, kind) in [
        ("objective_completion_serial_no", "a string"),
        ("objective_id", "a string"),
        ("completion_time", "a string"),
        ("completion_type", "a string"),
        ("description", "a string"),
        ("completion_count", "an integer"),
    ] {
        let mut body = seed();
        body["objective_completion_records"][0][field] = json!({"x": 1});
        assert_eq!(
            send(&app, CARD, &body),
            param_error(&format!(
                "objective_completion_records[0].{field} must be {kind}"
            )),
            "{field}"
        );
    }
    let mut body = seed();
    body.as_object_mut().unwrap().remove("card_template_id");
    assert_eq!(
        send(&app, CARD, &body),
        param_error("card_template_id is required")
    );
    // A value of the wrong kind is named as such, not as missing.
    body["card_template_id"] = json!(42);
    assert_eq!(
        send(&app, CARD, &body),
        param_error("card_template_id must be a string")
    );
    for (field, value, message) in [
        (
            "completion_type",
            json!("DOUBLE"),
            "objective_completion_records[0].completion_type must be INCREASE or DECREASE, got \"DOUBLE\"",
        ),
        (
            "completion_time",
            json!("2015-05-20 13:29:35"),
            "objective_completion_records[0].completion_time must be an RFC 3339 time, got \"2015-05-20 13:29:35\"",
        ),
        (
            "completion_time",
            json!("2100-01-01T00:00:00+08:00"),
            "objective_completion_records[0].completion_time 2100-01-01T00:00:00+08:00 is in the future (more than 300 s ahead of the server's clock)",
        ),
        (
            "completion_count",
            json!(0),
            "objective_completion_records[0].completion_count must be a whole number from 1 to 1000",
        ),
        // No record costs work past the configured maximum (1,000 in the tests): a hundred
        // million completions are refused at once, not counted one by one.
        (
            "completion_count",
            json!(100_000_000),
            "objective_completion_records[0].completion_count must be a whole number from 1 to 1000",
        ),
    ] {
        let mut body = seed();
        body["objective_completion_records"][0][field] = value;
        assert_eq!(send(&app, CARD, &body), param_error(message), "{field}");
    }
    let mut body = seed();
    body["reward_usage_records"][0]["amount"] = json!("100");
    assert_eq!(
        send(&app, CARD, &body),
        param_error("reward_usage_records[0].amount must be an integer")
    );
    assert_eq!(app.counts().0, 0);
}

fn signatures_timestamps_and_nonces_are_checked() {
    let app = spawn_app();
    let url = path(CARD);
    let body = seed().to_string();
    let now = chrono::Utc::now().timestamp();
    let sign_error = |message: &str| (401, json!({"code": "SIGN_ERROR", "message": message}));
    // A body over the limit, in the platform's shape (the signature covers the body, so the
    // body is read, up to the limit, first).
    let oversized = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    assert_eq!(
        app.post_with_headers(&url, &[], &oversized),
        (
            413,
            json!({"code": "PARAM_ERROR", "message": "the body is larger than 65536 bytes"})
        )
    );
    // A body changed after signing.
    let header = authorization(&url, &body, now, &next_nonce());
    let tampered = body.replace("\"completion_count\":1", "\"completion_count\":9");
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", header)], &tampered),
        sign_error("the signature does not match the request")
    );
    // Signed for another card.
    let header = authorization(&path("OTHER"), &body, now, &next_nonce());
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", header)], &body),
        sign_error("the signature does not match the request")
    );
    // Too old.
    let header = authorization(&url, &body, now - 600, &next_nonce());
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", header)], &body),
        sign_error(&format!(
            "timestamp {} is more than 300 s from now",
            now - 600
        ))
    );
    // A nonce used twice: the same signed request again (a retry) answers as the first did,
    // and grants nothing more; its records are kept already.
    let nonce = next_nonce();
    let header = authorization(&url, &body, now, &nonce);
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", header.clone())], &body)
            .0,
        204
    );
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", header)], &body),
        (204, Value::Null)
    );
    // The certificate serial in lower case (as wechatpay-node-v3 writes it): the same key.
    let lower =
        authorization(&url, &body, now, &next_nonce()).replace("TEST-SERIAL-1", "test-serial-1");
    assert_eq!(
        app.post_with_headers(&url, &[("Authorization", lower)], &body),
        (204, Value::Null)
    );
    // No header at all.
    assert_eq!(
        app.post_with_headers(&url, &[], &body),
        sign_error("Authorization is required")
    );
    assert_eq!(app.counts().0, 1);
}

/// Checks an answer carries the platform's signature headers and that its signature verifies
/// with the platform's public key, over `timestamp\nnonce\nbody\n`; and that it would not over
/// another body.
fn assert_signed_by_the_platform(
    (status, headers, body): &(u16, std::collections::BTreeMap<String, String>, String),
) {
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::Verifier;
    let header = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{status}: no {name} in {headers:?}"))
            .as_str()
    };
    assert_eq!(header("wechatpay-serial"), PLATFORM_PUBLIC_KEY_ID);
    assert_eq!(
        header("wechatpay-signature-type"),
        "WECHATPAY2-SHA256-RSA2048"
    );
    assert_eq!(header("request-id"), header("x-request-id"));
    let nonce = header("wechatpay-nonce");
    assert!(nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    let timestamp = header("wechatpay-timestamp");
    let seconds: i64 = timestamp.parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - seconds).abs() < 60);
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(include_str!(
        "../../config/test-keys/wechatpay_platform_key.pem"
    ))
    .unwrap()
    .to_public_key();
    let verifier = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
    use base64ct::Encoding;
    let signature = rsa::pkcs1v15::Signature::try_from(
        base64ct::Base64::decode_vec(header("wechatpay-signature"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let signed = |body: &str| format!("{timestamp}\n{nonce}\n{body}\n");
    assert!(
        verifier.verify(signed(body).as_bytes(), &signature).is_ok(),
        "{status} {body}: the signature does not verify"
    );
    assert!(verifier
        .verify(signed(&format!("{body} ")).as_bytes(), &signature)
        .is_err());
}

fn every_answer_is_signed_as_the_platform_signs() {
    let app = spawn_app();
    let url = path(CARD);
    let body = seed().to_string();
    let now = chrono::Utc::now().timestamp();
    let signed = |body: &str| {
        vec![(
            "Authorization",
            authorization(&url, body, now, &next_nonce()),
        )]
    };
    // 204: recorded.
    let recorded = app.exchange("POST", &url, &signed(&body), &body);
    assert_eq!((recorded.0, recorded.2.as_str()), (204, ""));
    assert_signed_by_the_platform(&recorded);
    // 400: a record without its serial.
    let mut bad = seed();
    bad["reward_usage_records"][0]
        .as_object_mut()
        .unwrap()
        .remove("reward_usage_serial_no");
    let bad = bad.to_string();
    let refused = app.exchange("POST", &url, &signed(&bad), &bad);
    assert_eq!(
        (
            refused.0,
            serde_json::from_str::<Value>(&refused.2).unwrap()
        ),
        param_error("reward_usage_records[0].reward_usage_serial_no is required")
    );
    assert_signed_by_the_platform(&refused);
    // 401: unsigned, and a body changed after signing.
    let unsigned = app.exchange("POST", &url, &[], &body);
    assert_eq!(unsigned.0, 401);
    assert_signed_by_the_platform(&unsigned);
    let tampered = body.replace("\"amount\":100", "\"amount\":900");
    let answer = app.exchange("POST", &url, &signed(&body), &tampered);
    assert_eq!(
        (answer.0, serde_json::from_str::<Value>(&answer.2).unwrap()),
        (
            401,
            json!({"code": "SIGN_ERROR", "message": "the signature does not match the request"})
        )
    );
    assert_signed_by_the_platform(&answer);
    // 405 and 413.
    let get = app.exchange("GET", &url, &[], "");
    assert_eq!(get.0, 405);
    assert_signed_by_the_platform(&get);
    let oversized = format!("{{\"x\": \"{}\"}}", "a".repeat(70_000));
    let large = app.exchange("POST", &url, &[], &oversized);
    assert_eq!(large.0, 413);
    assert_signed_by_the_platform(&large);
    assert_eq!(app.counts().0, 1);
}

fn a_merchant_registered_by_its_certificate_signs_with_its_serial_in_any_form() {
    let app = spawn_app();
    let url = path(CARD);
    let body = seed().to_string();
    let now = chrono::Utc::now().timestamp();
    let as_merchant_2 = |serial: &str| {
        authorization(&url, &body, now, &next_nonce())
            .replace("1900000001", "1900000002")
            .replace("TEST-SERIAL-1", serial)
    };
    // wechatpayv3 sends the serial as given; wechatpay-node-v3 derives it in lower case and
    // without the leading zero.
    for serial in [
        "0157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        "157f09efdc096de15ebe81a47057a7232f1b8e1",
    ] {
        let answer = app.exchange(
            "POST",
            &url,
            &[("Authorization", as_merchant_2(serial))],
            &body,
        );
        assert_eq!(answer.0, 204, "{serial}: {}", answer.2);
    }
    let wrong = app.exchange(
        "POST",
        &url,
        &[(
            "Authorization",
            as_merchant_2("0157F09EFDC096DE15EBE81A47057A7232F1B8E2"),
        )],
        &body,
    );
    assert_eq!(
        (wrong.0, serde_json::from_str::<Value>(&wrong.2).unwrap()),
        (
            401,
            json!({"code": "SIGN_ERROR", "message": "no key for mchid 1900000002 and serial_no 0157F09EFDC096DE15EBE81A47057A7232F1B8E2"})
        )
    );
    // The two merchants' records of one card are one card's: recorded once.
    assert_eq!(app.counts().0, 1);
}

on_both_backends!(
    every_answer_is_signed_as_the_platform_signs,
    a_merchant_registered_by_its_certificate_signs_with_its_serial_in_any_form,
    concurrent_retries_of_one_record_answer_204_and_earn_once,
    the_documents_example_earns_through_the_objective_and_answers_204,
    increase_grants_and_decrease_takes_back,
    every_required_field_missing_and_malformed_is_named,
    signatures_timestamps_and_nonces_are_checked,
);
