use crate::helpers::*;
use serde_json::json;

#[test]
fn the_seed_trade_is_available_in_its_quarter_and_expired_today() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let (status, body) = app.balance("040xxxx", Some("2023-02-01T00:00:00+08:00"));
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"code": 0, "msg": "success", "data": {
            "vip_accountno": "040xxxx",
            "available_point": 300,
            "lots": [
                {"point": 200, "type": "A", "expire_type": "QUARTER", "expire_time": "2023-03-31", "campaign_code": "Q1-2023-VISA-DP01"},
                {"point": 100, "type": "E", "expire_type": "KDP", "expire_time": "2025-01-31", "campaign_code": ""}
            ]
        }})
    );
    // The last second of Q1 in +08:00 still has the A points; the next second does not.
    let (_, body) = app.balance("040xxxx", Some("2023-03-31T23:59:59+08:00"));
    assert_eq!(body["data"]["available_point"], json!(300));
    let (_, body) = app.balance("040xxxx", Some("2023-03-31T16:00:00Z"));
    assert_eq!(body["data"]["available_point"], json!(100));
    // KDP points last to the end of January 2025 (end of the 24th month after January 2023).
    let (_, body) = app.balance("040xxxx", Some("2025-01-31T23:59:59+08:00"));
    assert_eq!(body["data"]["available_point"], json!(100));
    let (status, body) = app.balance("040xxxx", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"vip_accountno": "040xxxx", "available_point": 0, "lots": []})
    );
}

#[test]
fn a_recent_trade_is_available_now_with_its_kdp_date() {
    let app = spawn_app();
    let (status, _) = app.post_trade(&trade("RECENT-1", "M-NOW", &hours_ago(1)));
    assert_eq!(status, 200);
    let (status, body) = app.balance("M-NOW", None);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["available_point"], json!(100));
    let lots = body["data"]["lots"].as_array().unwrap();
    assert_eq!(lots.len(), 1);
    let expire_time = lots[0]["expire_time"].as_str().unwrap();
    let earned_on = chrono::NaiveDate::parse_from_str(&hours_ago(1)[..10], "%Y-%m-%d").unwrap();
    let expected = point_engine::domain::expiry::month_end(earned_on, 24);
    assert_eq!(expire_time, expected.to_string());
}

#[test]
fn an_unknown_member_is_not_found_and_a_bad_as_of_is_named() {
    let app = spawn_app();
    assert_eq!(
        app.balance("NOBODY", None),
        (404, error_body(40400, "member NOBODY not found"))
    );
    assert_eq!(
        app.balance("NOBODY", Some("tomorrow")),
        (
            400,
            error_body(
                40001,
                "as_of must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got \"tomorrow\""
            )
        )
    );
}

#[test]
fn health_answers_200() {
    let app = spawn_app();
    assert_eq!(app.get("/health"), (200, json!({"status": "ok"})));
}
