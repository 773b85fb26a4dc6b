use crate::helpers::*;
use diesel::prelude::*;
use point_engine::ledger::Expired;

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// One expiry run on a ledger opened of its own, as another process (the CLI) opens it.
fn expire(app: &TestApp, as_of: &str) -> Expired {
    point_engine::service::expire_due(&app.store(), at(as_of)).unwrap()
}

/// (kind, points, effective_at_ms) of the expire entries.
fn expire_entries(app: &TestApp) -> Vec<(String, i64, i64)> {
    use point_engine::ledger::schema::entries;
    entries::table
        .filter(entries::kind.eq("expire"))
        .order(entries::id)
        .select((entries::kind, entries::points, entries::effective_at_ms))
        .load(&mut app.conn())
        .unwrap()
}

fn lots_expire_at_the_end_of_their_date_in_the_program_zone_once() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    // The last second of 31 March 2023 in +08:00: nothing is due yet.
    assert_eq!(
        expire(&app, "2023-03-31T23:59:59+08:00"),
        Expired::default()
    );
    // The next second, the QUARTER lot is.
    assert_eq!(
        expire(&app, "2023-03-31T16:00:00Z"),
        Expired {
            lots: 1,
            points: 200
        }
    );
    assert_eq!(
        expire(&app, "2023-03-31T16:00:00Z"),
        Expired::default(),
        "twice expires nothing twice"
    );
    // The KDP lot lasts to the end of 31 January 2025.
    assert_eq!(
        expire(&app, "2025-01-31T23:59:59+08:00"),
        Expired::default()
    );
    assert_eq!(
        expire(&app, "2025-02-01T00:00:00+08:00"),
        Expired {
            lots: 1,
            points: 100
        }
    );
    // The receipt was recorded in 2026, after both expiries: each expiry counts from the
    // moment the points were recorded, never before they existed.
    let recorded_at_ms: i64 = {
        use point_engine::ledger::schema::lots;
        lots::table
            .select(lots::created_at_ms)
            .first(&mut app.conn())
            .unwrap()
    };
    assert!(recorded_at_ms > at("2025-02-01T00:00:00+08:00").timestamp_millis());
    assert_eq!(
        expire_entries(&app),
        vec![
            ("expire".into(), -200, recorded_at_ms),
            ("expire".into(), -100, recorded_at_ms),
        ]
    );
    let remaining: Vec<i64> = app.lots().into_iter().map(|l| l.2).collect();
    assert_eq!(remaining, vec![0, 0]);
    let (_, balance) = app.balance("040xxxx", Some("2023-02-01T00:00:00+08:00"));
    assert_eq!(
        balance["data"]["available_point"], 0,
        "expired points are gone from every view"
    );
    app.assert_ledger_consistent();
}

/// A receipt recorded on time, whose QUARTER points expire at the end of its quarter: the expiry
/// is booked on the quarter's last day (the end of it, program zone), whenever the task runs,
/// so the quarter's movements show it and the next quarter's opening no longer holds it.
fn an_expiry_is_booked_at_the_end_of_the_last_usable_day() {
    let rules = refund_rules("2");
    let app = spawn_app_with_rules(rules.path());
    let sale = hours_ago(100 * 24);
    let mut old = trade("TQ", "M1", &sale);
    old["store_code"] = serde_json::json!("Q001");
    let (status, body) = app.post_trade(&old);
    assert_eq!(status, 200, "{body}");
    let last_day = body["data"]["detail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["campaign_code"] == "QTR")
        .unwrap()["expire_time"]
        .as_str()
        .unwrap()
        .to_string();
    // Recorded when it was sold, as a till online at the time would have.
    let sold_ms = at(&sale).timestamp_millis();
    {
        use point_engine::ledger::schema::{entries, lots, trades};
        let conn = &mut app.conn();
        diesel::update(lots::table)
            .set(lots::created_at_ms.eq(sold_ms))
            .execute(conn)
            .unwrap();
        diesel::update(entries::table)
            .set((
                entries::created_at_ms.eq(sold_ms),
                entries::effective_at_ms.eq(sold_ms),
            ))
            .execute(conn)
            .unwrap();
        diesel::update(trades::table)
            .set(trades::created_at_ms.eq(sold_ms))
            .execute(conn)
            .unwrap();
    }
    // The task runs days after the quarter ended.
    let expired = expire(&app, &hours_ago(1));
    assert_eq!(expired.points, 40);
    let last_moment = at(&format!("{last_day}T23:59:59.999+08:00"));
    assert_eq!(
        expire_entries(&app),
        vec![("expire".into(), -40, last_moment.timestamp_millis())]
    );
    let (_, history) = app.get("/v1/point-engine/members/M1/entries");
    assert_eq!(
        history["data"]["entries"][0]["effective_time"],
        serde_json::json!(last_moment.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    );
    // The last day's movements hold it; the next day's do not.
    let day_start = format!("{last_day}T00:00:00%2B08:00");
    let next_day = (chrono::NaiveDate::parse_from_str(&last_day, "%Y-%m-%d").unwrap()
        + chrono::Days::new(1))
    .to_string();
    let next_start = format!("{next_day}T00:00:00%2B08:00");
    let (_, last) = app.get(&format!(
        "/v1/point-engine/reports/movements?from={day_start}&to={next_start}"
    ));
    assert_eq!(last["data"]["totals"]["expired"], 40, "{last}");
    assert_eq!(last["data"]["ties_out"], true);
    let (_, next) = app.get(&format!(
        "/v1/point-engine/reports/movements?from={next_start}&by=day"
    ));
    assert_eq!(next["data"]["totals"]["expired"], 0, "{next}");
    assert_eq!(next["data"]["opening"], last["data"]["closing"]);
    // The liability at the end of the last day no longer holds the QUARTER points.
    let (_, liability) = app.get(&format!(
        "/v1/point-engine/reports/liability?as_of={next_start}"
    ));
    assert_eq!(
        liability["data"]["total"]["points"],
        140 - 40,
        "{liability}"
    );
    app.assert_ledger_consistent();
}

fn concurrent_expiry_runs_expire_each_lot_once() {
    let app = spawn_app();
    for i in 0..20 {
        let (status, _) = app.post_trade(&trade(
            &format!("OLD-{i}"),
            &format!("M-{}", i % 3),
            "2023-01-20T10:00:00+08:00",
        ));
        assert_eq!(status, 200);
    }
    let runs: Vec<Expired> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| expire(&app, "2026-01-01T00:00:00Z")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let lots: u64 = runs.iter().map(|r| r.lots).sum();
    let points: i64 = runs.iter().map(|r| r.points).sum();
    assert_eq!((lots, points), (40, 20 * 300));
    assert_eq!(expire_entries(&app).len(), 40);
    app.assert_ledger_consistent();
}

fn the_expire_command_expires_and_refuses_a_future_as_of() {
    let app = spawn_app();
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    let run = |as_of: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
            .args(["expire", "--as-of", as_of, "--database"])
            .arg(&app.database)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = run("2023-04-01T00:00:00+08:00");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "expired 200 points in 1 lots as of 2023-03-31T16:00:00+00:00\n"
    );
    let out = run("2100-01-01T00:00:00Z");
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "point-engine: --as-of 2100-01-01T00:00:00Z is in the future\n"
    );
    app.assert_ledger_consistent();
}

fn the_server_runs_the_expiry_task() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.expire_interval_s = 1;
    let app = spawn_app_with_settings(settings);
    app.post_raw("application/json", SEED_WITH_RECEIPT);
    for _ in 0..100 {
        if expire_entries(&app).len() == 2 {
            app.assert_ledger_consistent();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the expiry task did not expire the seed's lots: {:?}",
        expire_entries(&app)
    );
}

on_both_backends!(
    an_expiry_is_booked_at_the_end_of_the_last_usable_day,
    lots_expire_at_the_end_of_their_date_in_the_program_zone_once,
    concurrent_expiry_runs_expire_each_lot_once,
    the_expire_command_expires_and_refuses_a_future_as_of,
    the_server_runs_the_expiry_task,
);
