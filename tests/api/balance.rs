use crate::helpers::*;
use serde_json::json;

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
                {"point": 200, "type": "A", "expire_type": "QUARTER", "expire_time": "2023-03-31",
                 "campaign_code": "Q1-2023-VISA-DP01", "available_time": "2023-01-20T02:00:00Z"},
                {"point": 100, "type": "E", "expire_type": "KDP", "expire_time": "2025-01-31",
                 "campaign_code": "", "available_time": "2023-01-20T02:00:00Z"}
            ],
            "pending_point": 0,
            "pending_lots": [],
            "owed_point": 0
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
        json!({"vip_accountno": "040xxxx", "available_point": 0, "lots": [], "pending_point": 0, "pending_lots": [], "owed_point": 0})
    );
}

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

fn health_answers_200() {
    let app = spawn_app();
    assert_eq!(app.get("/health"), (200, json!({"status": "ok"})));
}

const PENDING_RULES: &str = r#"
[program]
name = "Return window"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
pending_days = 7
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }
"#;

fn new_points_are_pending_for_the_return_window_and_cannot_be_burned() {
    let rules = rules_dir(&[("program.toml", PENDING_RULES)]);
    let app = spawn_app_with_rules(rules.path());
    let sold = "2026-01-10T12:00:00+08:00";
    assert_eq!(app.post_trade(&trade("P-1", "M-P", sold)).0, 200);
    let pending_lot = json!({"point": 100, "type": "E", "expire_type": "KDP", "expire_time": "",
                             "campaign_code": "", "available_time": "2026-01-17T04:00:00Z"});
    let (_, body) = app.balance("M-P", Some("2026-01-17T11:59:59+08:00"));
    assert_eq!(
        body["data"],
        json!({"vip_accountno": "M-P", "available_point": 0, "lots": [], "pending_point": 100, "pending_lots": [pending_lot], "owed_point": 0})
    );
    let (_, body) = app.balance("M-P", Some("2026-01-17T12:00:00+08:00"));
    assert_eq!(
        body["data"],
        json!({"vip_accountno": "M-P", "available_point": 100, "lots": [pending_lot], "pending_point": 0, "pending_lots": [], "owed_point": 0})
    );

    // Points from a sale an hour ago are pending now: a burn cannot touch them.
    assert_eq!(app.post_trade(&trade("P-2", "M-Q", &hours_ago(1))).0, 200);
    let mut burn = trade("P-3", "M-Q", &hours_ago(1));
    burn["burn_point"] = json!(1);
    assert_eq!(
        app.post_trade(&burn),
        (
            422,
            error_body(42200, "burn_point 1 is more than the 0 points available")
        )
    );
    let (_, body) = app.balance("M-Q", None);
    assert_eq!(
        (
            body["data"]["available_point"].clone(),
            body["data"]["pending_point"].clone()
        ),
        (json!(0), json!(100))
    );
    app.assert_ledger_consistent();
}

/// A program whose DP01 campaign grants all but a thousand points of the most one member may
/// hold (10^12): a member gets near the limit in one trade.
const HOARD_RULES: &str = r#"
[program]
name = "Hoard"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }

[[campaign]]
code = "HOARD"
name = "Nearly everything"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["DP01*"]
expiry = "KDP"
award = { fixed = 999999999000 }
"#;

fn a_trade_that_would_take_a_member_past_the_most_points_one_may_hold_writes_nothing() {
    let rules = rules_dir(&[("program.toml", HOARD_RULES)]);
    let app = spawn_app_with_rules(rules.path());
    let now = hours_ago(1);
    // 100 E points and 999,999,999,000 A points: 999,999,999,100 held.
    assert_eq!(app.post_trade(&trade("H-1", "M-H", &now)).0, 200);
    let held = |app: &TestApp| app.balance("M-H", None).1["data"]["available_point"].clone();
    assert_eq!(held(&app), json!(999_999_999_100_i64));

    // Again: the same grants would make 1,999,999,998,200.
    let refused = |held: i64| {
        (
            422,
            error_body(
                42202,
                &format!(
                    "the member holds {held} points: the 999999999100 this trade earns would \
                     take them past 1000000000000, the most one member may hold"
                ),
            ),
        )
    };
    assert_eq!(
        app.post_trade(&trade("H-2", "M-H", &now)),
        refused(999_999_999_100)
    );
    // Burning first counts: 900 burned leaves 999,999,998,200, still too many. The burn is not
    // written either.
    let mut burn = trade("H-3", "M-H", &now);
    burn["burn_point"] = json!(900);
    assert_eq!(app.post_trade(&burn), refused(999_999_998_200));
    assert_eq!(held(&app), json!(999_999_999_100_i64));
    // Earned elsewhere (no campaign): 100 more points fit, up to the limit and no further.
    let mut elsewhere = trade("H-4", "M-H", &now);
    elsewhere["store_code"] = json!("X001");
    assert_eq!(app.post_trade(&elsewhere).0, 200);
    assert_eq!(held(&app), json!(999_999_999_200_i64));
    assert_eq!(
        app.post_trade(&trade("H-2", "M-H", &now)),
        refused(999_999_999_200)
    );
    app.assert_ledger_consistent();
}

/// A member's balance asked again is answered from memory (`--balances-lots-max`) while the
/// member's ledger is unchanged, and read again once anything of it changed, whichever instance
/// wrote: an instance keeping balances and one reading every lot answer alike after an earn,
/// a burn, a refund that leaves a debt (no entry, only the refund), and at a lot's expiry.
fn a_balance_from_memory_is_the_ledgers_after_every_write() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.refund_shortfall_policy = point_engine::domain::ShortfallPolicy::AllowNegative;
    let keeping = spawn_app_with_settings(settings.clone());
    let reading = spawn_app_with_settings(point_engine::config::Settings {
        balances_lots_max: 0,
        ..settings
    });
    let alike = |what: &str, as_of: Option<&str>| {
        let kept = keeping.balance("M-KEPT", as_of);
        assert_eq!(kept.0, 200, "{what}: {kept:?}");
        assert_eq!(kept, reading.balance("M-KEPT", as_of), "{what}");
        kept.1["data"].clone()
    };
    let (status, _) = keeping.post_trade(&trade("KEPT-1", "M-KEPT", &hours_ago(2)));
    assert_eq!(status, 200);
    assert_eq!(alike("earned", None)["available_point"], json!(100));
    assert_eq!(alike("asked again", None)["available_point"], json!(100));
    let (status, _) = reading.post_trade(&trade("KEPT-2", "M-KEPT", &hours_ago(1)));
    assert_eq!(status, 200);
    assert_eq!(
        alike("earned elsewhere", None)["available_point"],
        json!(200)
    );
    let mut burn = trade("KEPT-3", "M-KEPT", &hours_ago(0));
    burn["burn_point"] = json!(150);
    let (status, body) = reading.post_trade(&burn);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        alike("burned elsewhere", None)["available_point"],
        json!(150)
    );
    // KEPT-1's lot is spent: its refund takes nothing back, the member owes its 100 points.
    let (status, body) = reading.post_refund(&refund("KEPT-R1", "KEPT-1", "1000.00"));
    assert_eq!(status, 200, "{body}");
    let owing = alike("refunded elsewhere", None);
    assert_eq!(
        (&owing["available_point"], &owing["owed_point"]),
        (&json!(50), &json!(100))
    );
    // From memory up to the last moment before the lots expire (the balance read now holds
    // until then), read again at it.
    let expiry = owing["lots"][0]["expire_time"]
        .as_str()
        .unwrap()
        .to_string();
    let before = format!("{expiry}T23:59:59+08:00");
    let expired = chrono::NaiveDate::parse_from_str(&expiry, "%Y-%m-%d").unwrap();
    let expired = format!("{}T00:00:00+08:00", expired.succ_opt().unwrap());
    assert_eq!(alike("before the expiry", Some(&before)), owing);
    let gone = alike("at the expiry", Some(&expired));
    let lots = gone["lots"].as_array().unwrap();
    assert!(lots.iter().all(|lot| lot["expire_time"] != json!(expiry)));
    let left: i64 = lots.iter().map(|lot| lot["point"].as_i64().unwrap()).sum();
    assert_eq!(gone["available_point"], json!(left - 100));
    let answered = |app: &TestApp| app.metric("point_engine_balances_answered_total");
    assert_eq!(answered(&keeping).as_deref(), Some("2"));
    assert_eq!(answered(&reading).as_deref(), Some("0"));
    // On PostgreSQL each of the 7 balances asked for the member and its version with the
    // members probe, not on the pool.
    let probed = keeping.metric("point_engine_members_probe_asks_total");
    let expected = (backend() == Backend::Postgres).then(|| "7".to_string());
    assert_eq!(probed, expected);
}

on_both_backends!(
    a_balance_from_memory_is_the_ledgers_after_every_write,
    the_seed_trade_is_available_in_its_quarter_and_expired_today,
    a_recent_trade_is_available_now_with_its_kdp_date,
    an_unknown_member_is_not_found_and_a_bad_as_of_is_named,
    health_answers_200,
    new_points_are_pending_for_the_return_window_and_cannot_be_burned,
    a_trade_that_would_take_a_member_past_the_most_points_one_may_hold_writes_nothing,
);
