//! HTTP load: starts the release server on a fresh database, measures `GET /health` (the HTTP
//! ceiling) and then each workload in the same run, and prints rate, latency, errors and the
//! ratio to `/health`. Loopback only; every phase is bounded in time.
//!
//! cargo build --release && cargo run --release --example load -- [--database URL]
//!     [--connections 64] [--seconds 10] [--members 10000]
//!     [--phases new,replay,burn,balance,history,mixed,history-mixed,sync]
//!     [--balance-members PREFIX:COUNT] [--rules DIR] [--history-pages 1]
//!
//! `history`: the first page of a member's movements (`…/entries`), of the members whose
//! balances are read (with `--history-pages K`: pages 1 to K, each member's in turn). `mixed`: balance reads and new receipts at once, half the connections
//! each; `history-mixed`: history pages and new receipts at once. `sync` (not run unless named):
//! new POS transaction syncs (`/tp/services/transaction`) over as many customers.
//!
//! Without `--database` the ledger is a new SQLite file in a temp folder. A PostgreSQL URL
//! must name an empty database or schema (e.g. `postgres://postgres@127.0.0.1/load`).
//! The client is a minimal keep-alive HTTP/1.1 client on blocking sockets, so that the load
//! generator costs the shared cores as little as possible.

use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONNECTIONS_MAX: usize = 512;
const SECONDS_MAX: u64 = 120;

struct Options {
    database: Option<String>,
    connections: usize,
    seconds: u64,
    members: usize,
    /// Phases to run after /health: new, replay, burn, balance, history, mixed (balances during
    /// new receipts), history-mixed (history pages during new receipts).
    phases: Vec<String>,
    /// The members whose balances are read: a prefix and a count (`M:20000` for the
    /// `backtest_history` fixture's members); by default the members the new receipts made.
    balance_members: Option<(String, usize)>,
    /// The rules folder the server prices with (default: the shipped `rules/`).
    rules: String,
    /// History pages asked for, 1 to this, every member's first page, then every member's
    /// second…: the most a server's memory of pages is asked to hold (default 1).
    history_pages: usize,
}

fn options() -> Options {
    let mut options = Options {
        database: None,
        connections: 64,
        seconds: 10,
        members: 10_000,
        phases: [
            "new",
            "replay",
            "burn",
            "balance",
            "history",
            "mixed",
            "history-mixed",
        ]
        .map(String::from)
        .to_vec(),
        balance_members: None,
        rules: concat!(env!("CARGO_MANIFEST_DIR"), "/rules").to_string(),
        history_pages: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        let number = || -> usize { value.parse().expect("a number") };
        match pair[0].as_str() {
            "--database" => options.database = Some(value.to_string()),
            "--rules" => options.rules = value.to_string(),
            "--connections" => options.connections = number().clamp(1, CONNECTIONS_MAX),
            "--seconds" => options.seconds = (number() as u64).clamp(1, SECONDS_MAX),
            "--members" => options.members = number().clamp(1, 10_000_000),
            "--history-pages" => options.history_pages = number().clamp(1, 1_000),
            "--phases" => options.phases = value.split(',').map(String::from).collect(),
            "--balance-members" => {
                let (prefix, count) = value.split_once(':').expect("PREFIX:COUNT");
                options.balance_members =
                    Some((prefix.to_string(), count.parse().expect("a number")));
            }
            other => panic!("unknown option {other}"),
        }
    }
    options
}

/// The server under test: stopped when dropped.
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The key the load sends (`Authorization: Bearer`).
const LOAD_KEY: &str = "load-example-key";

fn start_server(database: Option<&str>, rules: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database = database.map_or_else(
        || dir.path().join("load.db").display().to_string(),
        str::to_string,
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // POINT_ENGINE_BIN: another build of the server (a profiling build, say).
    let binary = std::env::var("POINT_ENGINE_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/point-engine").to_string()
    });
    // One admin key for every request (the server keeps its SHA-256).
    let clients = dir.path().join("clients.toml");
    let digest: String = sha2::Sha256::digest(LOAD_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        &clients,
        format!(
            "[[api_key]]\nname = \"load\"\nkey_sha256 = \"{digest}\"\nscopes = [\"admin\"]\n\n\
             [[pos_client]]\nname = \"load POS\"\ntoken_sha256 = \"{digest}\"\n\
             store_code = \"POS-LOAD\"\n"
        ),
    )
    .unwrap();
    let child = Command::new(&binary)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .arg("--clients")
        .arg(&clients)
        .args(["--database", &database])
        .args(["--rules", rules])
        .args(["--expire-interval-s", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} does not start ({e}): cargo build --release"));
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    let started = Instant::now();
    while Client::connect(port).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server does not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// One keep-alive connection.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16) -> Option<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_nodelay(true).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        Some(Self {
            writer: stream.try_clone().ok()?,
            reader: BufReader::new(stream),
        })
    }

    /// Sends a request and reads the whole answer: its status (0 when the connection failed).
    fn send(&mut self, method: &str, path: &str, body: &str) -> u16 {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: load\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {LOAD_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if self.writer.write_all(request.as_bytes()).is_err() {
            return 0;
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
            return 0;
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return 0;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if self.reader.read_exact(&mut body).is_err() {
            return 0;
        }
        status
    }
}

/// Answers outside 2xx, by status, and how many of each.
type Statuses = std::collections::BTreeMap<u16, usize>;

struct Outcome {
    name: &'static str,
    requests: usize,
    /// Answers outside 2xx, by status (0: the connection failed).
    errors: Statuses,
    rate: f64,
    latencies_us: Vec<u64>,
    /// CPU time the server (all of it; its ledger writer threads) spent in the phase, per
    /// request: steadier than the rate on a shared machine. `None` for phases run together.
    cpu_us_per_request: Option<(f64, f64)>,
}

/// CPU time (µs) the process `pid` and its ledger writer threads (`ledger-writer` on SQLite,
/// `ledger-lane-N` on PostgreSQL) have used so far
/// (`/proc`: utime + stime, in ticks of 1/100 s, Linux's USER_HZ).
fn cpu_us(pid: u32) -> (u64, u64) {
    let ticks = |stat: String| -> u64 {
        // The fields after the command name: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (field(11) + field(12)) * 10_000
    };
    let read = |path: String| std::fs::read_to_string(path).unwrap_or_default();
    let process = ticks(read(format!("/proc/{pid}/stat")));
    let writers = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter(|task| {
                    let name = read(format!("{}/comm", task.path().display()));
                    let name = name.trim();
                    name == "ledger-writer" || name.starts_with("ledger-lane-")
                })
                .map(|task| ticks(read(format!("{}/stat", task.path().display()))))
                .sum()
        })
        .unwrap_or(0);
    (process, writers)
}

/// The i-th request of a phase: method, path, body.
type Request<'a> = dyn Fn(usize) -> (&'static str, String, String) + Sync + 'a;

/// Runs `request(i)` (method, path, body) from `connections` connections for `seconds`.
fn phase(
    name: &'static str,
    server: Option<u32>,
    port: u16,
    connections: usize,
    seconds: u64,
    request: &Request<'_>,
) -> Outcome {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let cpu_before = server.map(cpu_us);
    let started = Instant::now();
    let results: Vec<(Vec<u64>, Statuses)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..connections)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = Client::connect(port).expect("the server answers");
                    let mut latencies = Vec::new();
                    let mut errors = Statuses::new();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (method, path, body) = request(i);
                        let sent = Instant::now();
                        let status = client.send(method, &path, &body);
                        latencies.push(sent.elapsed().as_micros() as u64);
                        if !(200..300).contains(&status) {
                            *errors.entry(status).or_default() += 1;
                            if status == 0 {
                                client = Client::connect(port).expect("the server answers");
                            }
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut errors = Statuses::new();
    for (status, count) in results.iter().flat_map(|r| &r.1) {
        *errors.entry(*status).or_default() += count;
    }
    let mut latencies_us: Vec<u64> = results.into_iter().flat_map(|r| r.0).collect();
    latencies_us.sort_unstable();
    let requests = latencies_us.len().max(1) as f64;
    let cpu_us_per_request = server.zip(cpu_before).map(|(pid, (process, writers))| {
        let (process_after, writers_after) = cpu_us(pid);
        (
            (process_after - process) as f64 / requests,
            (writers_after - writers) as f64 / requests,
        )
    });
    Outcome {
        name,
        requests: latencies_us.len(),
        errors,
        rate: latencies_us.len() as f64 / elapsed,
        latencies_us,
        cpu_us_per_request,
    }
}

fn trade_body(out_trade_no: &str, vip: &str, burn: u32) -> String {
    serde_json::json!({
        "vip_accountno": vip, "out_trade_no": out_trade_no,
        "store_code": "DP01LOAD", "invoice_id": out_trade_no,
        "total_amount": "1000.00", "payment_amount": "1000.00",
        "payment_method": "Visa", "currency": "HKD",
        "sales_time": "2026-01-20T10:00:00+08:00",
        "submit_time": "2026-01-20T10:00:00+08:00",
        "approval_time": "2026-01-20T10:00:00+08:00",
        "burn_point": burn.to_string()
    })
    .to_string()
}

/// A POS transaction sync (`/tp/services/transaction`, the realtime-transaction-sync document's
/// shape): a new transaction of a customer known by phone, HKD 1,000 of one dish.
fn sync_body(run: u32, i: usize, customer: &str) -> String {
    serde_json::json!({
        "transaction_id": format!("S{run}-{i}"),
        "customer_identifier": customer,
        "purchase_time": "2026-01-20 10:00:00",
        "purchase_amount": 1000.0,
        "coupon_detail_id": 0,
        "coupon_amount": 0,
        "wx_coupon_amount": 0,
        "gender": 1,
        "customer_nick_name": "load",
        "customer_country": "中国",
        "customer_province": "广东",
        "customer_city": "深圳",
        "goods_list": [
            {"goods_id": 1, "goods_name": "鱼香茄子", "quantity": 1, "unit_price": 1000.0}
        ],
        "coupon_id_list": []
    })
    .to_string()
}

fn main() {
    let options = options();
    let server = start_server(options.database.as_deref(), &options.rules);
    let (port, conns, seconds, members) = (
        server.port,
        options.connections,
        options.seconds,
        options.members,
    );
    let pid = Some(server.child.id());
    let run = std::process::id();
    let created = AtomicUsize::new(0);
    let mut outcomes = vec![phase("GET /health", pid, port, conns, seconds, &|_| {
        ("GET", "/health".into(), String::new())
    })];
    let wanted = |name: &str| options.phases.iter().any(|p| p == name);
    if wanted("new") {
        outcomes.push(phase(
            "trade-create, new receipts",
            pid,
            port,
            conns,
            seconds,
            &|i| {
                created.fetch_max(i + 1, Ordering::Relaxed);
                let no = format!("L{run}-{i}");
                let vip = format!("LOAD-{}", i % members);
                (
                    "POST",
                    "/v1/point-engine/trade-create".into(),
                    trade_body(&no, &vip, 0),
                )
            },
        ));
    }
    if wanted("sync") {
        outcomes.push(phase(
            "transaction sync (POS), new transactions",
            pid,
            port,
            conns,
            seconds,
            &|i| {
                let customer = format!("13{:09}", i % members);
                (
                    "POST",
                    "/tp/services/transaction".into(),
                    sync_body(run, i, &customer),
                )
            },
        ));
    }
    let known = created.load(Ordering::Relaxed).max(1);
    if wanted("replay") {
        outcomes.push(phase(
            "trade-create, replays",
            pid,
            port,
            conns,
            seconds,
            &|i| {
                let i = i % known;
                let no = format!("L{run}-{i}");
                let vip = format!("LOAD-{}", i % members);
                (
                    "POST",
                    "/v1/point-engine/trade-create".into(),
                    trade_body(&no, &vip, 0),
                )
            },
        ));
    }
    if wanted("burn") {
        outcomes.push(phase(
            "trade-create, burns, 1,000 members",
            pid,
            port,
            conns,
            seconds,
            &|i| {
                // Each earns 100 points and burns 1: members with a growing history.
                let no = format!("B{run}-{i}");
                let vip = format!("LOAD-{}", i % 1000);
                (
                    "POST",
                    "/v1/point-engine/trade-create".into(),
                    trade_body(&no, &vip, 1),
                )
            },
        ));
    }
    let (balance_prefix, balance_count) = options
        .balance_members
        .clone()
        .unwrap_or(("LOAD-".to_string(), members.min(known)));
    let balance = |i: usize| {
        let vip = format!("{balance_prefix}{}", i % balance_count);
        (
            "GET",
            format!("/v1/point-engine/members/{vip}/balance"),
            String::new(),
        )
    };
    // A member's newest movements at the default size: the first page, or with
    // `--history-pages` every member's first page, then every member's second…
    let history_pages = options.history_pages;
    let history = |i: usize| {
        let vip = format!("{balance_prefix}{}", i % balance_count);
        let page = (i / balance_count) % history_pages + 1;
        (
            "GET",
            format!("/v1/point-engine/members/{vip}/entries?page={page}"),
            String::new(),
        )
    };
    if wanted("balance") {
        outcomes.push(phase("GET balance", pid, port, conns, seconds, &balance));
    }
    if wanted("history") {
        outcomes.push(phase(
            "GET history page",
            pid,
            port,
            conns,
            seconds,
            &history,
        ));
    }
    // Reads on half the connections while new receipts come in on the other half.
    let during_writes = |label: &'static str, read: &Request<'_>, tag: &'static str| {
        std::thread::scope(|scope| {
            let reads = scope.spawn(|| phase(label, None, port, conns / 2, seconds, read));
            let writes = scope.spawn(|| {
                phase(
                    "trade-create, during reads",
                    None,
                    port,
                    conns / 2,
                    seconds,
                    &|i| {
                        let no = format!("{tag}{run}-{i}");
                        let vip = format!("LOAD-{}", i % members);
                        (
                            "POST",
                            "/v1/point-engine/trade-create".into(),
                            trade_body(&no, &vip, 0),
                        )
                    },
                )
            });
            [reads.join().unwrap(), writes.join().unwrap()]
        })
    };
    if wanted("mixed") {
        outcomes.extend(during_writes("GET balance, during writes", &balance, "X"));
    }
    if wanted("history-mixed") {
        outcomes.extend(during_writes(
            "GET history page, during writes",
            &history,
            "Y",
        ));
    }
    let peak_rss_kb = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<u64>().ok());
    let health = outcomes[0].rate;
    println!(
        "{} connections, {seconds} s a phase, database {}",
        conns,
        options.database.as_deref().unwrap_or("SQLite (temp file)")
    );
    if let Some(kb) = peak_rss_kb {
        println!("server peak resident memory: {} MB", kb / 1024);
    }
    println!(
        "| workload | requests | rate /s | ratio to /health | p50 ms | p99 ms | max ms | errors \
         | server CPU µs a request | ledger writer CPU µs a request |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for o in &outcomes {
        let pct = |p: f64| {
            let l = &o.latencies_us;
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let (server_cpu, writer_cpu) = match o.cpu_us_per_request {
            Some((server, writer)) => (format!("{server:.0}"), format!("{writer:.0}")),
            None => ("(phases together)".to_string(), String::new()),
        };
        println!(
            "| {} | {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.1} | {} | {server_cpu} | {writer_cpu} |",
            o.name,
            o.requests,
            o.rate,
            o.rate / health,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            o.errors.values().sum::<usize>()
        );
    }
    for o in outcomes.iter().filter(|o| !o.errors.is_empty()) {
        let statuses: Vec<String> = o
            .errors
            .iter()
            .map(|(status, count)| format!("{count} × {status}"))
            .collect();
        println!(
            "errors of {}: {} (0: connection failed)",
            o.name,
            statuses.join(", ")
        );
    }
    drop(server);
}
