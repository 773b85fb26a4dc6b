use crate::helpers::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use serde_json::json;

/// Member 1 earns 100 (lot 1), then burns 30 of it and earns 50 (lot 2); member 2 earns 100
/// (lot 3). Entries: 1 earn 100, 2 burn -30, 3 earn 50, 4 earn 100.
fn ledger_with_a_burn() -> TestApp {
    let app = spawn_app();
    assert_eq!(app.post_trade(&trade("T1", "M-A", &hours_ago(2))).0, 200);
    let mut burn = trade("T2", "M-A", &hours_ago(1));
    burn["payment_amount"] = json!("500.00");
    burn["burn_point"] = json!(30);
    assert_eq!(app.post_trade(&burn).0, 200);
    assert_eq!(app.post_trade(&trade("T3", "M-B", &hours_ago(1))).0, 200);
    app
}

fn audit_command(app: &TestApp) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args(["audit", "--database"])
        .arg(&app.database)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

fn a_sound_ledger_passes_the_audit() {
    let app = ledger_with_a_burn();
    assert_eq!(
        audit_command(&app),
        (
            true,
            "ledger consistent: 3 trades, 3 lots, 4 entries\n".into()
        )
    );
    assert_eq!(
        app.get("/v1/point-engine/audit"),
        (
            200,
            json!({"code": 0, "msg": "success", "data": {
                "consistent": true, "trades": 3, "lots": 3, "entries": 4, "violations": []
            }})
        )
    );
}

fn the_audit_catches_each_kind_of_damage() {
    // (damage, entries after it, the violations the audit reports)
    let cases: [(&str, usize, &[&str]); 7] = [
        (
            "UPDATE lots SET remaining = 71 WHERE id = 1", 4,
            &[
                "lot 1: entries sum to 70, remaining is 71",
                "totals by type: entries {\"E\": 220}, lots remaining {\"E\": 221}",
            ],
        ),
        (
            "DELETE FROM entries WHERE id = 4", 3,
            &[
                "lot 3: entries sum to 0, remaining is 100",
                "lot 3: earn entries (points, trade) [], expected [(100, Some(3))]",
                "totals by type: entries {\"E\": 120}, lots remaining {\"E\": 220}",
            ],
        ),
        (
            "UPDATE entries SET trade_id = 1 WHERE kind = 'burn'", 4,
            &[
                "entry 2: does not show its lot's point type and campaign and its trade's numbers",
                "trade 1: burn entries take 30, burn_point is 0",
                "trade 2: burn entries take 0, burn_point is 30",
            ],
        ),
        (
            "UPDATE entries SET campaign_code = 'FORGED' WHERE id = 1", 4,
            &["entry 1: does not show its lot's point type and campaign and its trade's numbers"],
        ),
        ("UPDATE entries SET member_id = 2 WHERE id = 2", 4, &["entry 2: member 2 but lot 1 belongs to member 1"]),
        (
            match backend() {
                Backend::Sqlite => "PRAGMA ignore_check_constraints = ON; UPDATE lots SET remaining = -5 WHERE id = 3",
                Backend::Postgres => "ALTER TABLE lots DROP CONSTRAINT lots_check; UPDATE lots SET remaining = -5 WHERE id = 3",
            }, 4,
            &[
                "lot 3: remaining -5 outside 0..=100",
                "lot 3: entries sum to 100, remaining is -5",
                "totals by type: entries {\"E\": 220}, lots remaining {\"E\": 115}",
            ],
        ),
        (
            "INSERT INTO entries (member_id, lot_id, trade_id, kind, points, effective_at_ms, created_at_ms) \
             VALUES (2, 3, 3, 'expire', -100, 0, 0), (2, 3, 3, 'expire', -100, 0, 0)", 6,
            &[
                "entry 5: does not show its lot's point type and campaign and its trade's numbers",
                "entry 6: does not show its lot's point type and campaign and its trade's numbers",
                "lot 3: entries sum to -100, remaining is 100",
                // Lot 3's expiry depends on the day the test runs (KDP counts from the sale).
                // Times in the program's zone (+08:00).
                "lot 3: expired at 1970-01-01 08:00:00 +08:00, 1970-01-01 08:00:00 +08:00, but it is usable until {lot_3_expires_at}",
                "totals by type: entries {\"E\": 20}, lots remaining {\"E\": 220}",
            ],
        ),
    ];
    for (damage, entries, violations) in cases {
        let app = ledger_with_a_burn();
        let lot_3_expires_at_ms = {
            use point_engine::ledger::schema::lots;
            lots::table
                .find(3)
                .select(lots::expires_at_ms)
                .first::<Option<i64>>(&mut app.conn())
                .unwrap()
                .expect("KDP lots expire")
        };
        let violations: Vec<String> = violations
            .iter()
            .map(|v| {
                let local = chrono::DateTime::from_timestamp_millis(lot_3_expires_at_ms)
                    .unwrap()
                    .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
                v.replace(
                    "{lot_3_expires_at}",
                    &local.format("%Y-%m-%d %H:%M:%S %:z").to_string(),
                )
            })
            .collect();
        app.conn().batch_execute(damage).unwrap();
        let (ok, stdout) = audit_command(&app);
        assert!(!ok, "{damage}");
        let mut expected = format!(
            "ledger INCONSISTENT: {} violations in 3 trades, 3 lots, {entries} entries\n",
            violations.len()
        );
        for v in &violations {
            expected += v;
            expected += "\n";
        }
        assert_eq!(stdout, expected, "{damage}");
        let (status, body) = app.get("/v1/point-engine/audit");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["consistent"], json!(false), "{damage}");
        assert_eq!(body["data"]["violations"], json!(violations), "{damage}");
        // The same, read a member at a time.
        let zone = point_engine::domain::ProgramTz::parse("+08:00").unwrap();
        let one_by_one =
            point_engine::ledger::audit::audit_in_batches(&mut app.conn(), &zone, 1).unwrap();
        assert_eq!(one_by_one.violations, violations, "{damage}");
        assert_eq!(one_by_one.entries, entries, "{damage}");
    }
}

/// A lot with more points than its trade earns, its entries in step with it: every sum holds,
/// and only re-pricing the trade under its rules finds it. Also an A grant of a campaign that
/// never matched the trade.
fn the_audit_reprices_every_trade_under_its_rules() {
    let app = ledger_with_a_burn();
    let version: String = {
        use point_engine::ledger::schema::trades;
        trades::table
            .select(trades::ruleset_version)
            .first(&mut app.conn())
            .unwrap()
    };
    app.conn()
        .batch_execute(
            "UPDATE lots SET points = points + 50, remaining = remaining + 50 WHERE id = 3; \
             UPDATE entries SET points = points + 50 WHERE id = 4; \
             UPDATE lots SET point_type = 'A', campaign_code = 'Q1-2023-VISA-DP01' WHERE id = 2",
        )
        .unwrap();
    let violations = [
        format!(
            "trade T2: campaign Q1-2023-VISA-DP01 granted 50 points, its rules ({version}) grant at most 0"
        ),
        format!("trade T3: its E points granted 150 points, its rules ({version}) grant at most 100"),
    ];
    let (ok, stdout) = audit_command(&app);
    assert!(!ok);
    assert!(
        stdout.ends_with(&format!("{}\n{}\n", violations[0], violations[1])),
        "{stdout}"
    );
    let (_, body) = app.get("/v1/point-engine/audit");
    let found = body["data"]["violations"].as_array().unwrap();
    assert_eq!(found[found.len() - 2..], violations.map(|v| json!(v)));
}

/// `ledger_with_a_burn`, then trade 2 (HKD 500, burned 30, earned 50 in lot 2) is half
/// refunded: 25 points of lot 2 are reversed and 15 burned points come back to lot 1.
fn ledger_with_a_refund() -> TestApp {
    let app = ledger_with_a_burn();
    let (status, body) = app.post_refund(&refund("R1", "T2", "250"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["data"]["reversed_point"],
            &body["data"]["returned_burn_point"]
        ),
        (&json!(25), &json!(15))
    );
    app
}

fn the_audit_catches_damage_to_refunds() {
    let cases: [(&str, &[&str]); 6] = [
        (
            "DELETE FROM entries WHERE kind = 'reverse' AND points < 0",
            &[
                "lot 2: entries sum to 50, remaining is 25",
                "refund 1: reverse entries take 0 and give 15, its lines take 25 and it gave back 15 points (15 of them burned)",
                "totals by type: entries {\"E\": 235}, lots remaining {\"E\": 210}",
            ],
        ),
        (
            "UPDATE refund_lines SET shortfall = 5, owed = 5",
            &[
                "refund line 1: took 25 from its grant, 0 from what expired of it and 0 elsewhere, 20 of 25 due",
                "refund line 1: owes 5 of a shortfall of 5 under record_shortfall",
                "refund 1: reverse entries take 25 and give 15, its lines take 20 and it gave back 15 points (15 of them burned)",
                "refund line 1: owes 5, its debt movements leave 0",
            ],
        ),
        (
            "INSERT INTO debt_movements (refund_line_id, kind, points, paid_by_lot_id, effective_at_ms, created_at_ms) VALUES (1, 'owed', 7, NULL, 0, 0)",
            &["refund line 1: owes 0, its debt movements leave 7"],
        ),
        (
            "UPDATE refunds SET refund_amount_minor = 60000, burn_returned = 40",
            &[
                "refund 1: reverse entries take 25 and give 15, its lines take 25 and it gave back 40 points (40 of them burned)",
                "trade 2: refunds take 60000 of a payment of 50000 and give back 40 of a burn of 30",
            ],
        ),
        (
            // A refund line claims points of its grant had expired: the lot never expired.
            "UPDATE refund_lines SET from_grant = 20, from_expired = 5",
            &[
                "lot 2: refunds took 5 of its expired points, it expired 0",
                "refund 1: reverse entries take 25 and give 15, its lines take 20 and it gave back 15 points (15 of them burned)",
            ],
        ),
        (
            "UPDATE refund_lines SET points = 500, shortfall = 475",
            &["lot 2: refunds take 500 of a grant of 50"],
        ),
    ];
    for (damage, violations) in cases {
        let app = ledger_with_a_refund();
        app.assert_ledger_consistent();
        app.conn().batch_execute(damage).unwrap();
        let (ok, stdout) = audit_command(&app);
        assert!(!ok, "{damage}");
        let found: Vec<&str> = stdout.lines().skip(1).collect();
        assert_eq!(found, violations, "{damage}");
    }
}

/// The audit reads the whole ledger in one snapshot: while trades, burns, refunds and expiries
/// land, every audit finds a consistent ledger (checks read in separate statements would see
/// a trade's lots without its entries, or an expiry half-way).
fn an_audit_during_writes_sees_one_consistent_ledger() {
    let app = std::sync::Arc::new(spawn_app());
    // Old receipts whose points the expiry run below expires while the audits run.
    for i in 0..40 {
        let old = trade(
            &format!("OLD-{i}"),
            &format!("M{}", i % 8),
            "2023-01-20T10:00:00+08:00",
        );
        assert_eq!(app.post_trade(&old).0, 200);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (app, stop) = (app.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let no = format!("W{w}-{i}");
                    let mut body = trade(&no, &format!("M{}", i % 8), &hours_ago(1));
                    if i % 3 == 1 {
                        body["burn_point"] = json!(20);
                    }
                    let (status, answer) = app.post_trade(&body);
                    assert!(status == 200 || status == 422, "{answer}");
                    if status == 200 && i % 4 == 2 {
                        let (status, answer) =
                            app.post_refund(&refund(&format!("R{no}"), &no, "400"));
                        assert_eq!(status, 200, "{answer}");
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let expiry = {
        let app = app.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            point_engine::service::expire_due(&app.store(), chrono::Utc::now()).unwrap()
        })
    };
    for _ in 0..15 {
        let (status, body) = app.get("/v1/point-engine/audit");
        assert_eq!(status, 200);
        assert_eq!(body["data"]["violations"], json!([]), "{body}");
        assert_eq!(body["data"]["consistent"], json!(true));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writers.into_iter().for_each(|w| w.join().unwrap());
    assert_eq!(expiry.join().unwrap().lots, 80);
    app.assert_ledger_consistent();
}

on_both_backends!(
    the_audit_reprices_every_trade_under_its_rules,
    an_audit_during_writes_sees_one_consistent_ledger,
    a_sound_ledger_passes_the_audit,
    the_audit_catches_each_kind_of_damage,
    the_audit_catches_damage_to_refunds,
);
