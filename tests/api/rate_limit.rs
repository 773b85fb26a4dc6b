//! Rate limits per caller: a caller over its limit gets 429 with Retry-After in its contract's
//! error shape, and nothing is written; other callers go on.

use crate::helpers::*;
use serde_json::json;

fn a_caller_over_its_limit_waits_and_others_go_on() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.rate_limit = Some(point_engine::http::rate_limit::RateLimit { per_s: 1, burst: 3 });
    let app = spawn_app_with_settings(settings);
    let store = bearer(STORE_KEY);
    for i in 0..3 {
        let sale = trade(&format!("RL-{i}"), "M-RL", &hours_ago(1));
        assert_eq!(
            app.call_as(&store, "POST", "/v1/point-engine/trade-create", Some(&sale))
                .0,
            200
        );
    }
    let sale = trade("RL-3", "M-RL", &hours_ago(1));
    let response = ureq::post(&format!("{}/v1/point-engine/trade-create", app.address))
        .set("Authorization", &store)
        .send_json(sale.clone());
    let Err(ureq::Error::Status(429, response)) = response else {
        panic!("expected 429: {response:?}")
    };
    assert_eq!(response.header("Retry-After"), Some("1"));
    assert_eq!(
        response.into_json::<serde_json::Value>().unwrap(),
        error_body(42900, "too many requests from this caller; retry after 1 s")
    );
    assert_eq!(app.counts().0, 3, "the refused trade wrote nothing");
    // Another key has its own allowance.
    assert_eq!(
        app.call_as(&bearer(FINANCE_KEY), "GET", "/v1/point-engine/audit", None)
            .0,
        200
    );
    // A second later the key may send again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        app.call_as(&store, "POST", "/v1/point-engine/trade-create", Some(&sale))
            .0,
        200
    );

    // The adapters, each in its own shape.
    let pos = crate::transaction_sync::seed();
    let mut last = (0, json!(null));
    for i in 0..4 {
        let mut body = pos.clone();
        body["transaction_id"] = json!(format!("RL-POS-{i}"));
        last = crate::transaction_sync::sync(&app, Some("pos-token"), &body.to_string());
    }
    assert_eq!(
        last,
        (
            429,
            json!({"status": {"code": "429", "message": "too many requests from this caller; retry after 1 s"}, "result": null})
        )
    );
    let mut last = (0, json!(null));
    for i in 0..4 {
        let mut order = crate::cblink::seed();
        order["tid"] = json!(format!("RL-CB-{i}"));
        last = crate::cblink::send(&app, &order);
    }
    assert_eq!(
        last,
        (
            429,
            json!({"err_code": 429, "msg": "请求过于频繁，请 1 秒后重试。"})
        )
    );
}

on_both_backends!(a_caller_over_its_limit_waits_and_others_go_on);
