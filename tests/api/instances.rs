//! Several server processes on one database, as behind a load balancer.

use crate::helpers::*;
use point_engine::ledger::{self, audit};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `point-engine serve` process of its own.
pub struct Instance {
    pub child: Child,
    pub address: String,
    /// The clients file with the test keys.
    _clients: tempfile::TempDir,
}

impl Instance {
    /// Starts the process on the shipped rules, running the expiry task often; `wait_ready`
    /// waits until it answers.
    pub fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, &shipped_rules(), &["--expire-interval-s", "1"])
    }

    /// Starts the process on a rules folder, with more flags.
    pub fn spawn_with(db: &TestDb, rules: &std::path::Path, flags: &[&str]) -> Self {
        Self::spawn_logging(db, rules, flags, "warn", Stdio::inherit())
    }

    /// Starts the process with its log (`RUST_LOG=filter`) on `log`.
    pub fn spawn_logging(
        db: &TestDb,
        rules: &std::path::Path,
        flags: &[&str],
        filter: &str,
        log: Stdio,
    ) -> Self {
        let port = process_port();
        let database = match &db.url {
            ledger::DatabaseUrl::Sqlite(path) => path.display().to_string(),
            ledger::DatabaseUrl::Postgres(url) => url.clone(),
        };
        let clients = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_point-engine"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{port}"),
                "--database",
            ])
            .arg(&database)
            .arg("--rules")
            .arg(rules)
            .arg("--clients")
            .arg(test_clients_file(clients.path()))
            .args(flags)
            .args(["--pool-size", "4", "--workers", "2"])
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            _clients: clients,
        }
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/health", self.address))
            .call()
            .is_err()
        {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "{} exited at start",
                self.address
            );
            assert!(Instant::now() < deadline, "{} did not start", self.address);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn post(&self, body: &Value) -> (u16, Value) {
        let result = admin_agent()
            .post(&format!("{}/v1/point-engine/trade-create", self.address))
            .send_json(body.clone());
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("request failed: {e}"),
        };
        (response.status(), response.into_json().unwrap())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `bodies[i]` to instance `i % 2`, all at once; the answers in order.
fn spread(instances: &Arc<[Instance; 2]>, bodies: Vec<Value>) -> Vec<(u16, Value)> {
    let handles: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let instances = instances.clone();
            std::thread::spawn(move || instances[i % 2].post(&body))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn two_instances_on_one_database_grant_once_and_never_overdraw() {
    let db = TestDb::new();
    // Both start at once on an empty database: one migrates it, the other waits its turn.
    // The first writes each new receipt in its own transaction, the second (the default) through
    // two grouped lanes on PostgreSQL.
    let pooled = ["--expire-interval-s", "1", "--write-lanes", "0"];
    let mut both = [
        Instance::spawn_with(&db, &shipped_rules(), &pooled),
        Instance::spawn(&db),
    ];
    both.iter_mut().for_each(Instance::wait_ready);
    let instances = Arc::new(both);

    // 64 copies of one request over both: one grant, the same answer everywhere.
    let copy = trade("ONCE", "M-1", &hours_ago(1));
    let answers = spread(&instances, vec![copy; 64]);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0].1["data"]["total_point"], json!(100));

    // Two more trades: 300 points. Then 24 burns of 50 over both instances, each on a
    // receipt too small to earn: exactly 6 can be paid, and the balance ends at 0.
    for no in ["EARN-2", "EARN-3"] {
        assert_eq!(instances[0].post(&trade(no, "M-1", &hours_ago(1))).0, 200);
    }
    let burns: Vec<Value> = (0..24)
        .map(|i| {
            let mut body = trade(&format!("BURN-{i}"), "M-1", &hours_ago(0));
            body["store_code"] = json!("X001");
            body["total_amount"] = json!("5");
            body["payment_amount"] = json!("5");
            body["burn_point"] = json!(50);
            body
        })
        .collect();
    let statuses: Vec<u16> = spread(&instances, burns).iter().map(|a| a.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        18,
        "{statuses:?}"
    );

    let pool = ledger::connect(&db.url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    let vip = point_engine::domain::VipAccountNo::parse("M-1").unwrap();
    let balance = ledger::balance(
        &mut conn,
        &vip,
        chrono::Utc::now(),
        &ledger::balances::KnownBalances::new(0),
    )
    .unwrap()
    .unwrap();
    assert_eq!(balance.spendable(), 0);
    let report = audit::audit(&mut conn).unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!((report.trades, report.lots), (3 + 6, 3));
}

/// PostgreSQL: instances migrate a ledger under an advisory lock of its schema, so a ledger in
/// another schema of the same database (another tenant, another test) starts while one is
/// migrating, and the ledger of the held schema waits for it. SQLite migrates under its file's
/// own write lock.
fn ledgers_in_other_schemas_migrate_while_one_holds_its_lock() {
    if backend() == Backend::Sqlite {
        return;
    }
    let held = TestDb::new();
    let ledger::DatabaseUrl::Postgres(url) = &held.url else {
        unreachable!("a PostgreSQL test database")
    };
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let mut holder = diesel::PgConnection::establish(url).unwrap();
    holder
        .batch_execute(
            "SELECT pg_advisory_lock(hashtextextended(coalesce(current_schema(), ''), 0) \
             # 123580929632114)",
        )
        .unwrap();
    let other = TestDb::new();
    let started = Instant::now();
    ledger::connection::connect(&other.url, 1).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The held schema's ledger waits for the lock: migrated once it is let go.
    let waiting = {
        let url = held.url.clone();
        std::thread::spawn(move || ledger::connection::connect(&url, 1).map(|_| ()))
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "migrated while the lock was held");
    holder
        .batch_execute(
            "SELECT pg_advisory_unlock(hashtextextended(coalesce(current_schema(), ''), 0) \
             # 123580929632114)",
        )
        .unwrap();
    waiting.join().unwrap().unwrap();
}

on_both_backends!(
    two_instances_on_one_database_grant_once_and_never_overdraw,
    ledgers_in_other_schemas_migrate_while_one_holds_its_lock,
);
