//! The one write path: grouped commits, a write failing alone in its group, backpressure, and
//! acknowledged writes surviving `kill -9`.

use crate::helpers::*;
use crate::instances::Instance;
use point_engine::domain::{Amount, ShortfallPolicy, Sku, Trade, TradeLine, VipAccountNo};
use point_engine::ledger::probe::Probed;
use point_engine::ledger::writer::{Busy, WriterLimits};
use point_engine::ledger::{self, PostError, Posted, Store};
use point_engine::rules::{self, Ruleset};
use point_engine::service::{self, ServiceError};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn parse_trade(body: &Value) -> Trade {
    let request: point_engine::http::trade_create::TradeCreateRequest =
        serde_json::from_value(body.clone()).unwrap();
    request.into_trade(chrono::Utc::now(), 300).unwrap()
}

fn burn_trade(out_trade_no: &str, vip: &str, burn: i64) -> Trade {
    let mut body = trade(out_trade_no, vip, &hours_ago(0));
    // A store no campaign names, and too little to earn: the trade only burns.
    body["store_code"] = json!("X001");
    body["total_amount"] = json!("5");
    body["payment_amount"] = json!("5");
    body["burn_point"] = json!(burn);
    parse_trade(&body)
}

/// The app's ledger opened as another process would open it, writing new receipts through two
/// grouped lanes on PostgreSQL (SQLite has its one grouped writer either way).
fn store_with_lanes(app: &TestApp) -> Store {
    let limits = WriterLimits {
        lanes: 2,
        ..Default::default()
    };
    Store::open(
        &ledger::DatabaseUrl::parse(&app.database).unwrap(),
        2,
        limits,
    )
    .unwrap()
}

/// Holds the writer (every lane of PostgreSQL's) for `hold` so that the writes sent meanwhile
/// queue up behind it.
fn hold_writer(store: &Store, hold: Duration) -> std::thread::JoinHandle<()> {
    let holds: Vec<_> = (0..store.writer.lanes() as u64)
        .map(|lane| {
            let store = store.clone();
            std::thread::spawn(move || {
                store
                    .writer
                    .submit_for(lane, move |_| {
                        std::thread::sleep(hold);
                        Ok::<_, ServiceError>(())
                    })
                    .wait()
                    .unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    std::thread::spawn(move || holds.into_iter().for_each(|h| h.join().unwrap()))
}

/// Groups the grouped writer has committed so far (`None` on PostgreSQL, whose lanes' groups
/// depend on which lane each member falls in).
fn groups_so_far(store: &Store) -> Option<usize> {
    (backend() == Backend::Sqlite).then(|| store.writer.stats().groups.load(Ordering::Relaxed))
}

/// Sends `trade` through the writer on a thread of its own: its points, or its error.
fn create_on_a_thread(
    store: &Store,
    rules: &Arc<Ruleset>,
    trade: Trade,
) -> std::thread::JoinHandle<Result<i64, String>> {
    let (store, rules) = (store.clone(), rules.clone());
    std::thread::spawn(move || {
        service::create_trade(
            &store,
            rules,
            trade.fingerprint(),
            trade,
            chrono::Utc::now(),
        )
        .wait()
        .map(|p| p.grants.iter().map(|g| g.points.value()).sum())
        .map_err(|e| match e {
            ServiceError::Post(PostError::InsufficientPoints { .. }) => "insufficient".to_string(),
            other => other.to_string(),
        })
    })
}

fn create_all(store: &Store, rules: &Arc<Ruleset>, trades: Vec<Trade>) -> Vec<Result<i64, String>> {
    let handles: Vec<_> = trades
        .into_iter()
        .map(|t| create_on_a_thread(store, rules, t))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// How a test sends a trade to the writer: `service::create_trade` (the replay read first) or
/// `service::create_new_trade` (as if the probe had found it new).
type Create = fn(
    &Store,
    Arc<Ruleset>,
    point_engine::domain::Fingerprint,
    Trade,
    chrono::DateTime<chrono::Utc>,
) -> point_engine::ledger::writer::Answer<Posted, ServiceError>;

/// Sends each trade by `create` on a thread of its own, 30 ms apart so that they queue in this
/// order behind the writer `blocker` holds, and answers each one's outcome once it let go.
fn sent_in_order(
    store: &Store,
    rules: &Arc<Ruleset>,
    create: Create,
    trades: Vec<Trade>,
    blocker: std::thread::JoinHandle<()>,
) -> Vec<Result<Posted, ServiceError>> {
    let sent: Vec<_> = trades
        .into_iter()
        .map(|t| {
            let (store, rules) = (store.clone(), rules.clone());
            let handle = std::thread::spawn(move || {
                create(&store, rules, t.fingerprint(), t, chrono::Utc::now()).wait()
            });
            std::thread::sleep(Duration::from_millis(30));
            handle
        })
        .collect();
    blocker.join().unwrap();
    sent.into_iter().map(|h| h.join().unwrap()).collect()
}

fn points_of(posted: &Posted) -> i64 {
    posted.grants.iter().map(|g| g.points.value()).sum()
}

/// Writes that queue behind a busy writer commit as one group (SQLite), and within it each
/// sees the ones before it: two burns of one member cannot both spend the same points, two
/// first trades of one new member make one member, and a trade that fails in the middle of
/// the group leaves nothing behind (not even its new member) while the others land.
fn a_group_of_writes_sees_each_write_and_fails_each_alone() {
    let app = spawn_app();
    assert_eq!(app.post_trade(&trade("G0", "M-G", &hours_ago(2))).0, 200);
    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(&shipped_rules()).unwrap());
    let groups_before = groups_so_far(&store);

    let blocker = hold_writer(&store, Duration::from_millis(400));
    let outcomes = create_all(
        &store,
        &rules,
        vec![
            burn_trade("G-BURN-1", "M-G", 60),
            burn_trade("G-BURN-2", "M-G", 60),
            // A new member who cannot pay: fails after the member's row was inserted.
            burn_trade("G-FAIL", "M-NEW-FAIL", 10),
            parse_trade(&trade("G-NEW-1", "M-NEW", &hours_ago(1))),
            parse_trade(&trade("G-NEW-2", "M-NEW", &hours_ago(1))),
        ],
    );
    blocker.join().unwrap();

    let burns = &outcomes[..2];
    assert_eq!(
        burns.iter().filter(|o| **o == Ok(0)).count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        burns
            .iter()
            .filter(|o| **o == Err("insufficient".into()))
            .count(),
        1
    );
    assert_eq!(outcomes[2], Err("insufficient".into()));
    assert_eq!(outcomes[3..], [Ok(100), Ok(100)]);
    if let Some(before) = groups_before {
        let stats = store.writer.stats();
        // The blocker's group, then one group for all five.
        assert_eq!(stats.groups.load(Ordering::Relaxed) - before, 2);
    }

    assert_eq!(
        app.balance("M-G", None).1["data"]["available_point"],
        json!(40)
    );
    assert_eq!(
        app.balance("M-NEW", None).1["data"]["available_point"],
        json!(200)
    );
    assert_eq!(app.balance("M-NEW-FAIL", None).0, 404);
    // G0, one burn, two new trades; members M-G and M-NEW.
    let (trades, _, _, members) = app.counts();
    assert_eq!((trades, members), (4, 2));
    app.assert_ledger_consistent();
}

/// The same receipt sent several times while the writer is busy (a till retrying) lands in
/// one group: it is granted once and every copy is answered with that grant, and the same
/// `out_trade_no` with another body in the same group is a conflict. Each copy passed the
/// replay read before the first one was recorded, so the writer finds the duplicates itself.
fn duplicates_in_one_group_are_granted_once() {
    let app = spawn_app();
    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(&shipped_rules()).unwrap());
    let groups_before = groups_so_far(&store);
    let body = trade("D1", "M-D", &hours_ago(1));
    let mut other_body = body.clone();
    other_body["invoice_id"] = json!("another invoice");

    let blocker = hold_writer(&store, Duration::from_millis(600));
    // One after another, so that they queue in this order behind the blocker.
    let sent: Vec<_> = [&body, &body, &other_body, &body]
        .into_iter()
        .map(|b| {
            let (store, rules, t) = (store.clone(), rules.clone(), parse_trade(b));
            let handle = std::thread::spawn(move || {
                service::create_trade(&store, rules, t.fingerprint(), t, chrono::Utc::now())
                    .wait()
                    .map(|p| {
                        let points: i64 = p.grants.iter().map(|g| g.points.value()).sum();
                        (p.trade_no.to_string(), points, p.replayed)
                    })
            });
            std::thread::sleep(Duration::from_millis(40));
            handle
        })
        .collect();
    blocker.join().unwrap();
    let outcomes: Vec<_> = sent.into_iter().map(|h| h.join().unwrap()).collect();

    let (trade_no, points, replayed) = outcomes[0].as_ref().unwrap().clone();
    assert_eq!((points, replayed), (100, false), "{outcomes:?}");
    for copy in [&outcomes[1], &outcomes[3]] {
        assert_eq!(copy.as_ref().unwrap(), &(trade_no.clone(), 100, true));
    }
    match &outcomes[2] {
        Err(ServiceError::Post(PostError::Conflict { trade_no: first })) => {
            assert_eq!(first, &trade_no)
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    if let Some(before) = groups_before {
        let stats = store.writer.stats();
        // The blocker's group, then one group for the four copies.
        assert_eq!(stats.groups.load(Ordering::Relaxed) - before, 2);
    }
    assert_eq!(
        app.balance("M-D", None).1["data"]["available_point"],
        json!(100)
    );
    let (trades, lots, entries, members) = app.counts();
    assert_eq!((trades, lots, entries, members), (1, 1, 1, 1));
    app.assert_ledger_consistent();
}

/// A writer whose queue is full refuses at once with `QueueFull`, and what it accepted lands.
fn a_full_write_queue_refuses_at_once() {
    let app = spawn_app();
    let store = Store::open(
        &ledger::DatabaseUrl::parse(&app.database).unwrap(),
        2,
        WriterLimits {
            queue_max: 2,
            batch_max: 1,
            lanes: 1,
        },
    )
    .unwrap();
    let rules = Arc::new(rules::load_dir(&shipped_rules()).unwrap());
    let blocker = hold_writer(&store, Duration::from_millis(400));
    let trades: Vec<Trade> = (0..6)
        .map(|i| parse_trade(&trade(&format!("Q{i}"), "M-Q", &hours_ago(1))))
        .collect();
    let started = Instant::now();
    let handles: Vec<_> = trades
        .into_iter()
        .map(|t| {
            let (store, rules) = (store.clone(), rules.clone());
            std::thread::spawn(move || {
                let sent = Instant::now();
                let result =
                    service::create_trade(&store, rules, t.fingerprint(), t, chrono::Utc::now())
                        .wait();
                (result, sent.elapsed())
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    blocker.join().unwrap();
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|(r, _)| matches!(r, Err(ServiceError::Unavailable(Busy::QueueFull(2)))))
        .collect();
    let accepted = outcomes.iter().filter(|(r, _)| r.is_ok()).count();
    assert_eq!((accepted, refused.len()), (2, 4), "{outcomes:?}");
    // Refused without waiting for the writer.
    assert!(refused
        .iter()
        .all(|(_, took)| *took < Duration::from_millis(200)));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.counts().0, 2);
    app.assert_ledger_consistent();
}

/// The HTTP answer to a full queue: 503 in the native error shape, with `Retry-After`.
fn a_full_write_queue_answers_503_with_retry_after() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.writer = WriterLimits {
        queue_max: 1,
        batch_max: 1,
        lanes: 1,
    };
    settings.workers = 4;
    let app = Arc::new(spawn_app_with_settings(settings));
    let mut busy_seen = None;
    for round in 0..20 {
        let handles: Vec<_> = (0..48)
            .map(|i| {
                let app = app.clone();
                std::thread::spawn(move || {
                    let body = trade(&format!("B{round}-{i}"), &format!("M{i}"), &hours_ago(1));
                    let response = admin_agent()
                        .post(&format!("{}/v1/point-engine/trade-create", app.address))
                        .send_json(body);
                    match response {
                        Ok(r) => (r.status(), None, Value::Null),
                        Err(ureq::Error::Status(status, r)) => {
                            let retry = r.header("Retry-After").map(str::to_string);
                            (status, retry, r.into_json().unwrap())
                        }
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect();
        for (status, retry, body) in handles.into_iter().map(|h| h.join().unwrap()) {
            assert!(status == 200 || status == 503, "{status} {body}");
            if status == 503 {
                busy_seen = Some((retry, body));
            }
        }
        if busy_seen.is_some() {
            break;
        }
    }
    let (retry, body) = busy_seen.expect("a queue of one overflows under 48 concurrent writes");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        body,
        error_body(50300, "the ledger is busy; nothing was written, retry")
    );
    app.assert_ledger_consistent();
}

/// Writes under load from many connections while the server is killed (`kill -9`) and
/// restarted several times: every acknowledged trade is in the ledger exactly once, and the
/// audit is clean.
fn acknowledged_trades_survive_kill_9() {
    let db = TestDb::new();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    for round in 0..3 {
        // Two lanes: PostgreSQL's grouped writers are as durable as its pooled writes.
        let mut instance = Instance::spawn_with(&db, &shipped_rules(), &["--write-lanes", "2"]);
        instance.wait_ready();
        let address = instance.address.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (address, stop, acknowledged) =
                    (address.clone(), stop.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    let agent = admin_agent();
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let no = format!("K{round}-{c}-{i}");
                        let body = trade(&no, &format!("M{}", i % 5), &hours_ago(1));
                        match agent
                            .post(&format!("{address}/v1/point-engine/trade-create"))
                            .send_json(body)
                        {
                            Ok(r) if r.status() == 200 => acknowledged.lock().unwrap().push(no),
                            // Killed mid-request: not acknowledged, may or may not be there.
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        instance.child.kill().unwrap(); // SIGKILL
        instance.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        clients.into_iter().for_each(|c| c.join().unwrap());
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 30,
        "{} acknowledged",
        acknowledged.len()
    );
    let mut instance = Instance::spawn_with(&db, &shipped_rules(), &[]);
    instance.wait_ready();
    let pool = ledger::connect(&db.url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    for no in &acknowledged {
        use diesel::prelude::*;
        use point_engine::ledger::schema::trades;
        let count: i64 = trades::table
            .filter(trades::out_trade_no.eq(no))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(count, 1, "acknowledged trade {no}");
    }
    let report = ledger::audit::audit(&mut conn).unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
}

/// A short read runs on the calling thread (`Store::conn_here`) only on SQLite, and only on a
/// connection that is free at once: it never waits for one.
fn reads_here_take_only_a_free_sqlite_connection() {
    let db = TestDb::new();
    let store = Store::open(&db.url, 1, WriterLimits::default()).unwrap();
    let Some(held) = store.conn_here() else {
        assert_eq!(backend(), Backend::Postgres, "SQLite reads here");
        return;
    };
    assert_eq!(
        backend(),
        Backend::Sqlite,
        "PostgreSQL reads on blocking threads"
    );
    let started = Instant::now();
    assert!(
        store.conn_here().is_none(),
        "the pool's one connection is held"
    );
    assert!(started.elapsed() < Duration::from_millis(100), "no wait");
    drop(held);
    assert!(store.conn_here().is_some());
}

/// With one pooled connection for 16 callers at once, replays and balances that find it busy
/// are read on blocking threads instead: each answers exactly as alone.
fn replays_and_balances_answer_alike_when_the_pool_is_busy() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.pool_size = 1;
    let app = spawn_app_in(settings, db);
    let when = hours_ago(1);
    let (status, first) = app.post_trade(&trade("BUSY-0", "M-BUSY", &when));
    assert_eq!(status, 200, "{first}");
    let (_, balance) = app.balance("M-BUSY", None);
    let app = Arc::new(app);
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let (app, when) = (app.clone(), when.clone());
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for _ in 0..20 {
                    answers.push(match i % 2 {
                        0 => app.post_trade(&trade("BUSY-0", "M-BUSY", &when)),
                        _ => app.balance("M-BUSY", None),
                    });
                }
                (i, answers)
            })
        })
        .collect();
    for handle in handles {
        let (i, answers) = handle.join().unwrap();
        let expected = match i % 2 {
            0 => &first,
            _ => &balance,
        };
        for (status, answer) in answers {
            assert_eq!((status, &answer), (200, expected));
        }
    }
    assert_eq!(app.counts().0, 1);
    app.assert_ledger_consistent();
}

/// Two budgeted campaigns, each at its own stores.
const TWO_BUDGETS: &str = r#"
[[campaign]]
code = "XB"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["X*"]
budget = 10000
expiry = "KDP"
award = { fixed = 100 }

[[campaign]]
code = "YB"
starts_at = "2020-01-01T00:00:00+08:00"
ends_at = "2100-01-01T00:00:00+08:00"
stores = ["Y*"]
budget = 10000
expiry = "KDP"
award = { fixed = 100 }
"#;

/// Two groups committing at once that take two budgets in opposite orders (PostgreSQL: two
/// lanes, each group holding the first budget it took until it commits) deadlock; PostgreSQL
/// ends one, and its whole group runs again: every trade lands once, none answers an error.
fn groups_taking_budgets_in_opposite_orders_all_land() {
    let program = std::fs::read_to_string(shipped_rules().join("program.toml")).unwrap();
    let rules_dir = rules_dir(&[("program.toml", &program), ("c.toml", TWO_BUDGETS)]);
    let app = spawn_app_with_rules(rules_dir.path());
    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(rules_dir.path()).unwrap());
    let at = |no: &str, vip: &str, store_code: &str| {
        let mut body = trade(no, vip, &hours_ago(1));
        body["store_code"] = json!(store_code);
        parse_trade(&body)
    };
    // Members of the first lane and of the second (one lane on SQLite: any members).
    let lanes = store.writer.lanes().max(1) as u64;
    let in_lane = |lane: u64| {
        (0..)
            .map(move |i| format!("M-L{lane}-{i}"))
            .filter(move |vip| {
                let vip = point_engine::domain::VipAccountNo::parse(vip).unwrap();
                service::member_key(&vip) % lanes == lane % lanes
            })
    };
    let (mut first, mut second) = (in_lane(0), in_lane(1));
    let trades = vec![
        at("O1", &first.next().unwrap(), "X01"),
        at("O2", &second.next().unwrap(), "Y01"),
        at("O3", &first.next().unwrap(), "Y01"),
        at("O4", &second.next().unwrap(), "X01"),
    ];
    let writes_before = store.writer.stats().writes.load(Ordering::Relaxed);
    let blocker = hold_writer(&store, Duration::from_millis(400));
    // One after another, so that they queue in this order behind the blocker.
    let sent: Vec<_> = trades
        .into_iter()
        .map(|t| {
            let handle = create_on_a_thread(&store, &rules, t);
            std::thread::sleep(Duration::from_millis(30));
            handle
        })
        .collect();
    blocker.join().unwrap();
    let outcomes: Vec<_> = sent.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outcomes, vec![Ok(200); 4]);
    // Through the grouped writers (the lanes, on PostgreSQL): a hold on each, then the four.
    let writes = store.writer.stats().writes.load(Ordering::Relaxed) - writes_before;
    assert_eq!(writes, store.writer.lanes() + 4);
    for campaign in ["XB", "YB"] {
        let used: i64 = {
            use diesel::prelude::*;
            use point_engine::ledger::schema::campaign_budgets;
            campaign_budgets::table
                .filter(campaign_budgets::campaign_code.eq(campaign))
                .select(campaign_budgets::used)
                .first(&mut app.conn())
                .unwrap()
        };
        assert_eq!(used, 200, "{campaign}");
    }
    assert_eq!(app.counts(), (4, 8, 8, 4));
    app.assert_ledger_consistent();
}

/// PostgreSQL: the lanes say they are writing (balance and history reads then take turns
/// beside them, `startup::reads_beside_lanes`) while a lane has a write queued or running, and
/// only then. SQLite's writer never says so: its reads never wait for it.
fn lanes_say_they_are_writing_only_while_they_are() {
    let app = spawn_app();
    let store = store_with_lanes(&app);
    assert!(!store.writer.lanes_writing());
    let blocker = hold_writer(&store, Duration::from_millis(300));
    assert_eq!(store.writer.lanes_writing(), backend() == Backend::Postgres);
    blocker.join().unwrap();
    // The counter falls just after the group's answers went out.
    let done = Instant::now();
    while store.writer.lanes_writing() && done.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!store.writer.lanes_writing());
}

/// PostgreSQL with writer lanes: receipts are looked up before their writes with other
/// receipts' questions in one statement (`ledger::probe`), and each question gets its own
/// answer: new, the replay of the trade recorded under it (for each of two questions of one
/// trade), or a conflict for another request under a recorded `out_trade_no`. SQLite has no
/// probe: it reads on the worker.
fn receipts_are_looked_up_together_and_each_answered_alone() {
    let app = spawn_app();
    let recorded: Vec<Value> = (0..3)
        .map(|i| {
            trade(
                &format!("PROBED-{i}"),
                &format!("M-PROBED-{i}"),
                &hours_ago(1),
            )
        })
        .collect();
    let first_answers: Vec<Value> = recorded
        .iter()
        .map(|body| {
            let (status, answer) = app.post_trade(body);
            assert_eq!(status, 200, "{answer}");
            answer
        })
        .collect();
    let mut other = recorded[0].clone();
    other["payment_amount"] = json!("999.00");
    let mut asks: Vec<(Value, &str)> = Vec::new();
    for body in &recorded {
        asks.push((body.clone(), "replay"));
        asks.push((body.clone(), "replay"));
    }
    asks.push((other, "conflict"));
    for i in 0..40 {
        asks.push((
            trade(&format!("UNSEEN-{i}"), "M-UNSEEN", &hours_ago(1)),
            "new",
        ));
    }
    let store = store_with_lanes(&app);
    let questions: Vec<(String, _)> = asks
        .iter()
        .map(|(body, _)| {
            let trade = parse_trade(body);
            (trade.out_trade_no.as_str().to_string(), trade.fingerprint())
        })
        .collect();
    let probed: Vec<Probed> = actix_web::rt::System::new().block_on(async {
        let asked: Vec<_> = questions
            .into_iter()
            .map(|(out_trade_no, fingerprint)| {
                let store = store.clone();
                actix_web::rt::spawn(async move { store.probe(&out_trade_no, fingerprint).await })
            })
            .collect();
        let mut probed = Vec::new();
        for answer in asked {
            probed.push(answer.await.unwrap());
        }
        probed
    });
    let Some(stats) = store.probe_stats() else {
        assert_eq!(backend(), Backend::Sqlite);
        assert!(probed.iter().all(|p| matches!(p, Probed::Unknown)));
        return;
    };
    for ((body, expected), probed) in asks.iter().zip(&probed) {
        let out_trade_no = body["out_trade_no"].as_str().unwrap();
        match (*expected, probed) {
            ("new", Probed::New) => {}
            ("replay", Probed::Recorded(Ok(posted))) => {
                let first = &first_answers[recorded.iter().position(|r| r == body).unwrap()];
                assert_eq!(posted.trade_no.as_str(), app.trade_no(out_trade_no));
                assert!(posted.replayed);
                // The grants the first answer showed, each with its points and type.
                let granted: Vec<(i64, &str)> = posted
                    .grants
                    .iter()
                    .map(|g| (g.points.value(), g.point_type.as_str()))
                    .collect();
                let shown: Vec<(i64, &str)> = first["data"]["detail"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| (d["point"].as_i64().unwrap(), d["type"].as_str().unwrap()))
                    .collect();
                assert_eq!(granted, shown, "{first}");
                assert!(!granted.is_empty());
            }
            ("conflict", Probed::Recorded(Err(PostError::Conflict { trade_no }))) => {
                assert_eq!(*trade_no, app.trade_no(out_trade_no));
            }
            _ => panic!("{out_trade_no}: expected {expected}, probed {probed:?}"),
        }
    }
    assert_eq!(stats.asks.load(Ordering::Relaxed), asks.len() as u64);
    let statements = stats.statements.load(Ordering::Relaxed);
    assert!(
        statements < asks.len() as u64,
        "{statements} statements for {} questions",
        asks.len()
    );
    // Nothing was written by asking.
    assert_eq!(app.counts().0, 3);
}

/// PostgreSQL: balances and history pages look up their member with other reads' in one
/// statement (`probe::MemberProbe`), and each gets its own member and ledger version, the same
/// as read alone: members with trades and a refund, one asked twice, an unknown account number
/// and an identity (those two are left to the pool, which also finds identities). SQLite has
/// no members probe.
fn members_are_looked_up_together_with_their_ledger_versions() {
    let app = spawn_app();
    for i in 0..3 {
        for t in 0..=i {
            let body = trade(&format!("V-{i}-{t}"), &format!("M-V-{i}"), &hours_ago(3));
            assert_eq!(app.post_trade(&body).0, 200);
        }
    }
    let (status, body) = app.post_refund(&refund("V-R", "V-2-0", "1000.00"));
    assert_eq!(status, 200, "{body}");
    let store = store_with_lanes(&app);
    let asked = [
        "M-V-0",
        "M-V-1",
        "M-V-2",
        "M-V-1",
        "M-NOBODY",
        "TEL:13800000000",
    ];
    let versions: Vec<_> = actix_web::rt::System::new().block_on(async {
        let asks: Vec<_> = asked
            .iter()
            .map(|vip| {
                let (store, vip) = (store.clone(), VipAccountNo::parse(vip).unwrap());
                actix_web::rt::spawn(async move { store.member_version(&vip).await })
            })
            .collect();
        let mut versions = Vec::new();
        for ask in asks {
            versions.push(ask.await.unwrap());
        }
        versions
    });
    let Some(stats) = store.members_probe_stats() else {
        assert_eq!(backend(), Backend::Sqlite);
        assert!(versions.iter().all(Option::is_none));
        return;
    };
    let mut conn = store.pool.get().unwrap();
    for (vip, version) in asked.iter().zip(&versions) {
        let Some(member_id) = ledger::repo::find_member_id(&mut conn, vip).unwrap() else {
            assert_eq!(*version, None, "{vip}");
            continue;
        };
        let alone = ledger::repo::member_ledger_version(&mut conn, member_id).unwrap();
        let expected = ledger::probe::Versioned {
            member_id,
            version: alone,
        };
        assert_eq!(*version, Some(expected), "{vip}");
        // Entries for every member, a refund for M-V-2 only.
        assert!(alone.0.is_some());
        assert_eq!(alone.1.is_some(), *vip == "M-V-2", "{vip}");
    }
    assert_eq!(stats.asks.load(Ordering::Relaxed), asked.len() as u64);
    let statements = stats.statements.load(Ordering::Relaxed);
    assert!(statements < asked.len() as u64, "{statements} statements");
}

/// PostgreSQL: balances and history pages not known are read with others' in two statements
/// each (`probe::ReadProbe`), and each is what a read of that member alone answers, then
/// answered from memory alike: members of no, one and three trades, one that burned, one that
/// owes points after a refund, a balance as of a moment past every lot's expiry, and pages at
/// several sizes, one past the last entry. SQLite has no reads probe.
fn balances_and_pages_read_together_are_those_read_alone() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.refund_shortfall_policy = ShortfallPolicy::AllowNegative;
    let app = spawn_app_with_settings(settings);
    let post = |body: &Value| {
        let (status, answer) = app.post_trade(body);
        assert_eq!(status, 200, "{answer}");
    };
    post(&trade("R-1-0", "M-R-1", &hours_ago(5)));
    for t in 0..3 {
        post(&trade(&format!("R-3-{t}"), "M-R-3", &hours_ago(5 - t)));
    }
    let mut burn = trade("R-3-B", "M-R-3", &hours_ago(0));
    burn["burn_point"] = json!(120);
    post(&burn);
    // M-R-OWES spends the points of its first trade, whose refund then leaves a debt.
    post(&trade("R-O-0", "M-R-OWES", &hours_ago(3)));
    post(&trade("R-O-1", "M-R-OWES", &hours_ago(2)));
    let mut spend = trade("R-O-B", "M-R-OWES", &hours_ago(0));
    spend["burn_point"] = json!(150);
    post(&spend);
    let (status, body) = app.post_refund(&refund("R-O-R", "R-O-0", "1000.00"));
    assert_eq!(status, 200, "{body}");
    let now = chrono::Utc::now();
    let past_expiry = now + chrono::Duration::days(3 * 366);
    let balances = [("M-R-1", past_expiry), ("M-R-3", now), ("M-R-OWES", now)];
    let pages = [
        ("M-R-3", 1, 50),
        ("M-R-3", 2, 2),
        ("M-R-3", 1, 1),
        ("M-R-OWES", 2, 3),
        ("M-R-1", 10, 2),
    ];
    let store = store_with_lanes(&app);
    let vip = |v: &str| VipAccountNo::parse(v).unwrap();
    type Read = (
        Vec<Option<Arc<ledger::Balance>>>,
        Vec<Option<ledger::history::History>>,
    );
    let read_together = || -> Read {
        actix_web::rt::System::new().block_on(async {
            let asked_balances: Vec<_> = balances
                .iter()
                .map(|(v, as_of)| {
                    let (store, v, as_of) = (store.clone(), vip(v), *as_of);
                    actix_web::rt::spawn(async move {
                        let member = store.member_version(&v).await?;
                        store.member_balance(member, &v, as_of).await
                    })
                })
                .collect();
            let asked_pages: Vec<_> = pages
                .iter()
                .map(|(v, page, size)| {
                    let (store, v, page, size) = (store.clone(), vip(v), *page, *size);
                    actix_web::rt::spawn(async move {
                        let member = store.member_version(&v).await?;
                        store.member_page(member, page, size).await
                    })
                })
                .collect();
            let mut read: Read = (Vec::new(), Vec::new());
            for ask in asked_balances {
                read.0.push(ask.await.unwrap());
            }
            for ask in asked_pages {
                read.1.push(ask.await.unwrap());
            }
            read
        })
    };
    let first = read_together();
    let Some(stats) = store.reads_probe_stats() else {
        assert_eq!(backend(), Backend::Sqlite);
        assert!(first.0.iter().all(Option::is_none));
        assert!(first.1.iter().all(Option::is_none));
        return;
    };
    let asks = stats.asks.load(Ordering::Relaxed);
    assert_eq!(asks, (balances.len() + pages.len()) as u64);
    let statements = stats.statements.load(Ordering::Relaxed);
    assert!(
        statements < asks,
        "{statements} statements for {asks} reads"
    );
    // Read alone on the pool, keeping nothing.
    let mut conn = store.pool.get().unwrap();
    let alone_balances: Vec<_> = balances
        .iter()
        .map(|(v, as_of)| {
            let none = ledger::balances::KnownBalances::new(0);
            ledger::balance(&mut conn, &vip(v), *as_of, &none).unwrap()
        })
        .collect();
    let alone_pages: Vec<_> = pages
        .iter()
        .map(|(v, page, size)| {
            let none = ledger::pages::KnownPages::new(0);
            ledger::history::member_history(&mut conn, &vip(v), *page, *size, &none).unwrap()
        })
        .collect();
    let owes = alone_balances[2].as_ref().unwrap();
    assert_eq!(owes.owed.value(), 100, "{owes:?}");
    assert!(alone_balances[0].as_ref().unwrap().lots.is_empty());
    assert!(!alone_balances[1].as_ref().unwrap().lots.is_empty());
    assert!(alone_pages[4].as_ref().unwrap().movements.is_empty());
    assert_eq!(alone_pages[1].as_ref().unwrap().movements.len(), 2);
    // Asked again, each from memory, the same.
    let again = read_together();
    assert_eq!(stats.asks.load(Ordering::Relaxed), asks);
    for read in [first, again] {
        for ((asked, together), alone) in balances.iter().zip(&read.0).zip(&alone_balances) {
            assert_eq!(together.as_deref(), alone.as_deref(), "{asked:?}");
        }
        for ((asked, together), alone) in pages.iter().zip(&read.1).zip(&alone_pages) {
            assert_eq!(together.as_ref(), alone.as_ref(), "{asked:?}");
        }
    }
    // New entries: M-R-3's kept first pages are read again as only the newer entries (two
    // of them, more than a page of 1 holds), M-R-OWES's second page whole.
    let mut burn = trade("R-3-B2", "M-R-3", &hours_ago(0));
    burn["burn_point"] = json!(10);
    post(&burn);
    post(&trade("R-O-2", "M-R-OWES", &hours_ago(0)));
    let after = read_together();
    let alone_after: Vec<_> = pages
        .iter()
        .map(|(v, page, size)| {
            let none = ledger::pages::KnownPages::new(0);
            ledger::history::member_history(&mut conn, &vip(v), *page, *size, &none).unwrap()
        })
        .collect();
    let newest = alone_after[0].as_ref().unwrap();
    assert_eq!(newest.total, alone_pages[0].as_ref().unwrap().total + 2);
    assert_eq!(alone_after[2].as_ref().unwrap().movements.len(), 1);
    for ((asked, together), alone) in pages.iter().zip(&after.1).zip(&alone_after) {
        assert_eq!(together.as_ref(), alone.as_ref(), "{asked:?}");
    }
}

/// PostgreSQL with writer lanes: new receipts whose price reads nothing of the member's, queued
/// in one group, are posted together (`ledger::together`), and each is answered as if it were
/// posted alone: two receipts of a member already known, two of a new member (one member row),
/// a receipt with lines, a copy of a receipt (the replay of the first) and another body under
/// its number (a conflict), a burn beside them (posted alone in the same group), and two
/// receipts of a member who owes points: the first pays the debt off. SQLite posts each alone,
/// with the same answers.
fn receipts_of_one_group_are_posted_together_and_answered_as_alone() {
    let db = TestDb::new();
    let mut settings = test_settings(&shipped_rules(), &db);
    settings.refund_shortfall_policy = ShortfallPolicy::AllowNegative;
    let app = spawn_app_with_settings(settings);
    // M-OLD holds 100. M-OWES owes 100: it spent its 100 points, then their trade was refunded.
    assert_eq!(
        app.post_trade(&trade("T-OLD", "M-OLD", &hours_ago(3))).0,
        200
    );
    assert_eq!(
        app.post_trade(&trade("T-OWES", "M-OWES", &hours_ago(3))).0,
        200
    );
    let mut spend = trade("T-SPEND", "M-OWES", &hours_ago(2));
    spend["store_code"] = json!("X001");
    spend["payment_amount"] = json!("5");
    spend["total_amount"] = json!("5");
    spend["burn_point"] = json!(100);
    assert_eq!(app.post_trade(&spend).0, 200);
    let (status, body) = app.post_refund(&refund("R-OWES", "T-OWES", "1000.00"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.balance("M-OWES", None).1["data"]["owed_point"],
        json!(100)
    );

    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(&shipped_rules()).unwrap());
    let first_new = trade("T-NEW-1", "M-NEW", &hours_ago(1));
    let mut other_body = first_new.clone();
    other_body["invoice_id"] = json!("another invoice");
    let mut with_lines = parse_trade(&trade("T-OLD-2", "M-OLD", &hours_ago(1)));
    for (sku, quantity, amount) in [("SKU-TEA", 2, "600.00"), ("SKU-CUP", 1, "400.00")] {
        with_lines.lines.push(
            TradeLine::new(
                Sku::parse(sku).unwrap(),
                sku,
                quantity,
                Amount::parse(amount).unwrap(),
            )
            .unwrap(),
        );
    }
    let sent_trades = vec![
        parse_trade(&trade("T-OLD-1", "M-OLD", &hours_ago(1))),
        with_lines,
        parse_trade(&first_new),
        parse_trade(&trade("T-NEW-2", "M-NEW", &hours_ago(1))),
        parse_trade(&first_new),
        parse_trade(&other_body),
        parse_trade(&trade("T-OWES-1", "M-OWES", &hours_ago(1))),
        parse_trade(&trade("T-OWES-2", "M-OWES", &hours_ago(1))),
        burn_trade("T-OLD-BURN", "M-OLD", 50),
    ];
    let blocker = hold_writer(&store, Duration::from_millis(600));
    let outcomes = sent_in_order(&store, &rules, service::create_trade, sent_trades, blocker);

    let answer = |i: usize| {
        let posted = outcomes[i].as_ref().unwrap_or_else(|e| panic!("{i}: {e}"));
        (
            posted.trade_no.to_string(),
            points_of(posted),
            posted.replayed,
        )
    };
    let out_trade_nos = [
        "T-OLD-1", "T-OLD-2", "T-NEW-1", "T-NEW-2", "", "", "T-OWES-1", "T-OWES-2",
    ];
    for (i, out_trade_no) in out_trade_nos.into_iter().enumerate() {
        if !out_trade_no.is_empty() {
            assert_eq!(answer(i), (app.trade_no(out_trade_no), 100, false), "{i}");
        }
    }
    assert_eq!(answer(4), (app.trade_no("T-NEW-1"), 100, true));
    match &outcomes[5] {
        Err(ServiceError::Post(PostError::Conflict { trade_no })) => {
            assert_eq!(*trade_no, app.trade_no("T-NEW-1"))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(answer(8).1, 0);
    let lines =
        ledger::repo::trade_lines_of(&mut app.conn(), &[outcomes[1].as_ref().unwrap().trade_id])
            .unwrap();
    let lines: Vec<_> = lines
        .iter()
        .map(|l| (l.line_no, l.sku.as_str(), l.quantity, l.amount_minor))
        .collect();
    assert_eq!(lines, [(0, "SKU-TEA", 2, 60000), (1, "SKU-CUP", 1, 40000)]);

    let balance = |vip: &str| {
        let data = app.balance(vip, None).1["data"].clone();
        (data["available_point"].clone(), data["owed_point"].clone())
    };
    assert_eq!(balance("M-OLD"), (json!(250), json!(0)));
    assert_eq!(balance("M-NEW"), (json!(200), json!(0)));
    // The debt came off the first receipt's 100 points.
    assert_eq!(balance("M-OWES"), (json!(100), json!(0)));
    // Three trades before; seven new (the copy and the conflict wrote nothing).
    let (trades, _, _, members) = app.counts();
    assert_eq!((trades, members), (10, 3));
    let together = store.writer.stats().together.load(Ordering::Relaxed);
    match backend() {
        // Each lane's group held at least two receipts of a member: all eight were answered
        // by posting together (six recorded, a replay and a conflict); the burn ran alone.
        Backend::Postgres => assert_eq!(together, 8),
        Backend::Sqlite => assert_eq!(together, 0),
    }
    app.assert_ledger_consistent();
}

/// A group whose receipts, posted together, would take a member past the most a balance can
/// show is posted again one receipt at a time: only the receipt over the limit fails (with
/// `BalanceLimit`, writing nothing), and the others of the group land.
fn a_receipt_over_the_balance_limit_fails_alone_in_its_group() {
    let folder = jackpot_rules();
    let app = spawn_app_with_rules(folder.path());
    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(folder.path()).unwrap());
    let jackpot = |no: &str, vip: &str| {
        let mut body = trade(no, vip, &hours_ago(1));
        body["store_code"] = json!("J001");
        parse_trade(&body)
    };
    let blocker = hold_writer(&store, Duration::from_millis(500));
    let trades = vec![
        jackpot("J1", "M-RICH"),
        jackpot("J2", "M-RICH"),
        jackpot("J3", "M-OTHER"),
        parse_trade(&trade("T1", "M-RICH", &hours_ago(1))),
        parse_trade(&trade("T2", "M-OTHER", &hours_ago(1))),
    ];
    let outcomes: Vec<_> = sent_in_order(&store, &rules, service::create_trade, trades, blocker)
        .into_iter()
        .map(|outcome| outcome.map(|posted| points_of(&posted)))
        .collect();
    let jackpot_points = 600_000_000_100;
    assert_eq!(outcomes[0].as_ref().unwrap(), &jackpot_points);
    match &outcomes[1] {
        Err(ServiceError::Post(PostError::BalanceLimit { held, granted })) => {
            assert_eq!((*held, *granted), (jackpot_points, jackpot_points))
        }
        other => panic!("expected the balance limit, got {other:?}"),
    }
    assert_eq!(outcomes[2].as_ref().unwrap(), &jackpot_points);
    assert_eq!(outcomes[3].as_ref().unwrap(), &100);
    assert_eq!(outcomes[4].as_ref().unwrap(), &100);
    let available = |vip: &str| app.balance(vip, None).1["data"]["available_point"].clone();
    assert_eq!(available("M-RICH"), json!(jackpot_points + 100));
    assert_eq!(available("M-OTHER"), json!(jackpot_points + 100));
    let (trades, lots, entries, members) = app.counts();
    // A jackpot grants E and A points: two lots each.
    assert_eq!((trades, lots, entries, members), (4, 6, 6, 2));
    app.assert_ledger_consistent();
}

/// A receipt another instance recorded after the probe found it new fails the statement that
/// posts its group together (its `out_trade_no` is unique): the group is posted again a
/// receipt at a time, the others land, and that one answers the other instance's trade.
fn a_receipt_recorded_meanwhile_elsewhere_replays_it_and_the_group_lands() {
    let app = spawn_app();
    let body = trade("T-ELSEWHERE", "M-E", &hours_ago(1));
    let (status, first) = app.post_trade(&body);
    assert_eq!(status, 200, "{first}");
    let store = store_with_lanes(&app);
    let rules = Arc::new(rules::load_dir(&shipped_rules()).unwrap());
    let blocker = hold_writer(&store, Duration::from_millis(400));
    // As if the probe had found each new (`create_new_trade` does not look).
    let trades = vec![
        parse_trade(&trade("T-FRESH-1", "M-E", &hours_ago(1))),
        parse_trade(&body),
        parse_trade(&trade("T-FRESH-2", "M-E", &hours_ago(1))),
    ];
    let outcomes: Vec<_> =
        sent_in_order(&store, &rules, service::create_new_trade, trades, blocker)
            .into_iter()
            .map(|outcome| {
                let posted = outcome.unwrap();
                (
                    posted.trade_no.to_string(),
                    points_of(&posted),
                    posted.replayed,
                )
            })
            .collect();
    assert_eq!(
        outcomes,
        [
            (app.trade_no("T-FRESH-1"), 100, false),
            (app.trade_no("T-ELSEWHERE"), 100, true),
            (app.trade_no("T-FRESH-2"), 100, false),
        ]
    );
    assert_eq!(
        first["data"]["trade_no"].as_str(),
        Some(outcomes[1].0.as_str())
    );
    assert_eq!(
        app.balance("M-E", None).1["data"]["available_point"],
        json!(300)
    );
    assert_eq!(app.counts(), (3, 3, 3, 1));
    app.assert_ledger_consistent();
}

/// What a generated group sends: a new receipt of a member, a copy of an earlier receipt, an
/// earlier receipt's number with another body, or a burn.
#[derive(Debug, Clone)]
enum Sent {
    Receipt { member: usize, amount: &'static str },
    Copy(usize),
    OtherBody(usize),
    Burn { member: usize, points: i64 },
}

fn sent_strategy() -> impl proptest::strategy::Strategy<Value = Vec<Sent>> {
    use proptest::prelude::*;
    let one = prop_oneof![
        4 => (0..4usize, prop::sample::select(vec!["5.00", "99.99", "1000.00", "1234.50"]))
            .prop_map(|(member, amount)| Sent::Receipt { member, amount }),
        1 => any::<usize>().prop_map(Sent::Copy),
        1 => any::<usize>().prop_map(Sent::OtherBody),
        1 => (0..4usize, 1..150i64).prop_map(|(member, points)| Sent::Burn { member, points }),
    ];
    prop::collection::vec(one, 2..24)
}

/// Generated groups of concurrent writes (new receipts of four members, two of them known and
/// holding 100 points, copies, other bodies under a receipt's number, burns), queued behind a
/// busy writer so that they commit together (on PostgreSQL, receipts posted together in each
/// lane's group): every receipt number is recorded once, with one of the bodies sent under it,
/// and answered with that trade to every copy of that body, the other bodies conflict (the
/// threads race: which body wins is not fixed), each receipt earns what the
/// rules price, each member's balance is what was granted less what was burned, and the ledger
/// is consistent.
fn generated_groups_grant_once_and_balance() {
    use proptest::test_runner::{Config, TestRunner};
    let rules_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = Arc::new(rules::load_dir(&rules_path).unwrap());
    let mut runner = TestRunner::new(Config {
        cases: 6,
        max_shrink_iters: 8,
        failure_persistence: None,
        ..Config::default()
    });
    let sales_time = hours_ago(1);
    runner
        .run(&sent_strategy(), |sent| {
            let app = spawn_app_with_rules(&rules_path);
            let vip = |member: usize| format!("M-GEN-{member}");
            // Members 0 and 1 hold 100 points each before the group; 2 and 3 are new.
            let mut balances = [100i64, 100, 0, 0];
            for member in 0..2 {
                let body = trade(&format!("PRIOR-{member}"), &vip(member), &sales_time);
                assert_eq!(app.post_trade(&body).0, 200);
            }
            // Each write's body and (for a receipt) its number.
            let mut receipts: Vec<Value> = Vec::new();
            let trades: Vec<(Trade, Option<String>)> = sent
                .iter()
                .enumerate()
                .map(|(i, one)| match one {
                    Sent::Receipt { member, amount } => {
                        let mut body = trade(&format!("GEN-{i}"), &vip(*member), &sales_time);
                        body["total_amount"] = json!(amount);
                        body["payment_amount"] = json!(amount);
                        receipts.push(body.clone());
                        (parse_trade(&body), Some(format!("GEN-{i}")))
                    }
                    Sent::Copy(n) | Sent::OtherBody(n) if !receipts.is_empty() => {
                        let mut body = receipts[n % receipts.len()].clone();
                        if matches!(one, Sent::OtherBody(_)) {
                            body["invoice_id"] = json!(format!("other-{i}"));
                        }
                        let number = body["out_trade_no"].as_str().unwrap().to_string();
                        (parse_trade(&body), Some(number))
                    }
                    Sent::Copy(_) | Sent::OtherBody(_) => {
                        (burn_trade(&format!("GEN-{i}"), &vip(0), 1), None)
                    }
                    Sent::Burn { member, points } => (
                        burn_trade(&format!("GEN-{i}"), &vip(*member), *points),
                        None,
                    ),
                })
                .collect();
            let store = store_with_lanes(&app);
            let blocker = hold_writer(&store, Duration::from_millis(300));
            let handles: Vec<_> = trades
                .iter()
                .map(|(t, _)| {
                    let (store, rules, t) = (store.clone(), rules.clone(), t.clone());
                    std::thread::spawn(move || {
                        let fingerprint = t.fingerprint();
                        service::create_trade(&store, rules, fingerprint, t, chrono::Utc::now())
                            .wait()
                    })
                })
                .collect();
            blocker.join().unwrap();
            let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();

            let mut recorded: std::collections::HashMap<String, (String, i64)> = Default::default();
            let mut burned_ok = 0;
            for ((t, number), answer) in trades.iter().zip(&answers) {
                let member = t.vip_accountno.as_str();
                let m: usize = member.trim_start_matches("M-GEN-").parse().unwrap();
                let Some(number) = number else {
                    // A burn: it earns nothing; it spends its points or is refused.
                    match answer {
                        Ok(posted) => {
                            assert!(posted.grants.is_empty(), "{posted:?}");
                            balances[m] -= t.burn_point.value();
                            burned_ok += 1;
                        }
                        Err(ServiceError::Post(PostError::InsufficientPoints { .. })) => {}
                        other => panic!("a burn answered {other:?}"),
                    }
                    continue;
                };
                let trade_no = app.trade_no(number);
                let fingerprint = t.fingerprint().as_str().to_string();
                match answer {
                    Ok(posted) => {
                        assert_eq!(posted.trade_no.to_string(), trade_no);
                        let points: i64 = posted.grants.iter().map(|g| g.points.value()).sum();
                        let priced: i64 = rules
                            .price(t, &point_engine::domain::MemberContext::default())
                            .unwrap()
                            .grants
                            .iter()
                            .map(|g| g.points.value())
                            .sum();
                        assert_eq!(points, priced, "{number}");
                        let first = recorded
                            .entry(number.clone())
                            .or_insert((fingerprint.clone(), 0));
                        assert_eq!(first.0, fingerprint, "{number}: two bodies recorded");
                        if !posted.replayed {
                            first.1 += 1;
                            balances[m] += points;
                        }
                    }
                    Err(ServiceError::Post(PostError::Conflict { trade_no: first })) => {
                        assert_eq!(*first, trade_no);
                    }
                    other => panic!("{number} answered {other:?}"),
                }
            }
            // Each number recorded once, with the body every success answered for it.
            let numbers: std::collections::HashSet<&String> = trades
                .iter()
                .filter_map(|(_, number)| number.as_ref())
                .collect();
            assert_eq!(numbers.len(), recorded.len(), "{sent:?}");
            for (number, (_, firsts)) in &recorded {
                assert_eq!(*firsts, 1, "{number}");
            }
            for (m, balance) in balances.iter().enumerate() {
                let (status, body) = app.balance(&vip(m), None);
                let held = if status == 404 {
                    0
                } else {
                    body["data"]["available_point"].as_i64().unwrap()
                };
                assert_eq!(held, *balance, "member {m}: {sent:?}");
            }
            let (trades_recorded, ..) = app.counts();
            assert_eq!(trades_recorded as usize, 2 + recorded.len() + burned_ok);
            app.assert_ledger_consistent();
            Ok(())
        })
        .unwrap();
}

on_both_backends!(
    generated_groups_grant_once_and_balance,
    a_receipt_recorded_meanwhile_elsewhere_replays_it_and_the_group_lands,
    a_receipt_over_the_balance_limit_fails_alone_in_its_group,
    receipts_of_one_group_are_posted_together_and_answered_as_alone,
    receipts_are_looked_up_together_and_each_answered_alone,
    members_are_looked_up_together_with_their_ledger_versions,
    balances_and_pages_read_together_are_those_read_alone,
    lanes_say_they_are_writing_only_while_they_are,
    groups_taking_budgets_in_opposite_orders_all_land,
    a_group_of_writes_sees_each_write_and_fails_each_alone,
    duplicates_in_one_group_are_granted_once,
    a_full_write_queue_refuses_at_once,
    a_full_write_queue_answers_503_with_retry_after,
    acknowledged_trades_survive_kill_9,
    reads_here_take_only_a_free_sqlite_connection,
    replays_and_balances_answer_alike_when_the_pool_is_busy,
);
