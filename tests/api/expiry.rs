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
    lots_expire_at_the_end_of_their_date_in_the_program_zone_once,
    concurrent_expiry_runs_expire_each_lot_once,
    the_expire_command_expires_and_refuses_a_future_as_of,
    the_server_runs_the_expiry_task,
);
