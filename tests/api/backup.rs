use crate::helpers::*;
use serde_json::{json, Value};

fn backup_command(database: &str, to: &std::path::Path) -> (bool, String, String) {
    let to = to.display().to_string();
    point_engine_cli(&["backup", "--database", database, "--to", &to])
}

/// A backup taken while tills write is a consistent ledger: a server started on it answers the
/// balances the ledger had, and its audit is clean.
fn a_backup_taken_under_writes_restores_to_a_consistent_ledger() {
    let app = std::sync::Arc::new(spawn_app());
    assert_eq!(app.post_trade(&trade("B1", "M-KEPT", &hours_ago(3))).0, 200);
    let mut burn = trade("B2", "M-KEPT", &hours_ago(2));
    burn["burn_point"] = json!(40);
    assert_eq!(app.post_trade(&burn).0, 200);
    assert_eq!(app.post_refund(&refund("BR1", "B1", "500")).0, 200);
    let (_, kept) = app.balance("M-KEPT", None);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("backup.db");
    if backend() == Backend::Postgres {
        let (ok, _, stderr) = backup_command(&app.database, &copy);
        assert!(!ok);
        assert!(
            stderr.contains("back up PostgreSQL with pg_dump"),
            "{stderr}"
        );
        return;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, stop) = (app.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = trade(&format!("W-{i}"), &format!("M-{}", i % 5), &hours_ago(1));
                assert_eq!(app.post_trade(&body).0, 200);
                i += 1;
            }
            i
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (ok, stdout, stderr) = backup_command(&app.database, &copy);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with(&format!("backup written to {}: ", copy.display()))
            && stdout.ends_with("entries, audit consistent\n"),
        "{stdout}"
    );
    assert!(written > 0);
    // Restore: a server on the copy.
    let rules = shipped_rules();
    let db = TestDb::sqlite_file(&copy);
    let restored = spawn_app_with_settings(test_settings(&rules, &db));
    assert_eq!(restored.balance("M-KEPT", None).1, kept);
    restored.assert_ledger_consistent();
    // Some of the writes landed before the snapshot, some after; never half of one.
    let (trades, _, _, _) = restored.counts();
    assert!(trades >= 2 && trades <= 2 + written as i64, "{trades}");
    // A backup never overwrites.
    let (ok, _, stderr) = backup_command(&app.database, &copy);
    assert!(!ok);
    assert!(stderr.contains("exists already"), "{stderr}");
}

on_both_backends!(a_backup_taken_under_writes_restores_to_a_consistent_ledger,);

fn migrate_to_command(database: &str, target: &str) -> (bool, String, String) {
    point_engine_cli(&["migrate-to", target, "--database", database])
}

/// What a client sees of a member: balance, identities' balance and entries.
fn member_view(app: &TestApp, members: &[&str]) -> Vec<Value> {
    members
        .iter()
        .flat_map(|m| {
            [
                app.balance(m, None).1,
                app.get(&format!(
                    "/v1/point-engine/members/{m}/entries?page_size=100"
                ))
                .1,
            ]
        })
        .collect()
}

/// `migrate-to` moves a SQLite ledger to PostgreSQL: every row copied, both audited; a server
/// on PostgreSQL then answers what the SQLite one answered, and new writes continue the ids.
fn a_sqlite_ledger_migrates_to_postgres_and_serves_the_same() {
    // The source is SQLite whatever the backend; the target, a fresh PostgreSQL schema.
    let dir = tempfile::tempdir().unwrap();
    let rules = shipped_rules();
    let source_file = dir.path().join("ledger.db");
    let source = spawn_app_with_settings(test_settings(&rules, &TestDb::sqlite_file(&source_file)));
    for (i, member) in ["M-1", "M-2", "M-3"].iter().enumerate() {
        for j in 0..3 {
            let body = trade(&format!("T-{i}-{j}"), member, &hours_ago(10 - j));
            assert_eq!(source.post_trade(&body).0, 200);
        }
    }
    let mut burn = trade("T-BURN", "M-1", &hours_ago(2));
    burn["burn_point"] = json!(25);
    assert_eq!(source.post_trade(&burn).0, 200);
    assert_eq!(source.post_refund(&refund("R-1", "T-0-0", "500")).0, 200);
    assert_eq!(source.post_refund(&refund("R-2", "T-BURN", "200")).0, 200);
    let phone = "/v1/point-engine/members/M-2/identities";
    assert_eq!(
        source
            .post_to_path(
                phone,
                &json!({"kind": "mobile_phone", "value": "13800000002"})
            )
            .0,
        200
    );
    let pos = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/requests/transaction-sync.json"
    ))
    .unwrap();
    assert_eq!(
        crate::transaction_sync::sync(&source, Some("pos-token"), &pos).0,
        200
    );
    let members = ["M-1", "M-2", "M-3", "TEL:13800000002", "TEL:13592619028"];
    let before = member_view(&source, &members);
    let counts = source.counts();
    source.assert_ledger_consistent();
    drop(source);

    let database = source_file.display().to_string();
    let target = TestDb::new();
    let url = match &target.url {
        point_engine::ledger::DatabaseUrl::Postgres(url) => url.clone(),
        other => unreachable!("{other}"),
    };
    let (ok, stdout, stderr) = migrate_to_command(&database, &url);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("members: 4 rows\n"), "{stdout}");
    assert!(stdout.contains("refunds: 2 rows\n"), "{stdout}");
    assert!(
        stdout.ends_with("every table has the source's rows, both audits consistent\n"),
        "{stdout}"
    );
    // Once only: the target is not empty any more.
    let (ok, _, stderr) = migrate_to_command(&database, &url);
    assert!(!ok);
    assert!(
        stderr.contains("nothing was copied: the target is not empty: its table members has rows"),
        "{stderr}"
    );
    // Not from PostgreSQL, not to SQLite.
    let (ok, _, stderr) = migrate_to_command(&url, &url);
    assert!(
        !ok && stderr.contains("this one is PostgreSQL already"),
        "{stderr}"
    );
    let (ok, _, stderr) = migrate_to_command(&database, "other.db");
    assert!(
        !ok && stderr.contains("the target must be a postgres:// URL"),
        "{stderr}"
    );

    let migrated = spawn_app_with_settings(test_settings(&rules, &target));
    assert_eq!(migrated.counts(), counts);
    assert_eq!(member_view(&migrated, &members), before);
    migrated.assert_ledger_consistent();
    // New writes get new ids: the sequences continue after the copied rows.
    assert_eq!(
        migrated.post_trade(&trade("T-NEW", "M-4", &hours_ago(1))).0,
        200
    );
    assert_eq!(migrated.post_refund(&refund("R-3", "T-1-1", "500")).0, 200);
    let (status, body) = migrated.post_to_path(
        "/v1/point-engine/members/M-3/identities",
        &json!({"kind": "mobile_phone", "value": "13800000003"}),
    );
    assert_eq!(status, 200, "{body}");
    migrated.assert_ledger_consistent();
}

#[test]
fn a_sqlite_ledger_migrates_to_postgres() {
    run_on(
        Backend::Postgres,
        a_sqlite_ledger_migrates_to_postgres_and_serves_the_same,
    );
}
