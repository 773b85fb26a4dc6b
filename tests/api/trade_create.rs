use crate::helpers::*;
use serde_json::{json, Value};

/// The seed trade's answer, with the `trade_no` point-engine minted for it.
pub(crate) fn seed_answer(trade_no: &str) -> Value {
    json!({
        "code": 0,
        "msg": "success",
        "data": {
            "trade_no": trade_no,
            "total_point": 300,
            "detail": [
                {"point": 100, "type": "E", "expire_type": "KDP", "expire_time": "",
                 "remark": "1 point per HKD 10 spent", "campaign_code": ""},
                {"point": 200, "type": "A", "expire_type": "QUARTER", "expire_time": "2023-03-31",
                 "remark": "Visa double points, Q1 2023", "campaign_code": "Q1-2023-VISA-DP01"}
            ]
        }
    })
}

fn seed_with_receipt_earns_100_e_and_200_a() {
    let app = spawn_app();
    let (status, body) = app.post_raw("application/json", SEED_WITH_RECEIPT);
    assert_eq!(status, 200);
    assert_eq!(body, seed_answer(&app.trade_no("XXXX")));
    assert_eq!(app.counts(), (1, 2, 2, 1));
    assert_eq!(
        app.lots(),
        vec![
            ("E".into(), 100, 100, Some("2025-01-31".into())),
            ("A".into(), 200, 200, Some("2023-03-31".into())),
        ]
    );
    assert_eq!(
        app.entries(),
        vec![("earn".into(), 100), ("earn".into(), 200)]
    );
    app.assert_ledger_consistent();
}

fn seed_without_receipt_earns_the_same() {
    let app = spawn_app();
    let (status, body) = app.post_raw("application/json", SEED_WITHOUT_RECEIPT);
    assert_eq!(status, 200);
    assert_eq!(body, seed_answer(&app.trade_no("XXXX")));
}

fn the_answer_keeps_the_documents_field_order() {
    let app = spawn_app();
    let response = admin_agent()
        .post(&format!("{}/v1/point-engine/trade-create", app.address))
        .set("Content-Type", "application/json")
        .send_string(SEED_WITH_RECEIPT)
        .unwrap()
        .into_string()
        .unwrap();
    let expected = format!(
        "{{\"code\":0,\"msg\":\"success\",\"data\":{{\"trade_no\":\"{}\",\"total_point\":300,\"detail\":[\
         {{\"point\":100,\"type\":\"E\",\"expire_type\":\"KDP\",\"expire_time\":\"\",\"remark\":\"1 point per HKD 10 spent\",\"campaign_code\":\"\"}},\
         {{\"point\":200,\"type\":\"A\",\"expire_type\":\"QUARTER\",\"expire_time\":\"2023-03-31\",\"remark\":\"Visa double points, Q1 2023\",\"campaign_code\":\"Q1-2023-VISA-DP01\"}}]}}}}",
        app.trade_no("XXXX")
    );
    assert_eq!(response, expected);
}

fn trade_numbers_carry_their_posting_time_and_sort_in_posting_order() {
    let app = spawn_app();
    let ms_of = |trade_no: &str| i64::from_str_radix(&minted(trade_no)[2..13], 16).unwrap();
    let mut posted = Vec::new();
    for out_trade_no in ["T1", "T2"] {
        let before_ms = chrono::Utc::now().timestamp_millis();
        let (status, body) = app.post_trade(&trade(out_trade_no, "M1", &hours_ago(1)));
        let after_ms = chrono::Utc::now().timestamp_millis();
        assert_eq!(status, 200, "{body}");
        let trade_no = body["data"]["trade_no"].as_str().unwrap().to_string();
        assert!(
            (before_ms..=after_ms).contains(&ms_of(&trade_no)),
            "{trade_no}"
        );
        assert_eq!(trade_no, app.trade_no(out_trade_no));
        posted.push(trade_no);
    }
    assert!(ms_of(&posted[0]) <= ms_of(&posted[1]), "{posted:?}");
}

fn a_replay_answers_the_same_and_grants_nothing_new() {
    let app = spawn_app();
    let first = app.post_raw("application/json", SEED_WITH_RECEIPT);
    let second = app.post_raw("application/json", SEED_WITH_RECEIPT);
    assert_eq!(first, (200, seed_answer(&app.trade_no("XXXX"))));
    assert_eq!(second, first);
    assert_eq!(app.counts(), (1, 2, 2, 1));
    app.assert_ledger_consistent();
}

/// A replay of a trade this process recorded is answered from memory (`--recent-trades-max`);
/// one it did not record, or with the memory off, from the ledger. Both answer alike: the
/// same body for the same request, the same conflict for another.
fn a_replay_answers_alike_from_memory_and_from_the_ledger() {
    let db = TestDb::new();
    let settings = test_settings(&shipped_rules(), &db);
    let remembering = spawn_app_with_settings(settings.clone());
    let forgetful = spawn_app_with_settings(point_engine::config::Settings {
        recent_trades_max: 0,
        ..settings
    });
    let first = remembering.post_raw("application/json", SEED_WITH_RECEIPT);
    assert_eq!(first, (200, seed_answer(&remembering.trade_no("XXXX"))));
    let mut spelled = seed();
    spelled["total_amount"] = json!(1000);
    for app in [&remembering, &forgetful] {
        assert_eq!(app.post_raw("application/json", SEED_WITH_RECEIPT), first);
        assert_eq!(app.post_trade(&spelled), first);
    }
    let mut other = seed();
    other["payment_amount"] = json!("999.00");
    let conflict = remembering.post_trade(&other);
    assert_eq!(conflict.0, 409);
    assert_eq!(forgetful.post_trade(&other), conflict);
    // Recorded by the other instance: the first reads it from the ledger.
    let elsewhere = trade("ELSEWHERE-1", "M-ELSEWHERE", &hours_ago(1));
    let recorded = forgetful.post_trade(&elsewhere);
    assert_eq!(recorded.0, 200, "{recorded:?}");
    assert_eq!(remembering.post_trade(&elsewhere), recorded);
    assert_eq!(forgetful.post_trade(&elsewhere), recorded);
    let (trades, _, _, members) = remembering.counts();
    assert_eq!((trades, members), (2, 2));
    remembering.assert_ledger_consistent();
    // Two replays and a conflict from memory; none by the other, nor its own trade's replay.
    let answered = |app: &TestApp| app.metric("point_engine_recent_trades_answered_total");
    assert_eq!(answered(&remembering).as_deref(), Some("3"));
    assert_eq!(answered(&forgetful).as_deref(), Some("0"));
}

fn a_replay_may_spell_amounts_as_numbers() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let mut body = seed();
    body["total_amount"] = json!(1000);
    body["payment_amount"] = json!(1000.0);
    body["burn_point"] = json!(0);
    assert_eq!(
        app.post_trade(&body),
        (200, seed_answer(&app.trade_no("XXXX")))
    );
    assert_eq!(app.counts(), (1, 2, 2, 1));
}

fn the_same_out_trade_no_with_another_body_is_a_conflict() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let mut body = seed();
    body["payment_amount"] = json!("999.00");
    let (status, answer) = app.post_trade(&body);
    assert_eq!(status, 409);
    assert_eq!(
        answer,
        error_body(
            40900,
            &format!(
                "out_trade_no was already used by trade {} with a different request",
                app.trade_no("XXXX")
            )
        )
    );
    assert_eq!(app.counts(), (1, 2, 2, 1));
}

fn thirty_two_concurrent_copies_grant_exactly_once() {
    let app = spawn_app();
    let body = trade("CONCURRENT-1", "M-CONC", &hours_ago(1));
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|_| scope.spawn(|| app.post_trade(&body)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = &answers[0];
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(first.1["data"]["total_point"], json!(100));
    assert!(
        answers.iter().all(|a| a == first),
        "every copy answers the same"
    );
    assert_eq!(app.counts(), (1, 1, 1, 1));
    app.assert_ledger_consistent();
}

fn different_trades_of_one_member_in_parallel_all_land() {
    let app = spawn_app();
    std::thread::scope(|scope| {
        for i in 0..16 {
            let app = &app;
            scope.spawn(move || {
                let (status, _) =
                    app.post_trade(&trade(&format!("PAR-{i}"), "M-PAR", &hours_ago(1)));
                assert_eq!(status, 200);
            });
        }
    });
    assert_eq!(app.counts(), (16, 16, 16, 1));
    let (_, balance) = app.balance("M-PAR", None);
    assert_eq!(balance["data"]["available_point"], json!(1600));
    app.assert_ledger_consistent();
}

/// Rules where E points (KDP, rolling 1 month) expire before the A points of an every-store
/// campaign (fixed 40, end of the quarter 4 quarters ahead): burns must take E first.
const BURN_RULES: &str = r#"
[program]
name = "Burn order"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "rolling_months", months = 1 }
currencies = { HKD = "1" }

[[campaign]]
code = "ALWAYS-40"
remark = "40 bonus points"
starts_at = "2000-01-01T00:00:00Z"
ends_at = "2100-01-01T00:00:00Z"
expiry = "QUARTER"
quarters_ahead = 4
award = { fixed = 40 }
"#;

fn a_burn_takes_the_soonest_to_expire_first_in_the_same_transaction() {
    let rules = rules_dir(&[("rules.toml", BURN_RULES)]);
    let app = spawn_app_with_rules(rules.path());
    let (status, _) = app.post_trade(&trade("EARN-1", "M-BURN", &hours_ago(2)));
    assert_eq!(status, 200);
    let mut burn = trade("BURN-1", "M-BURN", &hours_ago(1));
    burn["payment_amount"] = json!("500.00");
    burn["burn_point"] = json!(120);
    let (status, body) = app.post_trade(&burn);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["total_point"], json!(90));
    let remaining: Vec<(String, i64, i64)> = app
        .lots()
        .into_iter()
        .map(|(t, p, r, _)| (t, p, r))
        .collect();
    assert_eq!(
        remaining,
        vec![
            ("E".into(), 100, 0),
            ("A".into(), 40, 20),
            ("E".into(), 50, 50),
            ("A".into(), 40, 40),
        ]
    );
    assert_eq!(
        app.entries(),
        vec![
            ("earn".into(), 100),
            ("earn".into(), 40),
            ("burn".into(), -100),
            ("burn".into(), -20),
            ("earn".into(), 50),
            ("earn".into(), 40),
        ]
    );
    let (_, balance) = app.balance("M-BURN", None);
    assert_eq!(balance["data"]["available_point"], json!(20 + 50 + 40));
    app.assert_ledger_consistent();
}

fn a_burn_above_the_balance_writes_nothing() {
    let app = spawn_app();
    app.post_trade(&trade("EARN-1", "M-POOR", &hours_ago(2)));
    let before = app.counts();
    let mut burn = trade("BURN-1", "M-POOR", &hours_ago(1));
    burn["burn_point"] = json!("101");
    let (status, body) = app.post_trade(&burn);
    assert_eq!(status, 422);
    assert_eq!(
        body,
        error_body(
            42200,
            "burn_point 101 is more than the 100 points available"
        )
    );
    assert_eq!(app.counts(), before);
    assert_eq!(app.lots()[0].2, 100);

    // A new member with nothing: not even the member row is written.
    let mut stranger = trade("BURN-2", "M-NEW", &hours_ago(1));
    stranger["burn_point"] = json!(1);
    assert_eq!(app.post_trade(&stranger).0, 422);
    assert_eq!(app.counts(), before);
    app.assert_ledger_consistent();
}

fn expired_points_cannot_be_burned() {
    let app = spawn_app();
    // The seed's 300 points expired long ago (Q1 2023; KDP end of January 2025).
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let mut burn = trade("BURN-OLD", "040xxxx", &hours_ago(1));
    burn["burn_point"] = json!(1);
    let (status, body) = app.post_trade(&burn);
    assert_eq!(
        (status, body),
        (
            422,
            error_body(42200, "burn_point 1 is more than the 0 points available")
        )
    );
}

fn other_currencies_are_converted_and_unknown_ones_rejected() {
    let app = spawn_app();
    let mut usd = trade("USD-1", "M-FX", &hours_ago(1));
    usd["currency"] = json!("USD");
    usd["total_amount"] = json!("100.00");
    usd["payment_amount"] = json!("100.00");
    let (status, body) = app.post_trade(&usd);
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["total_point"],
        json!(78),
        "USD 100 = HKD 780 = 78 points"
    );

    let mut eur = trade("EUR-1", "M-FX", &hours_ago(1));
    eur["currency"] = json!("EUR");
    let (status, body) = app.post_trade(&eur);
    assert_eq!(
        (status, body),
        (
            400,
            error_body(40001, "currency EUR is not accepted by this program")
        )
    );

    let mut default = trade("DEFAULT-1", "M-FX", &hours_ago(1));
    default.as_object_mut().unwrap().remove("currency");
    assert_eq!(
        app.post_trade(&default).1["data"]["total_point"],
        json!(100)
    );
    assert_eq!(app.counts().0, 2);
}

const QUARTER_RULES: &str = r#"
[program]
name = "Quarter edges"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }

[[campaign]]
code = "ALL-2023"
starts_at = "2023-01-01T00:00:00+08:00"
ends_at = "2024-01-01T00:00:00+08:00"
expiry = "QUARTER"
award = { fixed = 5 }
"#;

fn quarter_ends_follow_the_program_time_zone_at_the_edges() {
    let rules = rules_dir(&[("rules.toml", QUARTER_RULES)]);
    let app = spawn_app_with_rules(rules.path());
    let cases = [
        ("2023-03-31T23:59:59+08:00", "2023-03-31"), // the last second of Q1 in +08:00
        ("2023-03-31T15:59:59Z", "2023-03-31"),      // the same second, in UTC
        ("2023-03-31T16:00:00Z", "2023-06-30"),      // still 31 March in UTC, already Q2 in +08:00
        ("2023-04-01T00:00:00+08:00", "2023-06-30"),
        ("2023-12-31T23:59:59+08:00", "2023-12-31"),
    ];
    for (i, (sales_time, quarter_end)) in cases.iter().enumerate() {
        let (status, body) = app.post_trade(&trade(&format!("Q-{i}"), "M-Q", sales_time));
        assert_eq!(status, 200, "{sales_time}: {body}");
        assert_eq!(
            body["data"]["detail"],
            json!([
                {"point": 100, "type": "E", "expire_type": "KDP", "expire_time": "", "remark": "", "campaign_code": ""},
                {"point": 5, "type": "A", "expire_type": "QUARTER", "expire_time": quarter_end, "remark": "", "campaign_code": "ALL-2023"}
            ]),
            "{sales_time}"
        );
    }
    // 2024-01-01 in +08:00 is outside the campaign, though still 2023 in UTC.
    let (_, body) = app.post_trade(&trade("Q-OUT", "M-Q", "2023-12-31T16:00:00Z"));
    assert_eq!(body["data"]["total_point"], json!(100));
}

fn an_acknowledged_trade_survives_kill_9() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let port = process_port();
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_point-engine"))
            .args([
                "serve",
                "--expire-interval-s",
                "0",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&db)
            .arg("--rules")
            .arg(shipped_rules())
            .arg("--clients")
            .arg(test_clients_file(dir.path()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let url = format!("http://127.0.0.1:{port}");
    let wait_up = || {
        for _ in 0..200 {
            if ureq::get(&format!("{url}/health")).call().is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server did not come up");
    };
    let post = || {
        admin_agent()
            .post(&format!("{url}/v1/point-engine/trade-create"))
            .set("Content-Type", "application/json")
            .send_string(SEED_WITH_RECEIPT)
            .unwrap()
            .into_json::<Value>()
            .unwrap()
    };
    let mut server = start();
    wait_up();
    let first = post();
    server.kill().unwrap(); // SIGKILL: no graceful shutdown
    server.wait().unwrap();

    let mut server = start();
    wait_up();
    let balance: Value = admin_agent()
        .get(&format!("{url}/v1/point-engine/members/040xxxx/balance"))
        .query("as_of", "2023-02-01T00:00:00+08:00")
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let replay = post();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        first,
        seed_answer(&minted(first["data"]["trade_no"].as_str().unwrap()))
    );
    assert_eq!(replay, first);
    assert_eq!(balance["data"]["available_point"], json!(300));
}

on_both_backends!(
    no_member_holds_more_points_than_a_balance_can_show,
    seed_with_receipt_earns_100_e_and_200_a,
    seed_without_receipt_earns_the_same,
    the_answer_keeps_the_documents_field_order,
    trade_numbers_carry_their_posting_time_and_sort_in_posting_order,
    a_replay_answers_the_same_and_grants_nothing_new,
    a_replay_may_spell_amounts_as_numbers,
    a_replay_answers_alike_from_memory_and_from_the_ledger,
    the_same_out_trade_no_with_another_body_is_a_conflict,
    thirty_two_concurrent_copies_grant_exactly_once,
    different_trades_of_one_member_in_parallel_all_land,
    a_burn_takes_the_soonest_to_expire_first_in_the_same_transaction,
    a_burn_above_the_balance_writes_nothing,
    expired_points_cannot_be_burned,
    other_currencies_are_converted_and_unknown_ones_rejected,
    quarter_ends_follow_the_program_time_zone_at_the_edges,
    an_acknowledged_trade_survives_kill_9,
);

/// Two grants each within the limits cannot take a member past the most a balance can show:
/// the second trade is refused with a clear error and writes nothing, and the balance answers.
fn no_member_holds_more_points_than_a_balance_can_show() {
    let rules = jackpot_rules();
    let app = spawn_app_with_rules(rules.path());
    let jackpot = |no: &str| {
        let mut body = trade(no, "M-RICH", &hours_ago(1));
        body["store_code"] = serde_json::json!("J001");
        body
    };
    let (status, body) = app.post_trade(&jackpot("J1"));
    assert_eq!(status, 200, "{body}");
    let held = body["data"]["total_point"].as_i64().unwrap();
    assert_eq!(held, 600_000_000_100);
    assert_eq!(
        app.post_trade(&jackpot("J2")),
        (
            422,
            error_body(
                42202,
                &format!(
                    "the member holds {held} points: the {held} this trade earns would take them \
                     past 1000000000000, the most one member may hold"
                )
            )
        )
    );
    let (status, balance) = app.balance("M-RICH", None);
    assert_eq!(
        (status, balance["data"]["available_point"].as_i64()),
        (200, Some(held))
    );
    assert_eq!(app.counts().0, 1);
    app.assert_ledger_consistent();
}
