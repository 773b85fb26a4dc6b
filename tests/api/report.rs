use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What the test itself knows the ledger must hold, from the answers it was given.
#[derive(Default, Debug)]
struct Model {
    earned: i64,
    burned: i64,
    expired: i64,
    reversed: i64,
    returned: i64,
    /// store → (earned, burned, expired, reversed, returned)
    by_store: BTreeMap<String, [i64; 5]>,
    /// campaign → (earned, expired, reversed)
    by_campaign: BTreeMap<String, [i64; 3]>,
}

impl Model {
    fn outstanding(&self) -> i64 {
        self.earned - self.burned - self.expired - self.reversed + self.returned
    }
}

const STORES: [&str; 4] = ["D001", "D002", "Q001", "X001"];

/// 48 trades over 5 members and 4 stores, a quarter of them recorded late (sales in 2025, so
/// their QTR points have expired), burns of half a member's points, and refunds of a third of
/// the recent trades, half or whole.
fn generated_ledger(app: &TestApp) -> Model {
    let mut rng = Lcg(7);
    let mut model = Model::default();
    let mut recent = Vec::new();
    for i in 0..48 {
        let vip = format!("M{}", rng.below(5));
        let store = STORES[rng.below(4) as usize];
        let amount = 50 + 10 * rng.below(196);
        let late = rng.below(4) == 0;
        let sales_time = if late {
            format!("2025-{:02}-15T10:00:00+08:00", 1 + rng.below(9))
        } else {
            hours_ago(1 + rng.below(48) as i64)
        };
        let mut body = trade(&format!("T{i}"), &vip, &sales_time);
        body["store_code"] = json!(store);
        body["total_amount"] = json!(amount.to_string());
        body["payment_amount"] = json!(amount.to_string());
        let mut burn = 0;
        if !late && rng.below(3) == 0 {
            let (_, balance) = app.balance(&vip, None);
            burn = balance["data"]["available_point"].as_i64().unwrap_or(0) / 2;
            body["burn_point"] = json!(burn);
        }
        let (status, answer) = app.post_trade(&body);
        assert_eq!(status, 200, "{answer}");
        // Whether each new lot has expired by now: its last day is before today in the
        // program's zone (+08:00), whatever day the test runs.
        let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
        let lots = app.lots();
        let grants = answer["data"]["detail"].as_array().unwrap();
        let expired_lots: Vec<bool> = lots[lots.len() - grants.len()..]
            .iter()
            .map(|(_, _, _, expire_date)| {
                expire_date
                    .as_deref()
                    .is_some_and(|d| d.parse::<chrono::NaiveDate>().unwrap() < today)
            })
            .collect();
        let stats = model.by_store.entry(store.to_string()).or_default();
        let earned = answer["data"]["total_point"].as_i64().unwrap();
        stats[0] += earned;
        stats[1] += burn;
        model.earned += earned;
        model.burned += burn;
        for (grant, expired) in grants.iter().zip(expired_lots) {
            let code = grant["campaign_code"].as_str().unwrap().to_string();
            let points = grant["point"].as_i64().unwrap();
            model.by_campaign.entry(code.clone()).or_default()[0] += points;
            // QTR points of a receipt from 2025 expired at the end of its quarter (and so do
            // the newer ones, or KDP points, when the test runs near a quarter or year's end).
            if expired {
                model.expired += points;
                model.by_store.get_mut(store).unwrap()[2] += points;
                model.by_campaign.get_mut(&code).unwrap()[1] += points;
            }
        }
        if !late {
            recent.push((format!("T{i}"), store, amount));
        }
    }
    for (n, (out_trade_no, store, amount)) in recent.iter().enumerate() {
        if n % 3 != 0 {
            continue;
        }
        let part = if n % 2 == 0 { *amount } else { amount / 2 };
        let (status, answer) =
            app.post_refund(&refund(&format!("R{n}"), out_trade_no, &part.to_string()));
        assert_eq!(status, 200, "{answer}");
        let data = &answer["data"];
        // Points that had expired before the refund count once, as expired.
        let taken = data["reversed_point"].as_i64().unwrap()
            - data["expired_point"].as_i64().unwrap()
            - data["shortfall_point"].as_i64().unwrap();
        let returned = data["returned_burn_point"].as_i64().unwrap();
        model.reversed += taken;
        model.returned += returned;
        let stats = model.by_store.get_mut(*store).unwrap();
        stats[3] += taken;
        stats[4] += returned;
        for line in data["detail"].as_array().unwrap() {
            let code = line["campaign_code"].as_str().unwrap().to_string();
            model.by_campaign.get_mut(&code).unwrap()[2] += line["point"].as_i64().unwrap()
                - line["expired"].as_i64().unwrap()
                - line["shortfall"].as_i64().unwrap();
        }
        // Returned points that settled an earlier refund: that refund takes them now, from its
        // own trade's grant.
        for settled in data["settled"].as_array().unwrap() {
            let points = settled["point"].as_i64().unwrap();
            let (_, store, _) = recent
                .iter()
                .find(|(no, _, _)| no == settled["out_trade_no"].as_str().unwrap())
                .expect("a refunded trade");
            model.reversed += points;
            model.by_store.get_mut(*store).unwrap()[3] += points;
            let code = settled["campaign_code"].as_str().unwrap().to_string();
            model.by_campaign.get_mut(&code).unwrap()[2] += points;
        }
    }
    model
}

fn report(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.get(path);
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    // The fields the reports write never hold quotes; a quoted comma is kept whole.
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut fields = Vec::new();
            let mut field = String::new();
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(std::mem::take(&mut field)),
                    c => field.push(c),
                }
            }
            fields.push(field);
            fields
        })
        .collect()
}

fn get_csv(app: &TestApp, path: &str) -> String {
    let response = admin_agent()
        .get(&format!("{}{path}", app.address))
        .set("Accept", "text/csv")
        .call()
        .unwrap();
    assert_eq!(response.content_type(), "text/csv");
    response.into_string().unwrap()
}

fn reports_on_a_generated_ledger_tie_out_with_the_tests_own_totals() {
    let rules = refund_rules("2");
    let app = spawn_app_with_rules(rules.path());
    let model = generated_ledger(&app);
    app.assert_ledger_consistent();
    assert!(model.expired > 0 && model.burned > 0 && model.reversed > 0 && model.returned > 0);

    // Liability now: what the model says is outstanding, and what the members' balances add to.
    let liability = report(&app, "/v1/point-engine/reports/liability");
    let outstanding = model.outstanding();
    let balances: i64 = (0..5)
        .map(|m| {
            let (_, b) = app.balance(&format!("M{m}"), None);
            b["data"]["available_point"].as_i64().unwrap_or(0)
                + b["data"]["pending_point"].as_i64().unwrap_or(0)
        })
        .sum();
    assert_eq!(balances, outstanding);
    assert_eq!(liability["total"]["points"], json!(outstanding));
    assert_eq!(liability["currency"], json!("HKD"));
    let cost = rust_decimal::Decimal::new(5, 3) * rust_decimal::Decimal::from(outstanding);
    assert_eq!(
        liability["total"]["amount"],
        json!(cost.normalize().to_string())
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
        assert_eq!(sum, outstanding, "{grouping}");
    }
    // No expired QTR quarter is still owed.
    let quarters: Vec<&str> = liability["by_expiry_quarter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert!(quarters.iter().all(|q| *q > "2025-Q4"), "{quarters:?}");

    // Movements since before the first entry: opening 0, the model's totals, closing = liability.
    let from = "2020-01-01T00:00:00Z";
    let by_store = report(
        &app,
        &format!("/v1/point-engine/reports/movements?from={from}&by=store"),
    );
    assert_eq!(
        (
            &by_store["opening"],
            &by_store["closing"],
            &by_store["ties_out"]
        ),
        (&json!(0), &json!(outstanding), &json!(true))
    );
    let totals = &by_store["totals"];
    assert_eq!(
        ["earned", "burned", "expired", "reversed", "returned", "net"]
            .map(|k| totals[k].as_i64().unwrap()),
        [
            model.earned,
            model.burned,
            model.expired,
            model.reversed,
            model.returned,
            outstanding
        ]
    );
    let stores: BTreeMap<String, [i64; 5]> = by_store["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                ["earned", "burned", "expired", "reversed", "returned"]
                    .map(|k| r[k].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(stores, model.by_store);

    let by_campaign = report(
        &app,
        &format!("/v1/point-engine/reports/movements?from={from}&by=campaign"),
    );
    let campaigns: BTreeMap<String, [i64; 3]> = by_campaign["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_string(),
                ["earned", "expired", "reversed"].map(|k| r[k].as_i64().unwrap()),
            )
        })
        .collect();
    assert_eq!(campaigns, model.by_campaign);

    // By day: every row adds up to the totals.
    let by_day = report(
        &app,
        &format!("/v1/point-engine/reports/movements?from={from}&by=day"),
    );
    let net: i64 = by_day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["net"].as_i64().unwrap())
        .sum();
    assert_eq!(net, outstanding);

    // Writing the expiries the task would write changes no report. (A refund of an expired
    // grant books its expiry itself.)
    let booked: i64 = app
        .entries()
        .iter()
        .filter(|(kind, _)| kind == "expire")
        .map(|(_, points)| -points)
        .sum();
    let expired = point_engine::service::expire_due(&app.store(), chrono::Utc::now()).unwrap();
    assert_eq!(booked + expired.points, model.expired);
    let after = report(
        &app,
        &format!("/v1/point-engine/reports/movements?from={from}&by=store"),
    );
    assert_eq!(after["rows"], by_store["rows"]);
    let liability_after = report(&app, "/v1/point-engine/reports/liability");
    assert_eq!(liability_after["total"], liability["total"]);
    assert_eq!(liability_after["by_campaign"], liability["by_campaign"]);

    // Before anything was recorded, nothing was owed.
    let before = report(
        &app,
        "/v1/point-engine/reports/liability?as_of=2020-01-01T00:00:00Z",
    );
    assert_eq!(before["total"]["points"], json!(0));

    // CSV, parsed back, says the same as JSON.
    let rows = csv_rows(&get_csv(&app, "/v1/point-engine/reports/liability"));
    assert_eq!(
        rows[0],
        ["dimension", "key", "points", "pending", "owed", "amount"]
    );
    assert_eq!(
        rows[1],
        [
            "total".to_string(),
            "total".to_string(),
            outstanding.to_string(),
            "0".to_string(),
            "0".to_string(),
            cost.normalize().to_string()
        ]
    );
    let campaign_rows: Vec<(String, i64)> = rows
        .iter()
        .filter(|r| r[0] == "campaign")
        .map(|r| (r[1].clone(), r[2].parse().unwrap()))
        .collect();
    let json_campaigns: Vec<(String, i64)> = liability_after["by_campaign"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["points"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(campaign_rows, json_campaigns);

    let rows = csv_rows(&get_csv(
        &app,
        &format!("/v1/point-engine/reports/movements?from={from}&by=store&format=csv"),
    ));
    assert_eq!(
        rows[0][..13],
        [
            "key",
            "opening",
            "earned",
            "burned",
            "expired",
            "reversed",
            "returned",
            "owed",
            "debt_paid",
            "net",
            "closing",
            "written_off",
            "recovered"
        ]
    );
    let total = rows.last().unwrap();
    assert_eq!(total[0], "total");
    assert_eq!(total[1], "0");
    assert_eq!(total[10], outstanding.to_string());
    // Then each figure in money at the point cost: the closing is the liability's amount.
    assert_eq!(rows[0][13..15], ["opening_amount", "earned_amount"]);
    assert_eq!(total[22], cost.normalize().to_string());
    let csv_stores: BTreeMap<String, [i64; 5]> = rows[1..rows.len() - 1]
        .iter()
        .map(|r| {
            (
                r[0].clone(),
                [2, 3, 4, 5, 6].map(|i| r[i].parse::<i64>().unwrap()),
            )
        })
        .collect();
    assert_eq!(csv_stores, model.by_store);
    app.assert_ledger_consistent();
}

fn the_cli_prints_the_same_reports() {
    let rules = refund_rules("2");
    let app = spawn_app_with_rules(rules.path());
    assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(2))).0, 200);
    assert_eq!(app.post_refund(&refund("R1", "T1", "300")).0, 200);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
            .args(args)
            .arg("--database")
            .arg(&app.database)
            .arg("--rules")
            .arg(rules.path())
            .env("RUST_LOG", "warn")
            .env("POINT_ENGINE_POINT_COST", "0.005")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // A whole second after the last write, so that the second-precise time covers it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let as_of = hours_ago(0);
    let printed: Value =
        serde_json::from_str(&cli(&["report", "liability", "--as-of", &as_of])).unwrap();
    let served = report(
        &app,
        &format!(
            "/v1/point-engine/reports/liability?as_of={}",
            as_of.replace('+', "%2B")
        ),
    );
    assert_eq!(printed, served);
    assert_eq!(printed["total"]["points"], json!(350 - 140));
    let csv = cli(&[
        "report",
        "movements",
        "--from",
        "2020-01-01T00:00:00Z",
        "--to",
        &as_of,
        "--by",
        "campaign",
        "--format",
        "csv",
    ]);
    assert_eq!(
        csv_rows(&csv),
        [
            [
                "key",
                "opening",
                "earned",
                "burned",
                "expired",
                "reversed",
                "returned",
                "owed",
                "debt_paid",
                "net",
                "closing",
                "written_off",
                "recovered",
                "opening_amount",
                "earned_amount",
                "burned_amount",
                "expired_amount",
                "reversed_amount",
                "returned_amount",
                "owed_amount",
                "debt_paid_amount",
                "net_amount",
                "closing_amount",
                "written_off_amount",
                "recovered_amount",
            ]
            .to_vec(),
            [
                "", "", "100", "0", "0", "30", "0", "0", "0", "70", "", "0", "0", "", "0.5", "0",
                "0", "0.15", "0", "0", "0", "0.35", "", "0", "0",
            ]
            .to_vec(),
            [
                "BIG", "", "50", "0", "0", "50", "0", "0", "0", "0", "", "0", "0", "", "0.25", "0",
                "0", "0.25", "0", "0", "0", "0", "", "0", "0",
            ]
            .to_vec(),
            [
                "DOUBLE", "", "200", "0", "0", "60", "0", "0", "0", "140", "", "0", "0", "", "1",
                "0", "0", "0.3", "0", "0", "0", "0.7", "", "0", "0",
            ]
            .to_vec(),
            [
                "total", "0", "350", "0", "0", "140", "0", "0", "0", "210", "210", "0", "0", "0",
                "1.75", "0", "0", "0.7", "0", "0", "0", "1.05", "1.05", "0", "0",
            ]
            .to_vec(),
        ]
    );
    let detail: Value = serde_json::from_str(&cli(&["report", "trade", "T1"])).unwrap();
    assert_eq!(detail, report(&app, "/v1/point-engine/trades/T1"));
    assert_eq!(detail["refunds"][0]["out_refund_no"], json!("R1"));
    let entries: Value = serde_json::from_str(&cli(&["report", "entries", "M1"])).unwrap();
    assert_eq!(entries, report(&app, "/v1/point-engine/members/M1/entries"));
}

fn report_parameters_are_checked() {
    let app = spawn_app();
    for (path, msg) in [
        ("/v1/point-engine/reports/movements", "from is required"),
        (
            "/v1/point-engine/reports/movements?from=yesterday",
            "from must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got \"yesterday\"",
        ),
        (
            "/v1/point-engine/reports/movements?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "from 2026-01-02T00:00:00.000Z is after to 2026-01-01T00:00:00.000Z",
        ),
        (
            "/v1/point-engine/reports/movements?from=2026-01-01T00:00:00Z&by=week",
            "by must be day, store or campaign, got \"week\"",
        ),
        (
            "/v1/point-engine/reports/liability?as_of=2999-01-01T00:00:00Z",
            "as_of 2999-01-01T00:00:00.000Z is in the future",
        ),
        (
            "/v1/point-engine/reports/liability?format=xml",
            "format must be json or csv, got \"xml\"",
        ),
    ] {
        assert_eq!(app.get(path), (400, error_body(40001, msg)), "{path}");
    }
    // The year to date: a period that reaches past now runs up to now.
    let (status, body) = app.get(
        "/v1/point-engine/reports/movements?from=2026-01-01T00:00:00Z&to=2999-01-01T00:00:00Z",
    );
    assert_eq!(status, 200, "{body}");
    let to = chrono::DateTime::parse_from_rfc3339(body["data"]["to"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - to.to_utc()).num_seconds().abs() < 60,
        "{body}"
    );
}

on_both_backends!(
    reports_on_a_generated_ledger_tie_out_with_the_tests_own_totals,
    the_cli_prints_the_same_reports,
    report_parameters_are_checked,
);
