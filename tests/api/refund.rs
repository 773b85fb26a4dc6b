use crate::helpers::*;
use point_engine::domain::ShortfallPolicy;
use serde_json::{json, Value};
use tempfile::TempDir;

struct RefundApp {
    app: TestApp,
    _rules: TempDir,
    _db: TestDb,
}

fn spawn_refund_app(policy: ShortfallPolicy) -> RefundApp {
    let rules = refund_rules("2");
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.refund_shortfall_policy = policy;
    RefundApp {
        app: spawn_app_with_settings(settings),
        _rules: rules,
        _db: db,
    }
}

impl std::ops::Deref for RefundApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// (point_type, points, remaining) of every lot, in id order.
fn lots(app: &TestApp) -> Vec<(String, i64, i64)> {
    app.lots()
        .into_iter()
        .map(|(t, p, r, _)| (t, p, r))
        .collect()
}

fn available(app: &TestApp, vip: &str) -> (i64, i64) {
    let (status, body) = app.balance(vip, None);
    assert_eq!(status, 200, "{body}");
    (
        body["data"]["available_point"].as_i64().unwrap(),
        body["data"]["owed_point"].as_i64().unwrap(),
    )
}

fn line(
    point_type: &str,
    code: &str,
    granted: i64,
    point: i64,
    expired: i64,
    shortfall: i64,
    owed: i64,
) -> Value {
    json!({"type": point_type, "campaign_code": code, "granted_point": granted, "point": point,
           "expired": expired, "shortfall": shortfall, "owed": owed})
}

fn partial_then_full_refund_reprice_the_trade_at_its_net_amount() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    let (status, body) = app.post_trade(&trade("T1", "M1", &hours_ago(2)));
    assert_eq!(
        (status, body["data"]["total_point"].clone()),
        (200, json!(350))
    );

    // HKD 700 left: E 70, DOUBLE 140, and BIG (from HKD 800) is gone.
    let r1 = refund("R1", "T1", "300.00");
    let (status, body) = app.post_refund(&r1);
    assert_eq!(status, 200, "{body}");
    let first = json!({"code": 0, "msg": "success", "data": {
        "out_refund_no": "R1", "trade_no": app.trade_no("T1"), "out_trade_no": "T1",
        "refund_amount": "300.00", "refunded_amount": "300.00", "payment_amount": "1000.00",
        "reversed_point": 140, "expired_point": 0, "shortfall_point": 0, "owed_point": 0,
        "returned_burn_point": 0,
        "settled_point": 0, "shortfall_policy": "record_shortfall",
        "detail": [line("E", "", 100, 30, 0, 0, 0), line("A", "DOUBLE", 200, 60, 0, 0, 0),
                   line("A", "BIG", 50, 50, 0, 0, 0)],
        "settled": []
    }});
    assert_eq!(body, first);
    assert_eq!(available(&app, "M1"), (210, 0));

    // The rest: nothing is left of any grant.
    let (status, body) = app.post_refund(&refund("R2", "T1", "700"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["refunded_amount"], json!("1000.00"));
    assert_eq!(
        body["data"]["detail"],
        json!([
            line("E", "", 100, 70, 0, 0, 0),
            line("A", "DOUBLE", 200, 140, 0, 0, 0)
        ])
    );
    assert_eq!(available(&app, "M1"), (0, 0));
    assert_eq!(
        lots(&app),
        vec![
            ("E".into(), 100, 0),
            ("A".into(), 200, 0),
            ("A".into(), 50, 0)
        ]
    );
    assert_eq!(
        app.entries(),
        [
            ("earn", 100),
            ("earn", 200),
            ("earn", 50),
            ("reverse", -30),
            ("reverse", -60),
            ("reverse", -50),
            ("reverse", -70),
            ("reverse", -140),
        ]
        .map(|(k, p)| (k.to_string(), p))
    );

    // A replay answers as the first time did; nothing more is refundable.
    let mut same = r1.clone();
    same["refund_amount"] = json!(300);
    assert_eq!(app.post_refund(&same), (200, first));
    assert_eq!(
        app.post_refund(&refund("R3", "T1", "0.01")),
        (
            422,
            error_body(
                42201,
                "refund_amount 0.01 is more than the 0.00 left to refund"
            )
        )
    );
    app.assert_ledger_consistent();
}

fn a_refund_number_reused_with_another_body_is_a_conflict_and_over_refunds_write_nothing() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(2))).0, 200);
    assert_eq!(app.post_refund(&refund("R1", "T1", "100")).0, 200);
    // The same clock rule as every contract's.
    let mut future = refund("RF", "T1", "10");
    future["refund_time"] = json!("2100-01-01T00:00:00+08:00");
    assert_eq!(
        app.post_refund(&future),
        (
            400,
            error_body(
                40001,
                "refund_time 2100-01-01T00:00:00+08:00 is in the future (more than 300 s ahead of the server's clock)"
            )
        )
    );
    // The field is named once, with what it should be.
    assert_eq!(
        app.post_refund(&refund("R0", "T1", "0")),
        (400, error_body(40001, "refund_amount must be more than 0 (0 refunds only a trade paid wholly with points)"))
    );
    assert_eq!(
        app.post_refund(&refund("R1", "T1", "200")),
        (
            409,
            error_body(
                40900,
                "out_refund_no R1 was already used with a different request"
            )
        )
    );
    assert_eq!(
        app.post_refund(&refund("R2", "T1", "900.01")),
        (
            422,
            error_body(
                42201,
                "refund_amount 900.01 is more than the 900.00 left to refund"
            )
        )
    );
    assert_eq!(
        app.post_refund(&refund("R2", "NOPE", "1")),
        (404, error_body(40400, "no trade has out_trade_no NOPE"))
    );
    let mut early = refund("R2", "T1", "1");
    early["refund_time"] = json!("2020-01-01T00:00:00+08:00");
    assert_eq!(app.post_refund(&early).0, 400);
    // One refund, one set of reversals: E 10 and DOUBLE 20 go; HKD 900 still earns BIG, which
    // is kept in proportion (45 of 50).
    assert_eq!(app.counts().2, 3 + 3);
    assert_eq!(available(&app, "M1"), (350 - 35, 0));
    app.assert_ledger_consistent();
}

fn a_refund_gives_a_burn_back_in_proportion() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(3))).0, 200);
    // HKD 500 with 100 points burned: E 50 + DOUBLE 100 (BIG needs 800).
    let mut burn = trade("T2", "M1", &hours_ago(2));
    burn["payment_amount"] = json!("500.00");
    burn["burn_point"] = json!(100);
    let (status, body) = app.post_trade(&burn);
    assert_eq!(
        (status, body["data"]["total_point"].clone()),
        (200, json!(150))
    );
    assert_eq!(available(&app, "M1"), (350 - 100 + 150, 0));

    // Half refunded: half the burn (50) comes back; E 25 and DOUBLE 50 go.
    let (status, body) = app.post_refund(&refund("R1", "T2", "250"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["returned_burn_point"], json!(50));
    assert_eq!(body["data"]["reversed_point"], json!(75));
    assert_eq!(available(&app, "M1"), (400 + 50 - 75, 0));
    // The rest: the other 50 burned points come back, E 25 and DOUBLE 50 go.
    let (status, body) = app.post_refund(&refund("R2", "T2", "250"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["returned_burn_point"], json!(50));
    assert_eq!(available(&app, "M1"), (350, 0));
    // T1's E lot, which the burn took from, is whole again.
    assert_eq!(lots(&app)[0], ("E".into(), 100, 100));
    app.assert_ledger_consistent();
}

fn a_trade_paid_wholly_with_points_is_refunded_with_0_and_gives_its_burn_back() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(3))).0, 200);
    assert_eq!(available(&app, "M1"), (350, 0));
    // HKD 250 of goods paid wholly with 250 points: nothing paid, nothing earned.
    let mut points_only = trade("T2", "M1", &hours_ago(2));
    points_only["payment_amount"] = json!("0.00");
    points_only["burn_point"] = json!(250);
    let (status, body) = app.post_trade(&points_only);
    assert_eq!(
        (status, body["data"]["total_point"].clone()),
        (200, json!(0))
    );
    assert_eq!(available(&app, "M1"), (100, 0));
    // A refund of money that was never paid is refused, by name.
    assert_eq!(
        app.post_refund(&refund("R1", "T2", "1")),
        (
            422,
            error_body(
                42201,
                "refund_amount 1.00 is more than the 0.00 left to refund"
            )
        )
    );
    // Its refund is of 0, and gives the 250 burned points back to the lots they came from.
    let full = refund("R2", "T2", "0");
    let (status, body) = app.post_refund(&full);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["data"]["refund_amount"].clone(),
            body["data"]["returned_burn_point"].clone(),
            body["data"]["reversed_point"].clone()
        ),
        (json!("0.00"), json!(250), json!(0))
    );
    assert_eq!(available(&app, "M1"), (350, 0));
    // The same refund again is a replay; another is refused: the trade is refunded in full.
    assert_eq!(app.post_refund(&full), (status, body));
    assert_eq!(
        app.post_refund(&refund("R3", "T2", "0")),
        (
            422,
            error_body(
                42201,
                "trade T2 was paid wholly with points and is refunded in full already"
            )
        )
    );
    // A trade that was paid is not refunded with 0.
    assert_eq!(
        app.post_refund(&refund("R4", "T1", "0")),
        (
            400,
            error_body(
                40001,
                "refund_amount must be more than 0 (0 refunds only a trade paid wholly with points)"
            )
        )
    );
    assert_eq!(app.counts().0, 2);
    app.assert_ledger_consistent();
}

/// M1 earns at a Q store 100 days ago: E 100 (KDP, two years) and QTR 40, expired at the end
/// of that quarter. A later trade at a store with no campaign burns the 100 E points and earns 1.
fn spent_and_expired(app: &TestApp) {
    let mut old = trade("TQ", "M1", &hours_ago(100 * 24));
    old["store_code"] = json!("Q001");
    let (status, body) = app.post_trade(&old);
    assert_eq!(
        (status, body["data"]["total_point"].clone()),
        (200, json!(140))
    );
    let mut spend = trade("TS", "M1", &hours_ago(1));
    spend["store_code"] = json!("X001");
    spend["payment_amount"] = json!("10");
    spend["burn_point"] = json!(100);
    assert_eq!(app.post_trade(&spend).0, 200);
    assert_eq!(available(app, "M1"), (1, 0));
}

/// The finance reports against the members' balances: the liability is what the balances hold
/// (owed points negative), and the movements since before anything happened roll forward to
/// it. Answers the movements' totals.
fn reports_reconcile(app: &TestApp, members: &[&str]) -> Value {
    let held: i64 = members
        .iter()
        .map(|vip| {
            let (_, body) = app.balance(vip, None);
            body["data"]["available_point"].as_i64().unwrap()
                + body["data"]["pending_point"].as_i64().unwrap()
        })
        .sum();
    let (status, liability) = app.get("/v1/point-engine/reports/liability");
    assert_eq!(status, 200, "{liability}");
    assert_eq!(
        liability["data"]["total"]["points"],
        json!(held),
        "{liability}"
    );
    let from = hours_ago(24 * 365).replace('+', "%2B");
    let (status, movements) = app.get(&format!(
        "/v1/point-engine/reports/movements?from={from}&by=campaign"
    ));
    assert_eq!(status, 200, "{movements}");
    let data = &movements["data"];
    assert_eq!(
        (
            data["opening"].clone(),
            data["closing"].clone(),
            data["ties_out"].clone()
        ),
        (json!(0), json!(held), json!(true)),
        "{movements}"
    );
    data["totals"].clone()
}

fn after_a_burn_and_an_expiry_record_shortfall_writes_off_what_is_gone() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    spent_and_expired(&app);
    let (status, body) = app.post_refund(&refund("R1", "TQ", "1000"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["detail"],
        json!([
            line("E", "", 100, 100, 0, 100, 0),
            line("A", "QTR", 40, 40, 40, 0, 0)
        ])
    );
    // The 40 QTR points had expired: they left the balance then, and are not written off.
    assert_eq!(
        (
            body["data"]["expired_point"].clone(),
            body["data"]["shortfall_point"].clone(),
            body["data"]["owed_point"].clone()
        ),
        (json!(40), json!(100), json!(0))
    );
    // Nothing was left to take: the balance is untouched and never negative.
    assert_eq!(available(&app, "M1"), (1, 0));
    assert_eq!(
        app.entries().iter().filter(|(k, _)| k == "reverse").count(),
        0
    );
    // The reports list the 100 points written off (spent), which had left the balance already,
    // and the 40 that expired, once.
    let totals = reports_reconcile(&app, &["M1"]);
    assert_eq!(
        (
            totals["written_off"].clone(),
            totals["owed"].clone(),
            totals["expired"].clone(),
            totals["net"].clone()
        ),
        (json!(100), json!(0), json!(40), json!(1))
    );
    app.assert_ledger_consistent();
}

fn after_a_burn_and_an_expiry_allow_negative_owes_what_is_gone() {
    let app = spawn_refund_app(ShortfallPolicy::AllowNegative);
    spent_and_expired(&app);
    let (status, body) = app.post_refund(&refund("R1", "TQ", "1000"));
    assert_eq!(status, 200, "{body}");
    // E: all 100 were spent, so all 100 are owed; the later trade's 1 point is not touched (no
    // other lot stands in). QTR: all 40 had expired, so nothing more is taken or owed for them.
    assert_eq!(
        body["data"]["detail"],
        json!([
            line("E", "", 100, 100, 0, 100, 100),
            line("A", "QTR", 40, 40, 40, 0, 0)
        ])
    );
    assert_eq!(available(&app, "M1"), (-99, 100));
    let (status, body) = app.balance("M1", None);
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["lots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["point"].clone())
            .collect::<Vec<_>>(),
        [json!(1)]
    );
    // The liability is the balance: 1 point held less 100 owed.
    let totals = reports_reconcile(&app, &["M1"]);
    assert_eq!(
        (
            totals["owed"].clone(),
            totals["debt_paid"].clone(),
            totals["net"].clone()
        ),
        (json!(100), json!(0), json!(-99))
    );
    let (_, liability) = app.get("/v1/point-engine/reports/liability");
    assert_eq!(
        (
            liability["data"]["total"]["points"].clone(),
            liability["data"]["total"]["owed"].clone()
        ),
        (json!(-99), json!(100))
    );

    // Nothing can be burned while the member owes.
    let mut burn = trade("TB", "M1", &hours_ago(0));
    burn["store_code"] = json!("X001");
    burn["burn_point"] = json!(1);
    assert_eq!(
        app.post_trade(&burn),
        (
            422,
            error_body(42200, "burn_point 1 is more than the -99 points available")
        )
    );
    // The next earn pays the debt first: 200 E points, 100 of them to the debt.
    let mut earn = trade("TN", "M1", &hours_ago(0));
    earn["store_code"] = json!("X001");
    earn["payment_amount"] = json!("2000");
    earn["total_amount"] = json!("2000");
    let (status, body) = app.post_trade(&earn);
    assert_eq!(
        (status, body["data"]["total_point"].clone()),
        (200, json!(200))
    );
    assert_eq!(available(&app, "M1"), (101, 0));
    let totals = reports_reconcile(&app, &["M1"]);
    assert_eq!(
        (
            totals["owed"].clone(),
            totals["debt_paid"].clone(),
            totals["net"].clone()
        ),
        (json!(100), json!(100), json!(101))
    );
    app.assert_ledger_consistent();
}

fn a_refund_reprices_under_the_ruleset_version_that_priced_the_trade() {
    let db = TestDb::new();
    let v1 = refund_rules("2");
    let first = spawn_app_with_settings(test_settings(v1.path(), &db));
    assert_eq!(first.post_trade(&trade("T1", "M1", &hours_ago(2))).0, 200);
    // The rules change: DOUBLE becomes triple. The refund still uses x2.
    let v2 = refund_rules("3");
    let second = spawn_app_with_settings(test_settings(v2.path(), &db));
    let (status, body) = second.post_refund(&refund("R1", "T1", "500"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["detail"],
        json!([
            line("E", "", 100, 50, 0, 0, 0),
            line("A", "DOUBLE", 200, 100, 0, 0, 0),
            line("A", "BIG", 50, 50, 0, 0, 0)
        ])
    );
    // A new trade is priced by the new rules.
    let (_, body) = second.post_trade(&trade("T2", "M1", &hours_ago(1)));
    assert_eq!(body["data"]["total_point"], json!(100 + 300 + 50));
    second.assert_ledger_consistent();
}

fn concurrent_refunds_never_exceed_the_payment_and_duplicates_refund_once() {
    let app = spawn_refund_app(ShortfallPolicy::RecordShortfall);
    assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(2))).0, 200);
    let app = std::sync::Arc::new(app);
    // 8 different refunds of HKD 200 on a HKD 1000 trade: exactly 5 land.
    let statuses: Vec<u16> = (0..8)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || app.post_refund(&refund(&format!("R{i}"), "T1", "200")).0)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(available(&app, "M1"), (0, 0));

    assert_eq!(app.post_trade(&trade("T2", "M2", &hours_ago(2))).0, 200);
    // 16 copies of one refund: one refund, the same answer to all.
    let body = refund("RX", "T2", "300");
    let answers: Vec<(u16, Value)> = (0..16)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            std::thread::spawn(move || app.post_refund(&body))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    assert_eq!(available(&app, "M2"), (210, 0));
    app.assert_ledger_consistent();
}

fn allow_negative_owes_what_the_grant_cannot_cover_and_leaves_other_lots_alone() {
    let program = std::fs::read_to_string(shipped_rules().join("program.toml"))
        .unwrap()
        .replace("pending_days = 0", "pending_days = 14");
    let rules = rules_dir(&[("program.toml", &program)]);
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.refund_shortfall_policy = ShortfallPolicy::AllowNegative;
    let app = spawn_app_with_settings(settings);
    let days_ago = |days: i64| hours_ago(24 * days);
    // TB (40 days ago) and TA (20 days ago) are usable: 100 E points each; TB expires first.
    assert_eq!(app.post_trade(&trade("TB", "M1", &days_ago(40))).0, 200);
    assert_eq!(app.post_trade(&trade("TA", "M1", &days_ago(20))).0, 200);
    // TC spends TB's 100 points and earns 50, pending for 14 days.
    let mut spend = trade("TC", "M1", &hours_ago(1));
    spend["payment_amount"] = json!("500");
    spend["burn_point"] = json!(100);
    assert_eq!(app.post_trade(&spend).0, 200);
    let before = [("E", 100, 0), ("E", 100, 100), ("E", 50, 50)];
    assert_eq!(lots(&app), before.map(|(t, p, r)| (t.to_string(), p, r)));

    // TB refunded: its 100 points are gone, so all 100 are owed. TA's and TC's lots keep their
    // points (what a refund takes never depends on what else the member holds), but the debt
    // comes off what can be spent: 100 usable less 100 owed.
    let (status, body) = app.post_refund(&refund("R1", "TB", "1000"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["detail"],
        json!([line("E", "", 100, 100, 0, 100, 100)])
    );
    assert_eq!(lots(&app), before.map(|(t, p, r)| (t.to_string(), p, r)));
    assert_eq!(available(&app, "M1"), (0, 100));
    let mut burn = trade("TD", "M1", &hours_ago(0));
    burn["store_code"] = json!("X001");
    burn["burn_point"] = json!(1);
    assert_eq!(
        app.post_trade(&burn),
        (
            422,
            error_body(42200, "burn_point 1 is more than the 0 points available")
        )
    );
    app.assert_ledger_consistent();
}

on_both_backends!(
    a_trade_paid_wholly_with_points_is_refunded_with_0_and_gives_its_burn_back,
    partial_then_full_refund_reprice_the_trade_at_its_net_amount,
    a_refund_number_reused_with_another_body_is_a_conflict_and_over_refunds_write_nothing,
    a_refund_gives_a_burn_back_in_proportion,
    after_a_burn_and_an_expiry_record_shortfall_writes_off_what_is_gone,
    after_a_burn_and_an_expiry_allow_negative_owes_what_is_gone,
    a_refund_reprices_under_the_ruleset_version_that_priced_the_trade,
    concurrent_refunds_never_exceed_the_payment_and_duplicates_refund_once,
    allow_negative_owes_what_the_grant_cannot_cover_and_leaves_other_lots_alone,
);
