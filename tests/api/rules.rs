use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn program() -> String {
    std::fs::read_to_string(shipped_rules().join("program.toml")).unwrap()
}

/// Campaigns that ask about the member's history and a budget, each at its own stores.
const MEMBER_CAMPAIGNS: &str = r#"
[[campaign]]
code = "WELCOME"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["W*"]
first_trade = true
expiry = "KDP"
award = { fixed = 100 }

[[campaign]]
code = "THIRD"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["N*"]
nth_trade = 3
expiry = "KDP"
award = { fixed = 50 }

[[campaign]]
code = "DAILY"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["L*"]
member_limit = { per_day = 150 }
expiry = "KDP"
award = { fixed = 100 }

[[campaign]]
code = "BUDGET"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["B*"]
budget = 1000
expiry = "KDP"
award = { fixed = 100 }
"#;

fn double(factor: &str) -> String {
    format!(
        r#"
[[campaign]]
code = "DOUBLE"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["D*"]
expiry = "KDP"
award = {{ multiplier_of_e = "{factor}" }}
"#
    )
}

fn at_store(no: &str, vip: &str, store: &str) -> Value {
    let mut body = trade(no, vip, &hours_ago(1));
    body["store_code"] = json!(store);
    body
}

/// The points of each grant campaign in an answer, e.g. [("", 100), ("WELCOME", 100)].
fn grants(answer: &Value) -> Vec<(String, i64)> {
    answer["data"]["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["campaign_code"].as_str().unwrap().to_string(),
                g["point"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn e_and(code: &str, points: i64) -> Vec<(String, i64)> {
    vec![("".to_string(), 100), (code.to_string(), points)]
}

fn member_conditions_read_the_members_real_history() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", MEMBER_CAMPAIGNS)]);
    let app = spawn_app_with_rules(rules.path());
    // First trade: WELCOME; the second is not the first.
    let (_, first) = app.post_trade(&at_store("W1", "M1", "W01"));
    assert_eq!(grants(&first), e_and("WELCOME", 100));
    let (_, second) = app.post_trade(&at_store("W2", "M1", "W01"));
    assert_eq!(grants(&second), e_and("", 0)[..1].to_vec());
    // M1's third trade in THIRD's window (any store counts).
    let (_, third) = app.post_trade(&at_store("N3", "M1", "N01"));
    assert_eq!(grants(&third), e_and("THIRD", 50));
    let (_, fourth) = app.post_trade(&at_store("N4", "M1", "N01"));
    assert_eq!(grants(&fourth).len(), 1);
    // DAILY gives 100, then the 50 left of today's 150, then nothing.
    let mut daily = Vec::new();
    for i in 0..3 {
        let (_, answer) = app.post_trade(&at_store(&format!("L{i}"), "M2", "L01"));
        daily.push(grants(&answer));
    }
    assert_eq!(
        daily,
        vec![
            e_and("DAILY", 100),
            e_and("DAILY", 50),
            vec![("".to_string(), 100)]
        ]
    );
    app.assert_ledger_consistent();
}

fn a_budget_is_never_overspent_under_concurrent_trades() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", MEMBER_CAMPAIGNS)]);
    let app = std::sync::Arc::new(spawn_app_with_rules(rules.path()));
    // 64 trades at once, two by each of 32 new members (their first trades: each member is
    // created once, and on PostgreSQL the member's row and the budget are locked in one order,
    // so no deadlock), 100 points each from a budget of 1,000: exactly 10 get them.
    let answers: Vec<(u16, Value)> = (0..64)
        .map(|i| {
            let app = app.clone();
            std::thread::spawn(move || {
                app.post_trade(&at_store(&format!("B{i}"), &format!("MB{}", i / 2), "B01"))
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let budget_points: i64 = answers
        .iter()
        .flat_map(|a| grants(&a.1))
        .filter(|(code, _)| code == "BUDGET")
        .map(|(_, p)| p)
        .sum();
    assert_eq!(budget_points, 1000);
    let used: i64 = {
        use diesel::prelude::*;
        use point_engine::ledger::schema::campaign_budgets;
        campaign_budgets::table
            .select(campaign_budgets::used)
            .first(&mut app.conn())
            .unwrap()
    };
    assert_eq!(used, 1000);
    assert_eq!(app.counts(), (64, 64 + 10, 64 + 10, 32));
    app.assert_ledger_consistent();
    // The audit ties every budget to the points its campaign granted.
    use diesel::connection::SimpleConnection;
    app.conn()
        .batch_execute("UPDATE campaign_budgets SET used = 900")
        .unwrap();
    assert_eq!(
        point_engine::ledger::audit::check_all(&mut app.conn()).unwrap(),
        vec!["budget of campaign BUDGET: 900 used, its lots hold 1000 granted points"]
    );
}

fn simulate_explains_and_writes_nothing() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", MEMBER_CAMPAIGNS)]);
    let app = spawn_app_with_rules(rules.path());
    let body = at_store("S1", "M1", "W01");
    let (status, answer) = app.post_to_path("/v1/point-engine/trade-simulate", &body);
    assert_eq!(status, 200, "{answer}");
    let data = &answer["data"];
    assert_eq!(data["total_point"], json!(200));
    assert_eq!(data["e_point"], json!(100));
    assert_eq!(data["spend_base"], json!("1000"));
    let outcome = |code: &str| {
        data["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["campaign_code"] == code)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        outcome("WELCOME"),
        json!({"campaign_code": "WELCOME", "outcome": "granted", "points": 100, "reason": "every condition holds"})
    );
    assert_eq!(
        outcome("BUDGET"),
        json!({"campaign_code": "BUDGET", "outcome": "not_matched", "points": 0,
               "reason": "store W01 matches none of [\"B*\"]"})
    );
    assert_eq!(app.counts(), (0, 0, 0, 0));
    // After a real trade, the member's history changes the simulation.
    assert_eq!(app.post_trade(&at_store("T1", "M1", "W01")).0, 200);
    let (_, again) = app.post_to_path("/v1/point-engine/trade-simulate", &body);
    assert_eq!(again["data"]["total_point"], json!(100));
    let welcome = again["data"]["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign_code"] == "WELCOME")
        .cloned()
        .unwrap();
    assert_eq!(
        welcome["reason"],
        json!("not the member's first trade (1 before)")
    );
}

/// Replaces a rule file whole, as a deploy does (write aside, then rename).
fn replace_file(path: &std::path::Path, text: impl AsRef<[u8]>) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reloading_app(rules: &TempDir) -> (TestApp, TestDb) {
    let db = TestDb::new();
    let mut settings = test_settings(rules.path(), &db);
    settings.rules_reload_interval_ms = 20;
    (spawn_app_with_settings(settings), db)
}

fn the_server_reloads_changed_rules_and_keeps_serving_through_broken_ones() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", &double("2"))]);
    let (app, _db) = reloading_app(&rules);
    let version = |app: &TestApp| app.get("/v1/point-engine/rules").1["data"]["version"].clone();
    let v1 = version(&app);
    let (_, before) = app.post_trade(&at_store("R1", "M1", "D01"));
    assert_eq!(before["data"]["total_point"], json!(300));

    // A good change is picked up and shown.
    replace_file(&rules.path().join("c.toml"), double("3"));
    wait_for("the new rules", || version(&app) != v1);
    let (_, rules_now) = app.get("/v1/point-engine/rules");
    assert_eq!(rules_now["data"]["campaigns"][0]["award"], json!("3 x E"));
    assert_eq!(rules_now["data"]["last_reload_error"], Value::Null);
    let (_, after) = app.post_trade(&at_store("R2", "M1", "D01"));
    assert_eq!(after["data"]["total_point"], json!(400));
    let v2 = version(&app);

    // A broken change is logged and shown; the running set keeps serving.
    replace_file(&rules.path().join("c.toml"), "[[campaign]]\ncode = 5\n");
    wait_for("the reload error", || {
        !app.get("/v1/point-engine/rules").1["data"]["last_reload_error"].is_null()
    });
    let (_, broken) = app.get("/v1/point-engine/rules");
    assert_eq!(broken["data"]["version"], v2);
    assert!(
        broken["data"]["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("c.toml:2:8: invalid type: integer `5`, expected a string"),
        "{broken}"
    );
    let (_, still) = app.post_trade(&at_store("R3", "M1", "D01"));
    assert_eq!(still["data"]["total_point"], json!(400));
    assert_eq!(broken["data"]["warnings"], json!([]));

    // An emptied campaigns file is a valid ruleset, and it says so loudly.
    replace_file(&rules.path().join("c.toml"), "");
    wait_for("the emptied rules", || {
        app.get("/v1/point-engine/rules").1["data"]["campaigns"] == json!([])
    });
    assert_eq!(
        app.get("/v1/point-engine/rules").1["data"]["warnings"],
        json!([
            "no campaigns: every trade earns its E points only (was a campaigns file emptied?)"
        ])
    );
    replace_file(&rules.path().join("c.toml"), double("3"));
    wait_for("the campaigns back", || version(&app) == v2);
    // Every version the server ran is kept (the emptied one too), for refunds and the audit.
    assert_eq!(
        {
            use diesel::prelude::*;
            use point_engine::ledger::schema::rulesets;
            rulesets::table
                .count()
                .get_result::<i64>(&mut app.conn())
                .unwrap()
        },
        3
    );
}

fn sighup_reloads_the_rules() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", &double("2"))]);
    let db = TestDb::new();
    // No polling: only the signal reloads.
    let mut server = crate::instances::Instance::spawn_with(
        &db,
        rules.path(),
        &[
            "--rules-reload-interval-ms",
            "0",
            "--expire-interval-s",
            "0",
        ],
    );
    server.wait_ready();
    let version = || {
        let body: Value = admin_agent()
            .get(&format!("{}/v1/point-engine/rules", server.address))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        body["data"]["version"].clone()
    };
    let v1 = version();
    replace_file(&rules.path().join("c.toml"), double("3"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(version(), v1, "no reload without the signal");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for("the reload on SIGHUP", || version() != v1);
}

fn trades_during_reloads_are_priced_whole_by_one_version() {
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", &double("2"))]);
    let (app, _db) = reloading_app(&rules);
    let app = std::sync::Arc::new(app);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (app, stop) = (app.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (status, answer) =
                        app.post_trade(&at_store(&format!("L{w}-{i}"), &format!("M{w}"), "D01"));
                    answers.push((status, answer["data"]["total_point"].as_i64()));
                    i += 1;
                }
                answers
            })
        })
        .collect();
    for factor in ["3", "2", "3", "2"] {
        std::thread::sleep(Duration::from_millis(150));
        replace_file(&rules.path().join("c.toml"), double(factor));
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<(u16, Option<i64>)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(answers.len() > 8, "{answers:?}");
    // Each trade is priced by one version: x2 (300) or x3 (400), never a mix.
    assert!(
        answers
            .iter()
            .all(|a| a.0 == 200 && matches!(a.1, Some(300) | Some(400))),
        "{answers:?}"
    );
    assert!(answers.iter().any(|a| a.1 == Some(400)));
    app.assert_ledger_consistent();
}

/// Trades at D, N and X stores with amounts the test knows; live rules DOUBLE x2.
fn backtest_history(app: &TestApp) -> Vec<(String, i64)> {
    let mut sent = Vec::new();
    for i in 0..40i64 {
        let store = ["D01", "D02", "X01"][(i % 3) as usize];
        let amount = 100 + 37 * i;
        let mut body = at_store(&format!("H{i}"), &format!("M{}", i % 7), store);
        body["total_amount"] = json!(amount.to_string());
        body["payment_amount"] = json!(amount.to_string());
        assert_eq!(app.post_trade(&body).0, 200);
        sent.push((store.to_string(), amount));
    }
    sent
}

/// The backtest report of the app's whole ledger under the rules in `folder`.
fn backtest_report(app: &TestApp, folder: &std::path::Path) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args([
            "rules",
            "backtest",
            "--from",
            "2000-01-01T00:00:00Z",
            "--rules",
        ])
        .arg(folder)
        .arg("--database")
        .arg(&app.database)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Progress is drawn on a terminal only: a script reads the report alone.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("backtest ["));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Replayed under the rules that priced it, the ledger earns the same, campaign by campaign.
fn assert_backtest_agrees(app: &TestApp, folder: &std::path::Path) {
    let report = backtest_report(app, folder);
    let campaigns = report["campaigns"].as_array().unwrap();
    assert!(campaigns.len() > 1, "{report}");
    for campaign in campaigns {
        assert_eq!(campaign["difference"], json!(0), "{report}");
    }
}

fn a_backtest_replays_history_under_a_draft_and_writes_nothing() {
    let live = rules_dir(&[("program.toml", &program()), ("c.toml", &double("2"))]);
    let app = spawn_app_with_rules(live.path());
    let sent = backtest_history(&app);
    let counts = app.counts();
    // The draft triples DOUBLE and adds a budget of 500 at D stores, 40 points a trade.
    let draft_campaigns = format!(
        "{}\n[[campaign]]\ncode = \"CAPPED\"\nstarts_at = \"2020-01-01T00:00:00+08:00\"\n\
         ends_at = \"2100-01-01T00:00:00+08:00\"\nstores = [\"D*\"]\nbudget = 500\n\
         expiry = \"KDP\"\naward = {{ fixed = 40 }}\n",
        double("3")
    );
    let draft = rules_dir(&[("program.toml", &program()), ("c.toml", &draft_campaigns)]);
    let report = backtest_report(&app, draft.path());

    // The right answer, from the amounts alone.
    let e = |amount: i64| amount / 10;
    let e_total: i64 = sent.iter().map(|(_, a)| e(*a)).sum();
    let d: Vec<i64> = sent
        .iter()
        .filter(|(s, _)| s.starts_with('D'))
        .map(|(_, a)| e(*a))
        .collect();
    let d_e: i64 = d.iter().sum();
    assert_eq!(report["trades"], json!(40));
    assert_eq!(
        report["campaigns"],
        json!([
            {"campaign_code": "", "trades_matched": 40, "points": e_total, "budget_used": 0,
             "live_points": e_total, "difference": 0},
            {"campaign_code": "CAPPED", "trades_matched": 13, "points": 500, "budget_used": 500,
             "live_points": 0, "difference": 500},
            {"campaign_code": "DOUBLE", "trades_matched": d.len(), "points": 3 * d_e, "budget_used": 0,
             "live_points": 2 * d_e, "difference": d_e},
        ])
    );
    assert_eq!(app.counts(), counts, "a backtest writes nothing");
}

fn rules_check_and_explain_from_the_command_line() {
    let run = |args: &[&std::ffi::OsStr]| point_engine_cli(args);
    let test = "\n[[test]]\nname = \"D earns double\"\ntrade = { store_code = \"D01\", payment_amount = \"1000\", sales_time = \"2026-11-24T12:00:00+08:00\" }\ntotal = 300\n";
    let good = rules_dir(&[
        ("program.toml", &program()),
        ("c.toml", &format!("{}{test}", double("2"))),
    ]);
    let (ok, stdout, _) = run(&["rules".as_ref(), "check".as_ref(), good.path().as_os_str()]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains(": 1 campaigns, 0 objectives, 1 tests passed"),
        "{stdout}"
    );

    let failing = rules_dir(&[
        ("program.toml", &program()),
        ("c.toml", &format!("{}{test}", double("3"))),
    ]);
    let (ok, stdout, _) = run(&[
        "rules".as_ref(),
        "check".as_ref(),
        failing.path().as_os_str(),
    ]);
    assert!(!ok);
    assert!(
        stdout.contains("c.toml:10: test \"D earns double\": earns 400 points, expected 300"),
        "{stdout}"
    );

    let broken = rules_dir(&[
        ("program.toml", &program()),
        ("c.toml", "[[campaign]]\ncode = \"X\"\n"),
    ]);
    let (ok, _, stderr) = run(&[
        "rules".as_ref(),
        "check".as_ref(),
        broken.path().as_os_str(),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("c.toml:1:1: missing field `starts_at`"),
        "{stderr}"
    );

    let trade_file = good.path().join("trade.json");
    std::fs::write(&trade_file, at_store("E1", "M1", "D01").to_string()).unwrap();
    let (ok, stdout, stderr) = run(&[
        "rules".as_ref(),
        "explain".as_ref(),
        trade_file.as_os_str(),
        "--rules".as_ref(),
        good.path().as_os_str(),
    ]);
    assert!(ok, "{stderr}");
    let explained: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(explained["total_point"], json!(300));
    assert_eq!(
        explained["campaigns"],
        json!([{"campaign_code": "DOUBLE", "outcome": "granted", "points": 200, "reason": "every condition holds"}])
    );
}

/// Through the endpoint: a receipt of last Saturday 01:30 (program zone) is Friday night; one
/// on a blacked-out date earns nothing from that campaign.
fn overnight_windows_and_blackout_dates_price_through_trade_create() {
    use chrono::{Datelike, Duration};
    let today = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .date_naive();
    // A Saturday at least a day back, so 01:30 that night is in the past.
    let saturday = (2..9)
        .map(|back| today - Duration::days(back))
        .find(|d| d.weekday() == chrono::Weekday::Sat)
        .unwrap();
    let campaigns = format!(
        r#"
[[campaign]]
code = "FRI-NIGHT"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["N*"]
days_of_week = ["fri"]
hours = ["22:00-02:00"]
blackout_dates = ["{}"]
expiry = "KDP"
award = {{ fixed = 50 }}
"#,
        saturday - Duration::days(8)
    );
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", &campaigns)]);
    let app = spawn_app_with_rules(rules.path());
    let night = |no: &str, day: chrono::NaiveDate, time: &str| {
        let mut body = trade(no, "M-NIGHT", &format!("{day}T{time}+08:00"));
        body["store_code"] = json!("N01");
        app.post_trade(&body)
    };
    let (status, answer) = night("N1", saturday, "01:30:00");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        grants(&answer),
        [("".to_string(), 100), ("FRI-NIGHT".to_string(), 50)]
    );
    let (_, answer) = night("N2", saturday, "02:00:00");
    assert_eq!(grants(&answer), [("".to_string(), 100)]);
    // The Friday eight days before is blacked out: its night earns nothing from the campaign.
    let (_, answer) = night("N3", saturday - Duration::days(8), "23:00:00");
    assert_eq!(grants(&answer), [("".to_string(), 100)]);
    app.assert_ledger_consistent();
}

/// Campaigns that pick their stores, channels, members, lines and trades (each at its own
/// stores, the POS ones at the POS clients' stores).
const SELECTION_CAMPAIGNS: &str = r#"
[[campaign]]
code = "NOT-AIRPORT"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["HK-*"]
excluded_stores = ["HK-AIR*"]
expiry = "KDP"
award = { fixed = 10 }

[[campaign]]
code = "APP-ONLY"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["CH-*"]
channels = ["app"]
expiry = "KDP"
award = { fixed = 5 }

[[campaign]]
code = "LADIES"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["POS-001", "GD-*"]
genders = ["female"]
expiry = "KDP"
award = { fixed = 7 }

[[campaign]]
code = "EVERY-2ND"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["EV-*"]
every_nth_trade = 2
expiry = "KDP"
award = { fixed = 20 }

[[campaign]]
code = "FROM-3RD"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["FR-*"]
from_nth_trade = 3
expiry = "KDP"
award = { fixed = 30 }

[[campaign]]
code = "WEEKLY"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["WK-*"]
member_limit = { per_week = 150 }
expiry = "KDP"
award = { fixed = 100 }

[[campaign]]
code = "DISH-2"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["POS-002"]
skus = ["2"]
spend_base = "matching_lines"
expiry = "KDP"
award = { points = 1, per_amount = "2" }

[[campaign]]
code = "PER-DISH"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["POS-002"]
skus = ["*"]
excluded_skus = ["1"]
expiry = "KDP"
award = { points_per_line = 5 }

[[campaign]]
code = "SET-MEAL"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["POS-002"]
basket = ["1", "2"]
expiry = "KDP"
award = { fixed = 3 }
"#;

/// Store exclusions, channels, the member's stored gender, every nth and from the nth trade,
/// a weekly limit, spend on matching lines and a basket, through trade-create and the POS.
fn selection_conditions_price_through_the_endpoints() {
    use crate::transaction_sync::{seed, sync};
    let rules = rules_dir(&[
        ("program.toml", &program()),
        ("c.toml", SELECTION_CAMPAIGNS),
    ]);
    let app = spawn_app_with_rules(rules.path());
    let e = || vec![("".to_string(), 100)];
    let post = |body: &Value| {
        let (status, answer) = app.post_trade(body);
        assert_eq!(status, 200, "{answer}");
        grants(&answer)
    };
    assert_eq!(
        post(&at_store("HK1", "M-HK", "HK-01")),
        e_and("NOT-AIRPORT", 10)
    );
    assert_eq!(post(&at_store("HK2", "M-HK", "HK-AIR-2")), e());
    let mut app_trade = at_store("CH1", "M-CH", "CH-1");
    app_trade["resource"] = json!("APP");
    assert_eq!(post(&app_trade), e_and("APP-ONLY", 5));
    assert_eq!(post(&at_store("CH2", "M-CH", "CH-1")), e());
    let every: Vec<_> = (1..=4)
        .map(|i| post(&at_store(&format!("EV{i}"), "M-EV", "EV-1")))
        .collect();
    assert_eq!(
        every,
        [e(), e_and("EVERY-2ND", 20), e(), e_and("EVERY-2ND", 20)]
    );
    let from: Vec<_> = (1..=4)
        .map(|i| post(&at_store(&format!("FR{i}"), "M-FR", "FR-1")))
        .collect();
    assert_eq!(
        from,
        [e(), e(), e_and("FROM-3RD", 30), e_and("FROM-3RD", 30)]
    );
    // One sales time for all three, so they fall in one week whenever the test runs.
    let sold_at = hours_ago(1);
    let weekly: Vec<_> = (1..=3)
        .map(|i| {
            let mut body = trade(&format!("WK{i}"), "M-WK", &sold_at);
            body["store_code"] = json!("WK-1");
            post(&body)
        })
        .collect();
    assert_eq!(weekly, [e_and("WEEKLY", 100), e_and("WEEKLY", 50), e()]);

    // The POS delivers the customer's gender; their profile keeps it for later trades.
    let purchase_time = (chrono::Utc::now() - chrono::Duration::hours(1))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let pos_grants = |token: &str, id: &str, phone: &str, gender: i64, goods: Option<Value>| {
        let mut body = seed();
        body["transaction_id"] = json!(id);
        body["customer_identifier"] = json!(phone);
        body["gender"] = json!(gender);
        body["purchase_time"] = json!(purchase_time);
        if let Some(goods) = goods {
            body["goods_list"] = goods;
        }
        let (status, answer) = sync(&app, Some(token), &body.to_string());
        assert_eq!(status, 200, "{answer}");
        let client = if token == "pos-token" {
            "test_POS"
        } else {
            "other_POS"
        };
        let (_, view) = app.get(&format!("/v1/point-engine/trades/TS-{client}-{id}"));
        view["data"]["grants"]
            .as_array()
            .unwrap_or_else(|| panic!("{view}"))
            .iter()
            .map(|g| {
                (
                    g["campaign_code"].as_str().unwrap().to_string(),
                    g["point"].as_i64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let grant = |code: &str, points: i64| (code.to_string(), points);
    assert_eq!(
        pos_grants("pos-token", "L1", "13500000001", 2, None),
        [grant("", 1), grant("LADIES", 7)]
    );
    assert_eq!(
        pos_grants("pos-token", "L2", "13500000002", 1, None),
        [grant("", 1)]
    );
    assert_eq!(
        post(&at_store("GD1", "TEL:13500000001", "GD-1")),
        e_and("LADIES", 7)
    );
    assert_eq!(post(&at_store("GD2", "TEL:13500000002", "GD-1")), e());
    // Line "2" is 2 × 12.00: 12 points on its 24.00; lines "1" and "2" make the set meal;
    // PER-DISH leaves line "1" out.
    assert_eq!(
        pos_grants("other-pos-token", "S1", "13500000003", 0, None),
        [
            grant("", 1),
            grant("DISH-2", 12),
            grant("PER-DISH", 5),
            grant("SET-MEAL", 3)
        ]
    );
    let dish_2_only =
        json!([{"goods_id": 2, "goods_name": "豆腐", "quantity": 1, "unit_price": 14.1}]);
    assert_eq!(
        pos_grants("other-pos-token", "S2", "13500000003", 0, Some(dish_2_only)),
        [grant("", 1), grant("DISH-2", 7), grant("PER-DISH", 5)]
    );
    app.assert_ledger_consistent();
    // The backtest knows every condition: the live rules replayed grant what they granted.
    assert_backtest_agrees(&app, rules.path());
}

/// Budgets per day and per month of sale: concurrent trades never overspend the day's, the
/// month's stops the days after it is spent, and the audit ties each period to its grants.
fn budgets_per_day_and_month_hold_under_concurrent_trades() {
    let campaigns = r#"
[[campaign]]
code = "FLASH"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["Q*"]
budget_per_day = 300
budget_per_month = 1000
expiry = "KDP"
award = { fixed = 100 }
"#;
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", campaigns)]);
    let app = std::sync::Arc::new(spawn_app_with_rules(rules.path()));
    let sold = |no: String, vip: String, day: u32| {
        let mut body = trade(&no, &vip, &format!("2026-11-{day:02}T12:00:00+08:00"));
        body["store_code"] = json!("Q01");
        body
    };
    // 20 trades at once on 2 November, by 10 members: 3 get their 100 from the day's 300.
    let answers: Vec<(u16, Value)> = (0..20)
        .map(|i| {
            let (app, body) = (
                app.clone(),
                sold(format!("Q{i}"), format!("MQ{}", i / 2), 2),
            );
            std::thread::spawn(move || app.post_trade(&body))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    let flash = |answers: &[(u16, Value)]| -> Vec<i64> {
        answers
            .iter()
            .flat_map(|a| grants(&a.1))
            .filter(|(code, _)| code == "FLASH")
            .map(|(_, p)| p)
            .collect()
    };
    assert_eq!(flash(&answers), [100, 100, 100]);
    // One a day from the 3rd: 7 more days of 100 fill the month's 1,000; then nothing.
    let later: Vec<(u16, Value)> = (3..=12)
        .map(|day| app.post_trade(&sold(format!("QD{day}"), "MQ-LATE".into(), day)))
        .collect();
    assert_eq!(flash(&later), [100; 7]);
    assert_backtest_agrees(&app, rules.path());
    let periods: Vec<(String, i64)> = {
        use diesel::prelude::*;
        use point_engine::ledger::schema::campaign_budget_periods as p;
        p::table
            .filter(p::period.eq_any(["2026-11", "2026-11-02", "2026-11-09", "2026-11-10"]))
            .order(p::period.asc())
            .select((p::period, p::used))
            .load(&mut app.conn())
            .unwrap()
    };
    assert_eq!(
        periods,
        [
            ("2026-11".to_string(), 1000),
            ("2026-11-02".to_string(), 300),
            ("2026-11-09".to_string(), 100)
        ]
    );
    app.assert_ledger_consistent();
    use diesel::connection::SimpleConnection;
    app.conn()
        .batch_execute("UPDATE campaign_budget_periods SET used = 200 WHERE period = '2026-11-02'")
        .unwrap();
    assert_eq!(
        point_engine::service::audit(&app.store()).unwrap().violations,
        vec!["budget of campaign FLASH for 2026-11-02: 200 used, its lots of sales then hold 300 granted points"]
    );
}

/// Tiers on points earned in the calendar year, and the campaigns that ask about them.
const TIERS: &str = r#"
[program.tiers]
qualify_on = "points"
period = "calendar_year"
levels = [
  { name = "Silver", from = 0 },
  { name = "Gold", from = 300 },
  { name = "Platinum", from = 1000 },
]
"#;

const TIER_CAMPAIGNS: &str = r#"
[[campaign]]
code = "TIER-X"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["T*"]
expiry = "KDP"
award = { multiplier_of_e_by_tier = { Gold = "1", Platinum = "2" } }

[[campaign]]
code = "GOLD-ONLY"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["T*"]
tiers = ["Gold"]
expiry = "KDP"
award = { fixed = 7 }
"#;

/// A member's tier comes from the points their trades earned, less refunds: a trade that
/// crosses a threshold earns at the tier before it, the next at the new one; a refund prices
/// the trade again at the tier it was priced at, and one that takes the member back below a
/// threshold takes the tier back too. The balance shows the tier, the trade the tier it was
/// priced at.
fn tiers_come_from_the_ledger_and_move_with_trades_and_refunds() {
    let program = format!("{}{TIERS}", program());
    let rules = rules_dir(&[("program.toml", &program), ("c.toml", TIER_CAMPAIGNS)]);
    let app = spawn_app_with_rules(rules.path());
    let sold = |no: &str, day: u32| {
        let mut body = trade(no, "M-TIER", &format!("2026-11-{day:02}T12:00:00+08:00"));
        body["store_code"] = json!("T01");
        let (status, answer) = app.post_trade(&body);
        assert_eq!(status, 200, "{answer}");
        grants(&answer)
    };
    let e = || vec![("".to_string(), 100)];
    // 100 E points a trade: Silver until 300 have been earned.
    assert_eq!(
        [sold("T1", 2), sold("T2", 3), sold("T3", 4)],
        [e(), e(), e()]
    );
    let gold = vec![
        ("".to_string(), 100),
        ("GOLD-ONLY".to_string(), 7),
        ("TIER-X".to_string(), 100),
    ];
    assert_eq!(sold("T4", 5), gold);
    let tier = |as_of: &str| {
        let (status, balance) = app.balance("M-TIER", Some(as_of));
        assert_eq!(status, 200, "{balance}");
        balance["data"]["tier"].clone()
    };
    assert_eq!(
        tier("2026-11-30T12:00:00+08:00"),
        json!({"name": "Gold", "qualifying": "507", "next_tier": "Platinum", "to_next_tier": "493"})
    );
    // The member's history shows the tier now (the sales were in November 2026: Gold through
    // 2027).
    let (_, history) = app.get("/v1/point-engine/members/M-TIER/entries");
    let now_gold = chrono::Utc::now()
        < "2028-01-01T00:00:00+08:00"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
    assert_eq!(
        history["data"]["tier"]["name"],
        json!(if now_gold { "Gold" } else { "Silver" }),
        "{history}"
    );
    // Kept through the next year; gone the year after.
    assert_eq!(tier("2027-06-30T12:00:00+08:00")["name"], json!("Gold"));
    assert_eq!(tier("2028-01-01T12:00:00+08:00")["name"], json!("Silver"));
    let (_, view) = app.get("/v1/point-engine/trades/T4");
    assert_eq!(view["data"]["tier"], json!("Gold"), "{view}");
    let (_, view) = app.get("/v1/point-engine/trades/T1");
    assert_eq!(view["data"]["tier"], json!("Silver"), "{view}");
    // A backtest (which replays trades, not refunds) works the tiers out the same.
    assert_backtest_agrees(&app, rules.path());

    // Half of T4 refunded: priced again at Gold, it gives back E 50, TIER-X 50 (unpriced at
    // Gold, all 100) and 4 of GOLD-ONLY's 7 (a fixed award goes back in proportion).
    let (status, answer) = app.post_refund(&refund("TR4", "T4", "500.00"));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["data"]["reversed_point"], json!(104), "{answer}");
    // 403 earned; refunding T2 and T3 takes it to 203: Silver again, and T5 earns E alone.
    for (no, of) in [("TR2", "T2"), ("TR3", "T3")] {
        assert_eq!(app.post_refund(&refund(no, of, "1000.00")).0, 200);
    }
    assert_eq!(
        tier("2026-11-30T12:00:00+08:00")["qualifying"],
        json!("203")
    );
    assert_eq!(sold("T5", 6), e());
    app.assert_ledger_consistent();
}

/// A chain across zones: a London store's evening and quarter end are London's.
fn a_store_groups_time_zone_prices_through_trade_create() {
    let program = program().replace(
        "[program.store_groups]\n",
        "[program.store_groups]\nlondon = [\"UK-*\"]\n",
    ) + "\n[program.store_time_zones]\nlondon = \"Europe/London\"\n";
    let campaigns = r#"
[[campaign]]
code = "EVENING"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
hours = ["18:00-20:00"]
expiry = "QUARTER"
award = { fixed = 10 }
"#;
    let rules = rules_dir(&[("program.toml", &program), ("c.toml", campaigns)]);
    let app = spawn_app_with_rules(rules.path());
    let sold = |no: &str, store: &str, at: &str| {
        let mut body = trade(no, "M-ZONE", at);
        body["store_code"] = json!(store);
        let (status, answer) = app.post_trade(&body);
        assert_eq!(status, 200, "{answer}");
        answer["data"]["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["campaign_code"].as_str().unwrap().to_string(),
                    g["expire_time"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let e = || ("".to_string(), "".to_string());
    let evening = |date: &str| ("EVENING".to_string(), date.to_string());
    // 02:30 on 1 January in Hong Kong is 18:30 on 31 December in London: the London store's
    // evening, in London's last quarter of 2025; Hong Kong's store is asleep.
    assert_eq!(
        sold("Z1", "UK-01", "2026-01-01T02:30:00+08:00"),
        [e(), evening("2025-12-31")]
    );
    assert_eq!(sold("Z2", "DP01", "2026-01-01T02:30:00+08:00"), [e()]);
    assert_eq!(
        sold("Z3", "DP01", "2026-01-01T18:30:00+08:00"),
        [e(), evening("2026-03-31")]
    );
    app.assert_ledger_consistent();
}

/// A member app sets a member's birthday; birthday campaigns then ask the ledger for it.
fn a_members_profile_sets_the_birthday_campaigns_ask_about() {
    let campaigns = r#"
[[campaign]]
code = "BIRTHDAY"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["BD*"]
birthday_month = true
expiry = "KDP"
award = { fixed = 88 }
"#;
    let rules = rules_dir(&[("program.toml", &program()), ("c.toml", campaigns)]);
    let app = spawn_app_with_rules(rules.path());
    let sold_at = hours_ago(1);
    let sale = |no: &str| {
        let mut body = trade(no, "M-BD", &sold_at);
        body["store_code"] = json!("BD01");
        let (status, answer) = app.post_trade(&body);
        assert_eq!(status, 200, "{answer}");
        grants(&answer)
    };
    assert_eq!(sale("BD1"), [("".to_string(), 100)]);
    let month = &sold_at[5..7];
    let profile = |vip: &str, body: Value| {
        let path = format!("/v1/point-engine/members/{vip}/profile");
        app.call_as(&bearer(STORE_KEY), "PUT", &path, Some(&body))
    };
    let birthday = format!("{month}-15");
    assert_eq!(
        profile("M-BD", json!({"birthday": birthday, "gender": 2})),
        (
            200,
            json!({"code": 0, "msg": "success", "data":
                {"vip_accountno": "M-BD", "birthday": birthday, "gender": "female"}})
        )
    );
    assert_eq!(
        sale("BD2"),
        [("".to_string(), 100), ("BIRTHDAY".to_string(), 88)]
    );
    // A gender alone leaves the birthday as it was; bad bodies and unknown members write nothing.
    assert_eq!(
        profile("M-BD", json!({"gender": "male"})).1["data"],
        json!({"vip_accountno": "M-BD", "birthday": birthday, "gender": "male"})
    );
    for (body, msg) in [
        (json!({}), "birthday or gender is required"),
        (
            json!({"birthday": "1990-02-30"}),
            "birthday must be a date such as \"1990-12-05\" or \"12-05\", got \"1990-02-30\"",
        ),
        (
            json!({"birthday": 19901205}),
            "birthday must be a date such as \"1990-12-05\" or \"12-05\", got \"19901205\"",
        ),
        (
            json!({"gender": "robot"}),
            "gender must be \"male\", \"female\", 1 or 2, got \"robot\"",
        ),
        (
            json!({"birthday": ["12-05"]}),
            "birthday must be a string, got an array",
        ),
    ] {
        assert_eq!(profile("M-BD", body), (400, error_body(40001, msg)));
    }
    assert_eq!(
        profile("M-NOBODY", json!({"birthday": "12-05"})),
        (404, error_body(40400, "member M-NOBODY not found"))
    );
    assert_eq!(
        profile("M-BD", json!({"gender": "male"})).1["data"]["birthday"],
        json!(birthday)
    );
    app.assert_ledger_consistent();
    // A backtest reads members' profiles as they are now: the birthday counts for BD1 too.
    let report = backtest_report(&app, rules.path());
    assert_eq!(
        report["campaigns"][1],
        json!({"campaign_code": "BIRTHDAY", "trades_matched": 2, "points": 176,
               "budget_used": 0, "live_points": 88, "difference": 88})
    );
}

on_both_backends!(
    overnight_windows_and_blackout_dates_price_through_trade_create,
    a_members_profile_sets_the_birthday_campaigns_ask_about,
    a_store_groups_time_zone_prices_through_trade_create,
    tiers_come_from_the_ledger_and_move_with_trades_and_refunds,
    budgets_per_day_and_month_hold_under_concurrent_trades,
    selection_conditions_price_through_the_endpoints,
    member_conditions_read_the_members_real_history,
    a_budget_is_never_overspent_under_concurrent_trades,
    simulate_explains_and_writes_nothing,
    the_server_reloads_changed_rules_and_keeps_serving_through_broken_ones,
    sighup_reloads_the_rules,
    trades_during_reloads_are_priced_whole_by_one_version,
    a_backtest_replays_history_under_a_draft_and_writes_nothing,
    rules_check_and_explain_from_the_command_line,
);
