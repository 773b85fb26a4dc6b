use crate::helpers::*;
use serde_json::json;

fn backup_command(database: &str, to: &std::path::Path) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args(["backup", "--database", database, "--to"])
        .arg(to)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
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
