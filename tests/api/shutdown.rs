//! A clean stop: SIGTERM or SIGINT under load stops accepting, lets the requests in flight
//! finish, and exits 0; every acknowledged trade is in the ledger and no accepted request is cut.
//!
//! A connection the kernel completed in the instant the listening socket closes is reset before
//! the server ever sees it (TCP has no way to refuse it then): such a request must have left
//! nothing, and the server must never have handled it (no access line with its request id).

use crate::helpers::*;
use crate::instances::Instance;
use point_engine::ledger;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Outcomes {
    acknowledged: Vec<String>,
    /// Requests that got no answer: (out_trade_no, what the client saw).
    unanswered: Vec<(String, String)>,
    refused: usize,
}

fn stops_cleanly_on(signal: i32) {
    let db = TestDb::new();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let mut server = Instance::spawn_logging(
        &db,
        &shipped_rules(),
        &["--expire-interval-s", "0", "--shutdown-grace-s", "20"],
        "info",
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
    );
    server.wait_ready();
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (address, outcomes, stop) =
                (server.address.clone(), outcomes.clone(), stop.clone());
            std::thread::spawn(move || {
                // A connection per request: a kept-alive one may be closed between requests,
                // which is not a request cut.
                let agent = ureq::AgentBuilder::new()
                    .max_idle_connections(0)
                    .timeout(Duration::from_secs(30))
                    .build();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let no = format!("STOP-{c}-{i}");
                    let body = trade(&no, &format!("M{}", i % 7), &hours_ago(1));
                    let answer = agent
                        .post(&format!("{address}/v1/point-engine/trade-create"))
                        .set("Authorization", &bearer(STORE_KEY))
                        .set("X-Request-Id", &no)
                        .send_json(body);
                    let mut outcomes = outcomes.lock().unwrap();
                    match answer {
                        Ok(r) if r.status() == 200 => outcomes.acknowledged.push(no),
                        Ok(r) => panic!("{no}: {}", r.status()),
                        Err(ureq::Error::Status(status, r)) => {
                            panic!("{no}: {status} {}", r.into_string().unwrap())
                        }
                        Err(ureq::Error::Transport(t))
                            if t.kind() == ureq::ErrorKind::ConnectionFailed =>
                        {
                            // Not accepting any more: nothing was sent.
                            outcomes.refused += 1;
                            return;
                        }
                        Err(e) => {
                            outcomes.unanswered.push((no, e.to_string()));
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let pid = server.child.id() as i32;
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(25),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());
    assert!(status.success(), "exit status {status}");
    let outcomes = outcomes.lock().unwrap();
    assert!(
        outcomes.acknowledged.len() > 20,
        "{} acknowledged",
        outcomes.acknowledged.len()
    );

    let log = std::fs::read_to_string(&log_path).unwrap();
    let name = if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    assert!(
        log.contains(&format!("{name} received: stopping; no new connections, the requests in flight finish (up to 20 s)")),
        "{log}"
    );
    assert!(log.lines().last().unwrap().ends_with("] stopped"), "{log}");

    let pool = ledger::connect(&db.url, 2).unwrap();
    let mut conn = pool.get().unwrap();
    use diesel::prelude::*;
    use point_engine::ledger::schema::trades;
    let stored: std::collections::HashSet<String> = trades::table
        .select(trades::out_trade_no)
        .load(&mut conn)
        .unwrap()
        .into_iter()
        .collect();
    for no in &outcomes.acknowledged {
        assert!(
            stored.contains(no),
            "acknowledged trade {no} is not in the ledger"
        );
    }
    let report = ledger::audit::audit(&mut conn).unwrap();
    assert_eq!(report.violations, Vec::<String>::new());
}

fn sigterm_under_load_loses_nothing() {
    stops_cleanly_on(libc::SIGTERM)
}

fn sigint_is_as_graceful_as_sigterm() {
    stops_cleanly_on(libc::SIGINT)
}

on_both_backends!(
    sigterm_under_load_loses_nothing,
    sigint_is_as_graceful_as_sigterm
);
