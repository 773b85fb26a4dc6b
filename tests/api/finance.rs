//! Generated sequences of operations (earns, burns, late receipts whose points have expired,
//! partial and full refunds in any order, expiry runs) under each shortfall policy: after every
//! stretch of them the finance reports reconcile with the members' balances and the audit is
//! clean.

use crate::helpers::*;
use point_engine::domain::ShortfallPolicy;
use serde_json::json;

const MEMBERS: u64 = 6;
const STORES: [&str; 4] = ["D001", "D002", "Q001", "X001"];

fn held(app: &TestApp, vip: &str) -> i64 {
    held_at(app, vip, None)
}

/// What `vip` holds as of `as_of` (default: now).
fn held_at(app: &TestApp, vip: &str, as_of: Option<&str>) -> i64 {
    let (status, body) = app.balance(vip, as_of);
    match status {
        404 => 0,
        _ => {
            body["data"]["available_point"].as_i64().unwrap()
                + body["data"]["pending_point"].as_i64().unwrap()
        }
    }
}

/// Reports read the ledger a batch of lots at a time: any batch size gives what reading the
/// whole ledger at once (the reports' first form, kept as the reference) gives.
fn assert_batches_change_nothing(app: &TestApp, step: usize) {
    use point_engine::ledger::report::{self, GroupBy, Pricing};
    let now = chrono::Utc::now();
    let zone = point_engine::domain::ProgramTz::parse("+08:00").unwrap();
    let pricing = Pricing {
        currency: "HKD",
        point_cost: Some(rust_decimal::Decimal::new(5, 3)),
    };
    let mut conn = app.conn();
    let whole = i64::MAX;
    let audit = |conn: &mut _, members_per_batch| {
        point_engine::ledger::audit::audit_in_batches(conn, &zone, members_per_batch).unwrap()
    };
    let reference = audit(&mut conn, whole);
    for members_per_batch in [1, 4] {
        assert_eq!(
            audit(&mut conn, members_per_batch),
            reference,
            "step {step}"
        );
    }
    for as_of in [now, now - chrono::Duration::days(300)] {
        let reference =
            report::liability_in_batches(&mut conn, (as_of, now), "HKD", pricing.point_cost, whole)
                .unwrap();
        for lots_per_batch in [1, 3, 64] {
            let batched = report::liability_in_batches(
                &mut conn,
                (as_of, now),
                "HKD",
                pricing.point_cost,
                lots_per_batch,
            )
            .unwrap();
            assert_eq!(
                batched, reference,
                "step {step}: {lots_per_batch} lots a batch"
            );
        }
    }
    for from in [
        now - chrono::Duration::days(800),
        now - chrono::Duration::days(200),
    ] {
        for by in [GroupBy::Day, GroupBy::Store, GroupBy::Campaign] {
            let period = (from, now, now);
            let reference =
                report::movements_in_batches(&mut conn, period, by, &zone, pricing, whole).unwrap();
            for lots_per_batch in [1, 3, 64] {
                let batched = report::movements_in_batches(
                    &mut conn,
                    period,
                    by,
                    &zone,
                    pricing,
                    lots_per_batch,
                )
                .unwrap();
                assert_eq!(
                    batched, reference,
                    "step {step}: {lots_per_batch} lots a batch"
                );
            }
        }
    }
}

/// The liability is what the balances hold (owed points negative), in every grouping; the
/// movements since before anything happened roll forward to it, line by line. All as of one
/// moment: read at moments of their own, a quarter's end between them (CI runs the tests a
/// minute before one) expires points between the balances and the reports.
fn assert_reports_reconcile(app: &TestApp, step: usize) {
    assert_batches_change_nothing(app, step);
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let held: i64 = (0..MEMBERS)
        .map(|m| held_at(app, &format!("M{m}"), Some(&at)))
        .sum();
    let (_, liability) = app.get(&format!("/v1/point-engine/reports/liability?as_of={at}"));
    let liability = &liability["data"];
    assert_eq!(
        liability["total"]["points"],
        json!(held),
        "step {step}: {liability}"
    );
    for grouping in [
        "by_expiry_month",
        "by_expiry_quarter",
        "by_type",
        "by_campaign",
    ] {
        let sum: i64 = liability[grouping]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["points"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, held, "step {step}: {grouping}");
    }
    let from = hours_ago(24 * 800).replace('+', "%2B");
    for by in ["day", "store", "campaign"] {
        let (_, movements) = app.get(&format!(
            "/v1/point-engine/reports/movements?from={from}&to={at}&by={by}"
        ));
        let data = &movements["data"];
        let t = &data["totals"];
        let n = |k: &str| t[k].as_i64().unwrap();
        assert_eq!(
            n("earned") - n("burned") - n("expired") - n("reversed") + n("returned") - n("owed")
                + n("debt_paid"),
            n("net"),
            "step {step}: {t}"
        );
        assert_eq!(
            (
                data["opening"].clone(),
                data["closing"].clone(),
                data["ties_out"].clone()
            ),
            (json!(0), json!(held), json!(true)),
            "step {step} by {by}: {data}"
        );
        // The groups add up to the totals, line by line.
        for line in [
            "earned",
            "burned",
            "expired",
            "reversed",
            "returned",
            "owed",
            "debt_paid",
            "written_off",
            "recovered",
        ] {
            let sum: i64 = data["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r[line].as_i64().unwrap())
                .sum();
            assert_eq!(sum, n(line), "step {step} by {by}: {line}");
        }
    }
}

fn run(policy: ShortfallPolicy, seed: u64, steps: usize) -> (i64, i64, i64) {
    let rules = refund_rules("2");
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.refund_shortfall_policy = policy;
    let app = spawn_app_with_settings(settings);
    let mut rng = Lcg(seed);
    // (out_trade_no, payment in whole HKD) of every trade that was recorded.
    let mut trades: Vec<(String, u64)> = Vec::new();
    for step in 0..steps {
        match rng.below(10) {
            0..=4 => {
                let vip = format!("M{}", rng.below(MEMBERS));
                let late = rng.below(5) == 0;
                let sales_time = match late {
                    // Points whose quarter ended long ago: the QTR ones expired at once.
                    true => format!("2025-{:02}-15T10:00:00+08:00", 1 + rng.below(9)),
                    false => hours_ago(1 + rng.below(200) as i64),
                };
                let amount = 10 * rng.below(120);
                let no = format!("T{step}");
                let mut body = trade(&no, &vip, &sales_time);
                body["store_code"] = json!(STORES[rng.below(4) as usize]);
                body["total_amount"] = json!(amount.to_string());
                body["payment_amount"] = json!(amount.to_string());
                let available = held(&app, &vip);
                if !late && available > 0 && rng.below(2) == 0 {
                    body["burn_point"] = json!(1 + rng.below(available as u64));
                }
                let (status, answer) = app.post_trade(&body);
                assert!(
                    status == 200 || status == 422,
                    "step {step}: {status} {answer}"
                );
                if status == 200 {
                    trades.push((no, amount));
                }
            }
            5..=7 if !trades.is_empty() => {
                // Any trade, in any order: a third, a half or all of its payment.
                let (no, paid) = trades[rng.below(trades.len() as u64) as usize].clone();
                let amount = match rng.below(3) {
                    0 => paid / 3,
                    1 => paid / 2,
                    _ => paid,
                };
                let (status, answer) =
                    app.post_refund(&refund(&format!("R{step}"), &no, &amount.to_string()));
                assert!(
                    [200, 400, 422].contains(&status),
                    "step {step}: {status} {answer}"
                );
            }
            8 => {
                point_engine::service::expire_due(&app.store(), chrono::Utc::now()).unwrap();
            }
            _ => {}
        }
        if step % 50 == 49 {
            assert_reports_reconcile(&app, step);
            app.assert_ledger_consistent();
        }
    }
    assert_reports_reconcile(&app, steps);
    app.assert_ledger_consistent();
    let from = hours_ago(24 * 800).replace('+', "%2B");
    let (_, movements) = app.get(&format!("/v1/point-engine/reports/movements?from={from}"));
    let t = &movements["data"]["totals"];
    (
        t["written_off"].as_i64().unwrap(),
        t["owed"].as_i64().unwrap(),
        t["debt_paid"].as_i64().unwrap(),
    )
}

fn generated_operations_reconcile_under_record_shortfall() {
    let (written_off, owed, paid) = run(ShortfallPolicy::RecordShortfall, 15, 400);
    // The sequence does reach the lines it tests.
    assert!(written_off > 0, "{written_off}");
    assert_eq!((owed, paid), (0, 0));
}

fn generated_operations_reconcile_under_allow_negative() {
    let (written_off, owed, paid) = run(ShortfallPolicy::AllowNegative, 16, 400);
    assert_eq!(written_off, 0);
    assert!(owed > 0 && paid > 0, "{owed} {paid}");
}

/// A ledger written before points owed were kept as movements (and before a refund of 0 was
/// allowed) migrates: what is owed becomes an `owed` movement, and the reports and the audit
/// agree with the balances at once.
fn a_ledger_from_before_the_debt_movements_migrates_and_reconciles() {
    let rules = refund_rules("2");
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.refund_shortfall_policy = ShortfallPolicy::AllowNegative;
    {
        let app = spawn_app_with_settings(settings.clone());
        let mut earn = trade("N1", "NEG", &hours_ago(2));
        earn["store_code"] = json!("X001");
        assert_eq!(app.post_trade(&earn).0, 200);
        let mut spend = trade("N2", "NEG", &hours_ago(1));
        spend["store_code"] = json!("X001");
        spend["payment_amount"] = json!("10");
        spend["burn_point"] = json!(100);
        assert_eq!(app.post_trade(&spend).0, 200);
        // N1 refunded in full: its 100 points were spent, so 100 are owed (N2's 1 point is
        // the member's: the balance is 1 less 100).
        let (status, body) = app.post_refund(&refund("NR1", "N1", "1000"));
        assert_eq!(
            (status, body["data"]["owed_point"].clone()),
            (200, json!(100))
        );
        // Back to the schema before the debt-movement and settlement migrations, as an older release left it.
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;
        match &mut *app.conn() {
            point_engine::ledger::Conn::Sqlite(c) => {
                c.batch_execute("PRAGMA foreign_keys = OFF").unwrap();
                for _ in 0..3 {
                    c.revert_last_migration(point_engine::ledger::migrations::SQLITE)
                        .unwrap();
                }
                c.batch_execute("PRAGMA foreign_keys = ON").unwrap();
            }
            point_engine::ledger::Conn::Postgres(c) => {
                for _ in 0..3 {
                    c.revert_last_migration(point_engine::ledger::migrations::POSTGRES)
                        .unwrap();
                }
            }
        }
    }
    let app = spawn_app_with_settings(settings);
    app.assert_ledger_consistent();
    assert_eq!(held(&app, "NEG"), -99);
    let (_, liability) = app.get("/v1/point-engine/reports/liability");
    assert_eq!(
        (
            liability["data"]["total"]["points"].clone(),
            liability["data"]["total"]["owed"].clone()
        ),
        (json!(-99), json!(100))
    );
    let from = hours_ago(24).replace('+', "%2B");
    let (_, movements) = app.get(&format!("/v1/point-engine/reports/movements?from={from}"));
    let data = &movements["data"];
    assert_eq!(
        (
            data["totals"]["owed"].clone(),
            data["closing"].clone(),
            data["ties_out"].clone()
        ),
        (json!(100), json!(-99), json!(true))
    );
    // A later earn pays the debt off, through the new movements.
    let mut earn = trade("N3", "NEG", &hours_ago(0));
    earn["store_code"] = json!("X001");
    earn["payment_amount"] = json!("2000");
    earn["total_amount"] = json!("2000");
    assert_eq!(app.post_trade(&earn).0, 200);
    assert_eq!(held(&app, "NEG"), 200 - 99);
    app.assert_ledger_consistent();
}

on_both_backends!(
    generated_operations_reconcile_under_record_shortfall,
    generated_operations_reconcile_under_allow_negative,
    a_ledger_from_before_the_debt_movements_migrates_and_reconciles,
);
