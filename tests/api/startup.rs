use crate::helpers::*;
use point_engine::startup::Application;

fn a_broken_rule_file_stops_start_up_with_file_line_and_reason() {
    let broken = r#"[program]
name = "Broken"
time_zone = "+08:00"
base_currency = "HKD"
rounding = "floor"
earn = { base = "payment_amount", points = 1, per_amount = "10" }
kdp = { policy = "never" }
currencies = { HKD = "1" }

[[campaign]]
code = "BACKWARDS"
starts_at = "2023-04-01T00:00:00+08:00"
ends_at = "2023-01-01T00:00:00+08:00"
expiry = "QUARTER"
award = { fixed = 5 }
"#;
    let rules = rules_dir(&[("program.toml", broken)]);
    let db = TestDb::new();
    let settings = test_settings(rules.path(), &db);
    let error = actix_web::rt::System::new()
        .block_on(async { Application::build(&settings).err().expect("start-up fails") })
        .to_string();
    let file = rules.path().join("program.toml").display().to_string();
    assert_eq!(
        error,
        format!(
            "the rules do not load:\n{file}:13:1: campaign \"BACKWARDS\": ends_at 2023-01-01 00:00:00 +08:00 is not after starts_at 2023-04-01 00:00:00 +08:00"
        )
    );
}

on_both_backends!(a_broken_rule_file_stops_start_up_with_file_line_and_reason,);

fn point_engine(args: &[&str]) -> (bool, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_point-engine"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text, started.elapsed())
}

/// Read-only commands refuse a ledger that does not exist (a typo must not print "ledger
/// consistent" over a new empty file), naming the path; they create nothing.
fn read_only_commands_refuse_a_ledger_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("point-engin.db");
    let database = typo.display().to_string();
    for args in [
        vec!["audit", "--database", &database],
        vec!["report", "liability", "--database", &database],
        vec![
            "rules",
            "backtest",
            "--rules",
            "rules/",
            "--database",
            &database,
        ],
    ] {
        let (ok, text, _) = point_engine(&args);
        assert!(!ok, "{args:?}");
        assert!(
            text.contains(&format!("no ledger at {database}: check --database")),
            "{args:?}: {text}"
        );
    }
    assert!(!typo.exists());
}

/// A PostgreSQL database that does not exist fails at once, naming the URL (never its
/// password) and what to do.
fn a_database_that_does_not_exist_fails_at_once_with_what_to_do() {
    let Some(base) = postgres_base_url() else {
        return;
    };
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let url = format!("{prefix}/pe_no_such_database?password=hunter2");
    let (ok, text, took) = point_engine(&["audit", "--database", &url]);
    assert!(!ok);
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert!(text.contains("pe_no_such_database?password=***"), "{text}");
    assert!(text.contains("createdb"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

/// A port already in use is said before any database is created.
fn a_port_in_use_is_said_before_the_database_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    let (ok, text, _) = point_engine(&[
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--database",
        &db.display().to_string(),
    ]);
    assert!(!ok);
    assert!(
        text.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!db.exists());
}

/// `rules check` takes the folder as `--rules` too, like `explain` and `backtest`; `report
/// entries --format csv` says it prints JSON instead of printing JSON anyway.
fn the_cli_is_consistent() {
    let (ok, text, _) = point_engine(&["rules", "check", "--rules", "rules/"]);
    assert!(ok, "{text}");
    assert!(text.contains("ok: rules "), "{text}");
    let (ok, positional, _) = point_engine(&["rules", "check", "rules/"]);
    assert!(ok);
    assert_eq!(positional, text);
    let app = spawn_app();
    assert_eq!(
        app.post_trade(&trade("CLI-1", "M-CLI", &hours_ago(1))).0,
        200
    );
    let (ok, text, _) = point_engine(&[
        "report",
        "entries",
        "M-CLI",
        "--format",
        "csv",
        "--database",
        &app.database,
    ]);
    assert!(!ok);
    assert!(
        text.contains("--format csv is for liability and movements; entries and trade print JSON"),
        "{text}"
    );
}

#[test]
fn the_cli_and_start_up() {
    the_cli_is_consistent();
    read_only_commands_refuse_a_ledger_that_does_not_exist();
    a_database_that_does_not_exist_fails_at_once_with_what_to_do();
    a_port_in_use_is_said_before_the_database_is_created();
}

/// Several processes (here threads) opening a new SQLite ledger at once all open it: switching
/// the new file to WAL while another creates it waits for it instead of failing "locked".
#[test]
fn a_new_sqlite_ledger_opened_by_several_at_once_opens_for_all() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let url = point_engine::ledger::DatabaseUrl::Sqlite(dir.path().join("ledger.db"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let openers: Vec<_> = (0..4)
            .map(|_| {
                let (url, barrier) = (url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    point_engine::ledger::connect(&url, 1).map(|_| ())
                })
            })
            .collect();
        for opener in openers {
            if let Err(e) = opener.join().unwrap() {
                panic!("{e}");
            }
        }
    }
}
