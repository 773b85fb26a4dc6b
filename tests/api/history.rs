use crate::helpers::*;
use serde_json::{json, Value};

/// The entry fields that do not depend on the clock: (kind, point, type, out_trade_no).
fn movements(app: &TestApp, entries: &Value) -> Vec<(String, i64, String, String)> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(
                e["trade_no"],
                json!(app.trade_no(e["out_trade_no"].as_str().unwrap()))
            );
            (
                e["kind"].as_str().unwrap().to_string(),
                e["point"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_string(),
                e["out_trade_no"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn m(kind: &str, point: i64, out_trade_no: &str) -> (String, i64, String, String) {
    (kind.into(), point, "E".into(), out_trade_no.into())
}

fn a_members_entries_page_newest_first() {
    let app = spawn_app();
    assert_eq!(app.post_trade(&trade("T1", "M-A", &hours_ago(2))).0, 200);
    let mut burn = trade("T2", "M-A", &hours_ago(1));
    burn["payment_amount"] = json!("500.00");
    burn["burn_point"] = json!(30);
    assert_eq!(app.post_trade(&burn).0, 200);

    let (status, first) = app.get("/v1/point-engine/members/M-A/entries?page_size=2");
    assert_eq!(status, 200);
    assert_eq!(
        (
            first["data"]["page"].clone(),
            first["data"]["page_size"].clone(),
            first["data"]["total"].clone()
        ),
        (json!(1), json!(2), json!(3))
    );
    assert_eq!(
        movements(&app, &first["data"]["entries"]),
        vec![m("earn", 50, "T2"), m("burn", -30, "T2")]
    );
    let (_, second) = app.get("/v1/point-engine/members/M-A/entries?page=2&page_size=2");
    assert_eq!(
        movements(&app, &second["data"]["entries"]),
        vec![m("earn", 100, "T1")]
    );
    let (_, beyond) = app.get("/v1/point-engine/members/M-A/entries?page=3&page_size=2");
    assert_eq!(beyond["data"]["entries"], json!([]));
    // A page far into the history (read on a blocking thread, not the worker) answers alike.
    let (status, far) = app.get("/v1/point-engine/members/M-A/entries?page=100&page_size=200");
    assert_eq!(status, 200);
    assert_eq!(
        (far["data"]["page"].clone(), far["data"]["total"].clone()),
        (json!(100), json!(3))
    );
    assert_eq!(far["data"]["entries"], json!([]));
    let entry = &first["data"]["entries"][0];
    assert_eq!(
        entry["effective_time"], entry["created_time"],
        "an earn counts when it is written"
    );

    // The trade that burned: its grant, its burn (taken from T1's lot) and its earn.
    let (status, detail) = app.get("/v1/point-engine/trades/T2");
    assert_eq!(status, 200);
    let data = &detail["data"];
    assert_eq!(data["trade_no"], json!(app.trade_no("T2")));
    assert_eq!(
        (data["burn_point"].clone(), data["total_point"].clone()),
        (json!(30), json!(50))
    );
    assert_eq!(data["grants"][0]["point"], json!(50));
    assert_eq!(data["grants"][0]["remaining"], json!(50));
    assert_eq!(
        movements(&app, &data["entries"]),
        vec![m("burn", -30, "T2"), m("earn", 50, "T2")]
    );
    // T1's grant shows what the burn left of it.
    let (_, t1) = app.get(&format!("/v1/point-engine/trades/{}", app.trade_no("T1")));
    assert_eq!(t1["data"]["grants"][0]["remaining"], json!(70));
}

fn a_trade_in_full_by_either_number() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let (status, by_out) = app.get("/v1/point-engine/trades/XXXX");
    assert_eq!(status, 200);
    let (_, by_ours) = app.get(&format!("/v1/point-engine/trades/{}", app.trade_no("XXXX")));
    assert_eq!(by_out, by_ours);
    let mut data = by_out["data"].clone();
    let version = data
        .as_object_mut()
        .unwrap()
        .remove("ruleset_version")
        .unwrap();
    assert_eq!(version.as_str().unwrap().len(), 32);
    let entries = data.as_object_mut().unwrap().remove("entries").unwrap();
    assert_eq!(
        data,
        json!({
            "trade_no": app.trade_no("XXXX"), "out_trade_no": "XXXX", "vip_accountno": "040xxxx",
            "store_code": "DP01XXXX", "invoice_id": "123456", "currency": "HKD",
            "total_amount": "1000.00", "payment_amount": "1000.00", "payment_method": "Visa",
            "sales_time": "2023-01-20T10:00:00+08:00", "burn_point": 0, "total_point": 300,
            "grants": [
                {"point": 100, "remaining": 100, "type": "E", "expire_type": "KDP", "expire_time": "2025-01-31",
                 "campaign_code": "", "remark": "1 point per HKD 10 spent"},
                {"point": 200, "remaining": 200, "type": "A", "expire_type": "QUARTER", "expire_time": "2023-03-31",
                 "campaign_code": "Q1-2023-VISA-DP01", "remark": "Visa double points, Q1 2023"}
            ],
            "refunds": []
        })
    );
    assert_eq!(entries.as_array().unwrap().len(), 2);

    // After the expiry run, the expiry shows. The receipt was recorded long after 31 March
    // 2023, so the expiry is effective when its points were recorded, never before.
    let as_of = chrono::DateTime::parse_from_rfc3339("2023-04-01T00:00:00+08:00")
        .unwrap()
        .to_utc();
    point_engine::service::expire_due(&app.store(), as_of).unwrap();
    let (_, history) = app.get("/v1/point-engine/members/040xxxx/entries");
    let newest = &history["data"]["entries"][0];
    let earn = &history["data"]["entries"][2];
    assert_eq!(
        (
            newest["kind"].clone(),
            newest["point"].clone(),
            newest["type"].clone(),
            newest["effective_time"].clone()
        ),
        (
            json!("expire"),
            json!(-200),
            json!("A"),
            earn["effective_time"].clone()
        )
    );
    assert_eq!(history["data"]["total"], json!(3));
}

fn unknown_members_and_trades_and_bad_paging_are_named() {
    let app = spawn_app();
    assert_eq!(
        app.get("/v1/point-engine/trades/NOPE"),
        (404, error_body(40400, "trade NOPE not found"))
    );
    assert_eq!(
        app.get("/v1/point-engine/members/NOBODY/entries"),
        (404, error_body(40400, "member NOBODY not found"))
    );
    assert_eq!(
        app.get("/v1/point-engine/members/NOBODY/entries?page_size=0"),
        (
            400,
            error_body(
                40001,
                "page_size must be a whole number from 1 to 200, got \"0\""
            )
        )
    );
    assert_eq!(
        app.get("/v1/point-engine/members/NOBODY/entries?page=x"),
        (
            400,
            error_body(
                40001,
                "page must be a whole number from 1 to 1000000, got \"x\""
            )
        )
    );
}

/// A ledger written before entries carried what a history shows of them (their lot's type and
/// campaign, their trade's numbers) migrates: every kind of entry gets them, the pages and the
/// trade details read as before, and the audit holds.
fn a_ledger_from_before_entries_carried_their_numbers_migrates() {
    let rules = refund_rules("2");
    let db = TestDb::new();
    let settings = test_settings(rules.path(), &db);
    let read = |app: &TestApp| {
        [
            "/v1/point-engine/members/M1/entries?page_size=200",
            "/v1/point-engine/trades/T1",
            "/v1/point-engine/trades/T2",
            "/v1/point-engine/trades/T3",
        ]
        .map(|path| app.get(path))
    };
    let before = {
        let app = spawn_app_with_settings(settings.clone());
        // Earns (E, and DOUBLE's A), a burn, a refund's reversals, a quarter's expiry.
        assert_eq!(app.post_trade(&trade("T1", "M1", &hours_ago(3))).0, 200);
        let mut burn = trade("T2", "M1", &hours_ago(2));
        burn["payment_amount"] = json!("500.00");
        burn["burn_point"] = json!(100);
        assert_eq!(app.post_trade(&burn).0, 200);
        assert_eq!(app.post_refund(&refund("R1", "T2", "250")).0, 200);
        let mut quarter = trade("T3", "M1", "2023-02-01T10:00:00+08:00");
        quarter["store_code"] = json!("Q001");
        assert_eq!(app.post_trade(&quarter).0, 200);
        let as_of = chrono::DateTime::parse_from_rfc3339("2023-04-01T00:00:00+08:00").unwrap();
        point_engine::service::expire_due(&app.store(), as_of.to_utc()).unwrap();
        let kinds: std::collections::BTreeSet<String> =
            app.entries().into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["burn", "earn", "expire", "reverse"]
        );
        let before = read(&app);
        // Back to the schema before, as an older release left it.
        use diesel_migrations::MigrationHarness;
        match &mut *app.conn() {
            point_engine::ledger::Conn::Sqlite(c) => c
                .revert_last_migration(point_engine::ledger::migrations::SQLITE)
                .unwrap(),
            point_engine::ledger::Conn::Postgres(c) => c
                .revert_last_migration(point_engine::ledger::migrations::POSTGRES)
                .unwrap(),
        };
        before
    };
    let app = spawn_app_with_settings(settings);
    assert_eq!(read(&app), before);
    assert!(before.iter().all(|(status, _)| *status == 200));
    app.assert_ledger_consistent();
}

/// A history page asked for again is answered from memory (`--history-movements-max`) while
/// the member has no newer entry, and read again once it has, whichever instance wrote: an
/// instance keeping pages and one reading every page answer alike, byte for byte, after an
/// earn, a burn and a refund written by either, for every page and page size asked.
fn a_history_page_from_memory_is_the_ledgers_after_every_write() {
    let db = TestDb::new();
    let settings = test_settings(&shipped_rules(), &db);
    let keeping = spawn_app_with_settings(settings.clone());
    let reading = spawn_app_with_settings(point_engine::config::Settings {
        history_movements_max: 0,
        ..settings
    });
    let pages = [
        "",
        "?page_size=2",
        "?page=2&page_size=2",
        "?page=3&page_size=2",
    ];
    let alike = |what: &str| {
        for page in pages {
            let path = format!("/v1/point-engine/members/M-PAGE/entries{page}");
            let kept = keeping.get_text(&path);
            assert_eq!(kept.0, 200, "{what} {page}: {kept:?}");
            assert_eq!(kept, reading.get_text(&path), "{what} {page}");
        }
    };
    let total = |app: &TestApp| {
        app.get("/v1/point-engine/members/M-PAGE/entries").1["data"]["total"].clone()
    };
    assert_eq!(
        keeping
            .post_trade(&trade("PAGE-1", "M-PAGE", &hours_ago(3)))
            .0,
        200
    );
    alike("earned");
    alike("asked again");
    assert_eq!(
        reading
            .post_trade(&trade("PAGE-2", "M-PAGE", &hours_ago(2)))
            .0,
        200
    );
    alike("earned elsewhere");
    let mut burn = trade("PAGE-3", "M-PAGE", &hours_ago(1));
    burn["burn_point"] = json!(150);
    let (status, body) = reading.post_trade(&burn);
    assert_eq!(status, 200, "{body}");
    alike("burned elsewhere");
    let (status, body) = reading.post_refund(&refund("PAGE-R1", "PAGE-3", "1000.00"));
    assert_eq!(status, 200, "{body}");
    alike("refunded elsewhere");
    assert_eq!(total(&keeping), total(&reading));
    let answered = |app: &TestApp| {
        app.metric("point_engine_history_pages_answered_total")
            .and_then(|n| n.parse::<u64>().ok())
    };
    // Each page once more than it was read: after the first earn (asked again), and the
    // total's own page after the refund.
    assert_eq!(answered(&keeping), Some(pages.len() as u64 + 1));
    assert_eq!(answered(&reading), Some(0));
    // On PostgreSQL every page asked for the member and its newest entry with the members
    // probe, not on the pool: 5 rounds of the pages, and the total once.
    let probed = keeping.metric("point_engine_members_probe_asks_total");
    let expected = (backend() == Backend::Postgres).then(|| (5 * pages.len() + 1).to_string());
    assert_eq!(probed, expected);
}

on_both_backends!(
    a_history_page_from_memory_is_the_ledgers_after_every_write,
    a_ledger_from_before_entries_carried_their_numbers_migrates,
    a_members_entries_page_newest_first,
    a_trade_in_full_by_either_number,
    unknown_members_and_trades_and_bad_paging_are_named,
);
