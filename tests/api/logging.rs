//! Request ids and the access log: one line per request naming the route template and the
//! caller, and no secret or phone number in any log line.

use crate::helpers::*;
use crate::instances::Instance;
use serde_json::json;
use std::process::Stdio;

fn call(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Option<String>) {
    let mut request = ureq::request(method, &format!("{address}{path}"));
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request
            .set("Content-Type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (
        response.status(),
        response.header("X-Request-Id").map(str::to_string),
    )
}

fn one_access_line_per_request_with_no_secrets_or_phones() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Instance::spawn_logging(
        &db,
        &shipped_rules(),
        &["--expire-interval-s", "0"],
        "info",
        Stdio::from(log),
    );
    server.wait_ready();
    let address = server.address.clone();
    let admin = bearer(ADMIN_KEY);
    let phone = "13812345678";

    // A member known by a phone number, through the native API and a path.
    let sale = trade("LOG-1", &format!("TEL:{phone}"), &hours_ago(1)).to_string();
    let (status, id) = call(
        &address,
        "POST",
        "/v1/point-engine/trade-create",
        &[
            ("Authorization", &admin),
            ("X-Request-Id", "till-7:receipt-42"),
        ],
        Some(&sale),
    );
    assert_eq!(status, 200);
    assert_eq!(
        id.as_deref(),
        Some("till-7:receipt-42"),
        "the caller's id is echoed"
    );
    let (status, id) = call(
        &address,
        "GET",
        &format!("/v1/point-engine/members/TEL:{phone}/balance"),
        &[("Authorization", &admin)],
        None,
    );
    assert_eq!(status, 200);
    let made_up = id.expect("an id is made up when none is sent");
    // An id that could forge a log line is replaced.
    let (_, id) = call(
        &address,
        "GET",
        "/health",
        &[("X-Request-Id", "x request_id=forged")],
        None,
    );
    assert_ne!(id.as_deref(), Some("x request_id=forged"));
    // A wrong key, and the adapters with their secrets.
    let (status, _) = call(
        &address,
        "GET",
        "/v1/point-engine/audit",
        &[("Authorization", "Bearer pe_not-a-key-but-secret-looking")],
        None,
    );
    assert_eq!(status, 401);
    let mut pos = crate::transaction_sync::seed();
    pos["customer_identifier"] = json!(phone);
    let (status, _) = call(
        &address,
        "POST",
        "/tp/services/transaction",
        &[("Authorization", "bearer pos-token")],
        Some(&pos.to_string()),
    );
    assert_eq!(status, 200);
    let mut order = crate::cblink::seed();
    order["member"]["mobile_phone"] = json!(phone.parse::<u64>().unwrap());
    let (status, _) = call(
        &address,
        "POST",
        "/openapi/trade",
        &[
            ("App-Id", "cb17333123"),
            ("App-Secret", "63d2ccdcdc8916daxasdadsab043f0948"),
        ],
        Some(&order.to_string()),
    );
    assert_eq!(status, 200);
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    for secret in [
        ADMIN_KEY,
        "pe_not-a-key-but-secret-looking",
        "pos-token",
        "63d2ccdcdc8916daxasdadsab043f0948",
        phone,
        "forged",
    ] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
    let access: Vec<&str> = log.lines().filter(|l| l.contains(" access] ")).collect();
    let expect = [
        "POST /v1/point-engine/trade-create 200 ",
        "GET /v1/point-engine/members/{vip_accountno}/balance 200 ",
        "GET /health 200 ",
        "GET /v1/point-engine/audit 401 ",
        "POST /tp/services/transaction 200 ",
        "POST /openapi/trade 200 ",
    ];
    // /health is polled while the server starts: only the lines after the first trade count.
    let first = access
        .iter()
        .position(|l| l.contains(expect[0]))
        .expect("the trade's line");
    let lines = &access[first..];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for (line, expected) in lines.iter().zip(expect) {
        assert!(line.contains(expected), "{line} should contain {expected}");
    }
    assert!(lines[0].contains("caller=\"test admin\" request_id=till-7:receipt-42"));
    assert!(lines[1].contains(&format!("request_id={made_up}")));
    assert!(lines[3].contains("caller=\"-\""));
    assert!(lines[4].contains("caller=\"pos_client test POS\""));
    assert!(lines[5].contains("caller=\"cblink_app cb17333123\""));
}

on_both_backends!(one_access_line_per_request_with_no_secrets_or_phones);
