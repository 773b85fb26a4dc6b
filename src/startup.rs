//! Building and running the server. `Application::build` binds its own listener, so tests can
//! start the real server on port 0.

use crate::config::{Cli, Command, KeysCommand, Report, ReportArgs, RulesCommand, Settings};
use crate::ledger::{self, Store};
use crate::rules::live::{folder_stamp, Reloaded};
use crate::rules::{self, LiveRules};
use crate::state::AppState;
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Config(String),
    #[error("the rules do not load:\n{0}")]
    Rules(#[from] rules::LoadError),
    #[error(transparent)]
    Database(#[from] ledger::connection::ConnectError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error("the ledger is inconsistent: {0} violations")]
    Inconsistent(usize),
    #[error("the ledger failed; nothing of the failed transaction was written: {0}")]
    Ledger(#[from] crate::service::ServiceError),
}

/// Blocking threads an HTTP worker keeps at most (actix-web's default is 512 over the workers).
/// A blocking thread runs a handler's database work (on PostgreSQL all of it, after a turn at
/// the pool: twice the pool's connections at once), a long SQLite read, or an adapter's write
/// waiting for its group's commit. More threads than that only wait, and each thread that has
/// run keeps its own allocator pages: without a bound, load at 64 connections on PostgreSQL grew
/// the server to 69 threads in 25 s, on the way to actix-web's 512 (measured 2026-12-04).
fn blocking_threads_a_worker_max(pool_size: u32) -> usize {
    turns_at_the_pool(pool_size).max(BLOCKING_THREADS_A_WORKER_MIN)
}

/// PostgreSQL: requests' turns at the pool at once (`AppState::pool_turns`), twice its
/// connections.
fn turns_at_the_pool(pool_size: u32) -> usize {
    2 * pool_size as usize
}

/// PostgreSQL with writer lanes: balance and history reads at once while a lane is writing
/// (`AppState::read_turns_beside_lanes`), so that the lanes and the reads keep no more of
/// PostgreSQL's backends busy than the pool has connections. Without it the pool's backends,
/// always runnable under heavy reads, took the cores from the lanes' two (measured, 2 cores,
/// 32 callers reading and 32 writing: new receipts 360–935/s, p99 0.5–1.5 s; with it, in 9
/// runs of 10, 1,800–2,600/s, p99 30–45 ms (twice 136–173), and reads 1,350–2,600/s, p99
/// 33–55 ms; fewer turns favoured the receipts more: 4, reads 760–3,200/s; 2, reads 490/s,
/// p99 130 ms).
fn reads_beside_lanes(pool_size: u32, lanes: usize) -> usize {
    (pool_size as usize).saturating_sub(lanes).max(1)
}

/// Enough for SQLite's adapters' writes (each waits on a blocking thread for its group's
/// commit) to fill a group at full rate.
const BLOCKING_THREADS_A_WORKER_MIN: usize = 32;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        let stamp = folder_stamp(&settings.rules_dir);
        let sources = rules::read_dir(&settings.rules_dir)?;
        let ruleset = rules::from_sources(&sources)?;
        log::info!(
            "rules {} loaded from {}: program {:?}, {} campaigns",
            ruleset.version,
            settings.rules_dir.display(),
            ruleset.program.name,
            ruleset.campaigns.len()
        );
        for alert in ruleset.alerts() {
            log::warn!("rules {}: {alert}", ruleset.version);
        }
        if settings.insecure_no_auth {
            log::warn!(
                "--insecure-no-auth: the native API takes every caller without a key: anyone \
                 who reaches {} can grant points and read every member's data",
                settings.bind
            );
        } else if settings.clients.api_keys.is_empty() {
            if !settings.bind.ip().is_loopback() {
                return Err(StartupError::Config(format!(
                    "refusing to listen on {} with no API keys: every native call would be \
                     refused. Create a key with `point-engine keys create --name NAME --scope \
                     admin --append config/clients.toml` and start with --clients \
                     config/clients.toml (or, on a private network only, --insecure-no-auth)",
                    settings.bind
                )));
            }
            log::warn!(
                "no API keys: the native API refuses every call (401). Create one with \
                 `point-engine keys create --name NAME --scope admin --append \
                 config/clients.toml` and start with --clients config/clients.toml"
            );
        }
        if !settings.clients.discount_card.is_empty()
            && settings.clients.wechatpay_platform.is_none()
        {
            log::warn!(
                "discount-card answers are not signed: the clients file has merchants but no \
                 [wechatpay_platform] key, and WeChat Pay SDKs (wechatpayv3, \
                 wechatpay-axios-plugin) report an unsigned success as a failure"
            );
        }
        // The port first: a port in use is said before a database is created or migrated.
        let bind_error = |source| StartupError::Bind {
            addr: settings.bind.to_string(),
            source,
        };
        let listener = TcpListener::bind(settings.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        // Kept to close the listening socket first on SIGTERM (see `spawn_stop_on_signals`).
        let stop_listening = listener.try_clone().map_err(bind_error)?;
        let store = Store::open(&settings.database, settings.pool_size, settings.writer)?
            .remembering(settings.recent_trades_max)
            .keeping_balances(settings.balances_lots_max)
            .keeping_pages(settings.history_movements_max)
            .answers_memory(settings.answers_memory_bytes_max);
        log::info!("ledger at {}", settings.database);
        crate::service::save_ruleset(&store, &ruleset, &sources)?;
        let telemetry = Arc::new(crate::telemetry::Telemetry::new());
        spawn_metrics_upkeep(telemetry.clone());
        if settings.expire_interval_s > 0 {
            spawn_expiry_task(
                store.clone(),
                telemetry.clone(),
                Duration::from_secs(u64::from(settings.expire_interval_s)),
            );
        }
        let live = Arc::new(LiveRules::new(settings.rules_dir.clone(), ruleset, stamp));
        spawn_rules_watch(
            live.clone(),
            store.clone(),
            telemetry.clone(),
            Some(settings.rules_reload_interval_ms)
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(u64::from(ms))),
        );
        let postgres = matches!(settings.database, ledger::DatabaseUrl::Postgres(_));
        let lanes = store.writer.lanes();
        let state = web::Data::new(AppState {
            store,
            rules: live,
            clock_skew_s_max: settings.clock_skew_s_max,
            card_count_max: settings.card_count_max,
            body_bytes_max: settings.body_bytes_max,
            refund_shortfall_policy: settings.refund_shortfall_policy,
            point_cost: settings.point_cost,
            clients: settings.clients.clone(),
            insecure_no_auth: settings.insecure_no_auth,
            pool_turns: postgres
                .then(|| tokio::sync::Semaphore::new(turns_at_the_pool(settings.pool_size))),
            read_turns_beside_lanes: (postgres && lanes > 0).then(|| {
                tokio::sync::Semaphore::new(reads_beside_lanes(settings.pool_size, lanes))
            }),
            telemetry,
            rate_limiter: settings.rate_limit.map(|limit| {
                log::info!(
                    "rate limit: {} requests a second per caller, {} at once",
                    limit.per_s,
                    limit.burst
                );
                crate::http::rate_limit::RateLimiter::new(limit)
            }),
        });
        let body_bytes_max = settings.body_bytes_max;
        let blocking_threads_max = blocking_threads_a_worker_max(settings.pool_size);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    crate::http::access::log_access,
                ))
                .app_data(state.clone())
                .configure(|cfg| crate::http::routes(cfg, body_bytes_max))
        })
        .workers(settings.workers)
        .worker_max_blocking_threads(blocking_threads_max)
        // SIGTERM and SIGINT are handled below, both gracefully.
        .disable_signals()
        .shutdown_timeout(u64::from(settings.shutdown_grace_s))
        .listen(listener)
        .map_err(bind_error)?
        .run();
        spawn_stop_on_signals(server.handle(), stop_listening, settings.shutdown_grace_s);
        Ok(Self { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (tests stop theirs so the pool closes its connections).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// SIGTERM or SIGINT: stop accepting connections, finish the requests in flight (and so their
/// ledger writes) for up to `grace_s` seconds, then stop. A second signal stops at once.
///
/// The listening socket is shut first, so a new connection is refused at once, while the
/// workers still take up the connections already accepted for them (actix drops those a
/// stopping worker has not started); then the server stops, finishing what it runs.
fn spawn_stop_on_signals(
    server: actix_web::dev::ServerHandle,
    listener: TcpListener,
    grace_s: u32,
) {
    #[cfg(unix)]
    actix_web::rt::spawn(async move {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let (signals, mut received) = tokio::sync::mpsc::unbounded_channel();
        for (kind, name) in [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::interrupt(), "SIGINT"),
        ] {
            let Ok(mut stream) = signal(kind) else {
                log::warn!("{name} cannot be watched: it stops the server abruptly");
                continue;
            };
            let signals = signals.clone();
            actix_web::rt::spawn(async move {
                while stream.recv().await.is_some() {
                    if signals.send(name).is_err() {
                        return;
                    }
                }
            });
        }
        for graceful in [true, false] {
            let Some(name) = received.recv().await else {
                return;
            };
            match graceful {
                true => {
                    log::info!(
                        "{name} received: stopping; no new connections, the requests in \
                         flight finish (up to {grace_s} s)"
                    );
                    use std::os::fd::AsRawFd;
                    LISTENER_SHUT.store(true, std::sync::atomic::Ordering::Relaxed);
                    // SAFETY: shutdown(2) of a socket this process owns; the fd stays open.
                    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
                    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
                }
                false => log::warn!("{name} received again: stopping now"),
            }
            let server = server.clone();
            // Not awaited: the stop completes when the server's future does.
            actix_web::rt::spawn(async move { server.stop(graceful).await });
        }
    });
    #[cfg(not(unix))]
    let _ = (server, listener, grace_s);
}

/// Folds the latency histograms' samples in every few seconds.
fn spawn_metrics_upkeep(telemetry: Arc<crate::telemetry::Telemetry>) {
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(Duration::from_secs(5));
        loop {
            ticks.tick().await;
            telemetry.upkeep();
        }
    });
}

/// Expires due lots every `interval`, off the request threads. Every instance may run it: the
/// expiry is idempotent.
fn spawn_expiry_task(
    store: Store,
    telemetry: Arc<crate::telemetry::Telemetry>,
    interval: Duration,
) {
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(interval);
        loop {
            ticks.tick().await;
            let store = store.clone();
            match web::block(move || crate::service::expire_due(&store, chrono::Utc::now())).await {
                Ok(Ok(expired)) if expired.lots > 0 => {
                    telemetry.points("expired", expired.points);
                    log::info!("expired {} points in {} lots", expired.points, expired.lots)
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::warn!("expiry task: {e}"),
                Err(e) => log::warn!("expiry task: {e}"),
            }
        }
    });
}

/// Reloads the rules when a file in the folder changes (polled every `interval`, if any) and on
/// SIGHUP.
/// The new set is compiled aside, stored in the ledger by version, then swapped in; a broken
/// set is logged with its errors and the old one keeps serving.
fn spawn_rules_watch(
    live: Arc<LiveRules>,
    store: Store,
    telemetry: Arc<crate::telemetry::Telemetry>,
    interval: Option<Duration>,
) {
    let reload = move |live: Arc<LiveRules>, store: Store, why: &'static str| {
        let telemetry = telemetry.clone();
        async move {
            let outcome = web::block(move || {
                live.reload(|rules, sources| crate::service::save_ruleset(&store, rules, sources))
            })
            .await;
            match outcome {
                Ok(Ok(Reloaded::Swapped { version, campaigns })) => {
                    log::info!("rules {version} loaded ({why}): {campaigns} campaigns");
                    if campaigns == 0 {
                        log::warn!(
                            "rules {version} have NO campaigns: every trade now earns its E \
                             points only. If a campaigns file was emptied by mistake, restore it"
                        );
                    }
                }
                Ok(Ok(Reloaded::Unchanged)) => {}
                Ok(Err(errors)) => {
                    telemetry.rules_reload_failed();
                    log::error!(
                        "rules not reloaded ({why}); the running set keeps serving:\n{errors}"
                    )
                }
                Err(e) => {
                    telemetry.rules_reload_failed();
                    log::error!("rules not reloaded ({why}): {e}")
                }
            }
        }
    };
    if let Some(interval) = interval {
        let (watch_live, watch_store, watch_reload) = (live.clone(), store.clone(), reload.clone());
        actix_web::rt::spawn(async move {
            let mut ticks = actix_web::rt::time::interval(interval);
            // A change is loaded once the folder has looked the same for a whole interval, so a
            // file caught half-written (an empty campaigns file is a valid ruleset!) is not.
            let mut settling = None;
            loop {
                ticks.tick().await;
                match watch_live.changed() {
                    Some(stamp) if settling.as_ref() == Some(&stamp) => {
                        settling = None;
                        watch_reload(
                            watch_live.clone(),
                            watch_store.clone(),
                            "the folder changed",
                        )
                        .await;
                    }
                    other => settling = other,
                }
            }
        });
    }
    #[cfg(unix)]
    actix_web::rt::spawn(async move {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            log::warn!("SIGHUP cannot be watched: rules reload on file changes only");
            return;
        };
        while hangups.recv().await.is_some() {
            reload(live.clone(), store.clone(), "SIGHUP").await;
        }
    });
}

/// Set when a stop shuts the listening socket: actix's accept loop then fails once on it, an
/// error that is the stop working, not logged.
static LISTENER_SHUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs to stderr at `RUST_LOG` (default `info`); a line written while a request is handled
/// carries its request id.
pub fn init_logging() {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            if record.target() == "actix_server::accept"
                && LISTENER_SHUT.load(std::sync::atomic::Ordering::Relaxed)
                && record.level() == log::Level::Error
            {
                return Ok(());
            }
            let ts = buf.timestamp_millis();
            let level = record.level();
            match crate::http::access::current_request_id() {
                Some(id) if record.target() != "access" => writeln!(
                    buf,
                    "[{ts} {level} {}] {} request_id={id}",
                    record.target(),
                    record.args()
                ),
                _ => writeln!(buf, "[{ts} {level} {}] {}", record.target(), record.args()),
            }
        })
        .init();
}

/// Runs what the command line asks for.
pub fn run_cli(cli: Cli) -> Result<(), StartupError> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::from_args(&args).map_err(StartupError::Config)?;
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(&settings)?;
                log::info!("listening on {}:{}", settings.bind.ip(), app.port());
                app.run_until_stopped().await.map_err(StartupError::Serve)?;
                log::info!("stopped");
                Ok(())
            })
        }
        Command::Expire(args) => {
            let url = args.db.url().map_err(StartupError::Config)?;
            let now = chrono::Utc::now();
            let as_of = match &args.as_of {
                None => now,
                Some(text) => {
                    let as_of = crate::domain::trade::parse_rfc3339(text)
                        .map_err(|e| StartupError::Config(format!("--as-of {e}")))?
                        .to_utc();
                    if as_of > now {
                        return Err(StartupError::Config(format!(
                            "--as-of {text} is in the future"
                        )));
                    }
                    as_of
                }
            };
            let store = Store::open(&url, 1, Default::default())?;
            let bar = spinner("expire");
            let expired = crate::service::expire_due_with(&store, as_of, &mut |total| {
                bar.set_message(format!("{} points in {} lots", total.points, total.lots))
            });
            bar.finish_and_clear();
            let expired = expired.map_err(|e| StartupError::Config(e.to_string()))?;
            println!(
                "expired {} points in {} lots as of {}",
                expired.points,
                expired.lots,
                as_of.to_rfc3339()
            );
            Ok(())
        }
        Command::Report(args) => run_report(args),
        Command::Keys(command) => run_keys(command),
        Command::Rules(command) => run_rules(command),
        Command::Backup { db, to } => run_backup(&db, &to),
        Command::MigrateTo { target, db } => run_migrate_to(&db, &target),
        Command::Probe { url, timeout_ms } => {
            let status = probe(&url, Duration::from_millis(timeout_ms))
                .map_err(|e| StartupError::Config(format!("{url}: {e}")))?;
            if status != 200 {
                return Err(StartupError::Config(format!("{url} answered {status}")));
            }
            println!("{url}: 200");
            Ok(())
        }
        Command::Audit(db) => {
            let url = db.url().map_err(StartupError::Config)?;
            let store = existing_ledger(&url)?;
            let bar = spinner("audit");
            bar.set_message("checking every invariant");
            let report = crate::service::audit(&store);
            bar.finish_and_clear();
            let report = report?;
            let counts = format!(
                "{} trades, {} lots, {} entries",
                report.trades, report.lots, report.entries
            );
            if report.is_consistent() {
                println!("ledger consistent: {counts}");
                return Ok(());
            }
            println!(
                "ledger INCONSISTENT: {} violations in {counts}",
                report.violations.len()
            );
            for violation in &report.violations {
                println!("{violation}");
            }
            Err(StartupError::Inconsistent(report.violations.len()))
        }
    }
}

/// `point-engine backup`: a consistent copy of a SQLite ledger, audited before it is called
/// good.
fn run_backup(db: &crate::config::DatabaseArg, to: &std::path::Path) -> Result<(), StartupError> {
    let url = db.url().map_err(StartupError::Config)?;
    if let ledger::DatabaseUrl::Postgres(_) = url {
        return Err(StartupError::Config(
            "backup copies a SQLite ledger; back up PostgreSQL with pg_dump: \
             pg_dump --format=custom --file=ledger.dump postgres://…"
                .to_string(),
        ));
    }
    if to.exists() {
        return Err(StartupError::Config(format!(
            "--to {} exists already: back up to a new file",
            to.display()
        )));
    }
    let store = existing_ledger(&url)?;
    let mut conn = store
        .pool
        .get()
        .map_err(|e| StartupError::Config(e.to_string()))?;
    ledger::backup_sqlite(&mut conn, to)
        .map_err(|e| StartupError::Config(format!("backup to {}: {e}", to.display())))?;
    drop(conn);
    let copy = existing_ledger(&ledger::DatabaseUrl::Sqlite(to.to_path_buf()))?;
    let report = crate::service::audit(&copy)?;
    if !report.is_consistent() {
        for violation in &report.violations {
            println!("{violation}");
        }
        return Err(StartupError::Inconsistent(report.violations.len()));
    }
    println!(
        "backup written to {}: {} trades, {} lots, {} entries, audit consistent",
        to.display(),
        report.trades,
        report.lots,
        report.entries
    );
    Ok(())
}

/// `point-engine migrate-to postgres://…`: the SQLite ledger copied into an empty PostgreSQL
/// ledger, then both audited and their rows counted table by table.
fn run_migrate_to(db: &crate::config::DatabaseArg, target: &str) -> Result<(), StartupError> {
    let source_url = db.url().map_err(StartupError::Config)?;
    let ledger::DatabaseUrl::Sqlite(_) = source_url else {
        return Err(StartupError::Config(
            "migrate-to copies a SQLite ledger (--database); this one is PostgreSQL already"
                .to_string(),
        ));
    };
    let target_url = ledger::DatabaseUrl::parse(target)
        .map_err(|e| StartupError::Config(format!("the target: {e}")))?;
    let ledger::DatabaseUrl::Postgres(_) = target_url else {
        return Err(StartupError::Config(
            "the target must be a postgres:// URL".to_string(),
        ));
    };
    let source = existing_ledger(&source_url)?;
    let target = Store::open(&target_url, 1, Default::default())?;
    let connection = |store: &Store| {
        store
            .pool
            .get()
            .map_err(|e| StartupError::Config(format!("no connection: {e}")))
    };
    let bar = spinner("migrate-to");
    bar.set_message("copying every row");
    let copied =
        ledger::copy::sqlite_to_postgres(&mut *connection(&source)?, &mut *connection(&target)?);
    bar.finish_and_clear();
    let copied = copied.map_err(|e| StartupError::Config(format!("nothing was copied: {e}")))?;
    for (table, rows) in &copied {
        println!("{table}: {rows} rows");
    }
    let counts = |store: &Store| {
        ledger::copy::row_counts(&mut *connection(store)?)
            .map_err(|e| StartupError::Config(format!("counting rows: {e}")))
    };
    let (in_source, in_target) = (counts(&source)?, counts(&target)?);
    if in_source != in_target {
        return Err(StartupError::Config(format!(
            "the copy differs from the source (stop the server before migrating): \
             source {in_source:?}, target {in_target:?}"
        )));
    }
    for (name, store) in [("source", &source), ("target", &target)] {
        let report = crate::service::audit(store)?;
        if !report.is_consistent() {
            for violation in &report.violations {
                println!("{name}: {violation}");
            }
            return Err(StartupError::Inconsistent(report.violations.len()));
        }
    }
    println!(
        "copied to {}: every table has the source's rows, both audits consistent",
        target_url
    );
    Ok(())
}

/// The status a plain HTTP/1.1 GET of `url` answers, within `timeout` (each of connect, write,
/// read).
fn probe(url: &str, timeout: Duration) -> Result<u16, String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let address = with_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| {
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
            )
        })
        .map_err(|e| e.to_string())?;
    // The status line is all that is needed: "HTTP/1.1 200 OK".
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    std::str::from_utf8(&head[..read])
        .ok()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|line| line.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| "not an HTTP answer".to_string())
}

/// A spinner on stderr for long CLI work: drawn only when stderr is a terminal (indicatif hides
/// it otherwise), so scripts and pipes see the output alone.
fn spinner(what: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what}: {{msg}} ({{elapsed}})"
        ))
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Clears a progress bar when the work ends, however it ends.
struct ClearOnDrop<'a>(&'a indicatif::ProgressBar);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// The ledger a read-only command (audit, report, backtest) reads: it must exist already. (Only
/// `serve` and `expire` create and migrate a new one.)
fn existing_ledger(url: &ledger::DatabaseUrl) -> Result<Store, StartupError> {
    if let ledger::DatabaseUrl::Sqlite(path) = url {
        if !path.exists() {
            return Err(StartupError::Config(format!(
                "no ledger at {}: check --database (point-engine serve creates one)",
                path.display()
            )));
        }
    }
    Ok(Store::open(url, 1, Default::default())?)
}

fn print_json(value: &impl serde::Serialize) {
    print!("{}", json_text(value));
}

/// Pretty JSON and a line end, as the CLI prints it.
fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("reports serialize") + "\n"
}

fn cli_instant(flag: &str, raw: &str) -> Result<chrono::DateTime<chrono::Utc>, StartupError> {
    crate::domain::trade::parse_rfc3339(raw)
        .map(|t| t.to_utc())
        .map_err(|e| StartupError::Config(format!("--{flag} {e}")))
}

/// `point-engine report ...`: the same numbers as the endpoints, on standard output.
fn run_keys(command: KeysCommand) -> Result<(), StartupError> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            append,
        } => {
            let (key, lines) =
                crate::clients::new_api_key(&name, &scopes).map_err(StartupError::Config)?;
            match append {
                None => {
                    println!("{key}");
                    println!();
                    println!(
                        "# The key above is shown once: point-engine keeps only its SHA-256. Add \
                         these lines to the clients file (serve --clients FILE):"
                    );
                    print!("{lines}");
                }
                Some(path) => {
                    let old = match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                        Err(e) => {
                            return Err(StartupError::Config(format!("{}: {e}", path.display())))
                        }
                    };
                    let separator = match old.is_empty() || old.ends_with("\n\n") {
                        true => "",
                        false if old.ends_with('\n') => "\n",
                        false => "\n\n",
                    };
                    let new = format!("{old}{separator}{lines}");
                    // The file must still load, with the new key in it, before it is written.
                    let folder = path.parent().unwrap_or(std::path::Path::new("."));
                    crate::clients::Clients::parse_in(&new, folder)
                        .map_err(|e| StartupError::Config(format!("{}: {e}", path.display())))?;
                    std::fs::write(&path, new)
                        .map_err(|e| StartupError::Config(format!("{}: {e}", path.display())))?;
                    eprintln!(
                        "api_key {name:?} added to {}; the key, shown once, is on stdout. \
                         Restart the server to admit it.",
                        path.display()
                    );
                    println!("{key}");
                }
            }
            Ok(())
        }
        KeysCommand::WechatpayPublicKey { clients } => {
            let clients = crate::clients::Clients::load(&clients).map_err(StartupError::Config)?;
            let platform = clients.wechatpay_platform.ok_or_else(|| {
                StartupError::Config(
                    "the clients file has no [wechatpay_platform] (public_key_id and \
                     private_key_file)"
                        .into(),
                )
            })?;
            // The PEM alone on stdout, so `> platform_public_key.pem` is the file to hand over.
            eprintln!("public_key_id: {}", platform.public_key_id);
            print!("{}", platform.public_key_pem);
            Ok(())
        }
    }
}

fn run_report(args: ReportArgs) -> Result<(), StartupError> {
    use crate::ledger::report::{check_period, GroupBy};
    let config = StartupError::Config;
    let url = args.db.url().map_err(config)?;
    let rules = rules::load_dir(&args.rules)?;
    let store = existing_ledger(&url)?;
    let now = chrono::Utc::now();
    let csv = args.format == "csv";
    // Shown while a report reads a large ledger; gone before the report is printed.
    let bar = spinner("report");
    bar.set_message("reading the ledger");
    let _clear = ClearOnDrop(&bar);
    let out;
    match args.report {
        Report::Liability { as_of } => {
            let as_of = match as_of {
                Some(raw) => cli_instant("as-of", &raw)?,
                None => now,
            };
            check_period(as_of, as_of, now).map_err(|e| config(format!("--as-of {}", e.1)))?;
            let report =
                crate::service::liability_report(&store, &rules, as_of, now, args.point_cost)?;
            if csv {
                out = report.to_csv();
            } else {
                out = json_text(&report);
            }
        }
        Report::Movements { from, to, by } => {
            let from = cli_instant("from", &from)?;
            // A period reaching past now (the year to date, say) runs up to now.
            let to = match to {
                Some(raw) => cli_instant("to", &raw)?.min(now),
                None => now,
            };
            check_period(from, to, now).map_err(|(f, e)| config(format!("--{f} {e}")))?;
            let by = GroupBy::parse(&by).map_err(|e| config(format!("--by {e}")))?;
            let report = crate::service::movements_report(
                &store,
                &rules,
                from,
                to,
                by,
                args.point_cost,
                now,
            )?;
            if csv {
                out = report.to_csv();
            } else {
                out = json_text(&report);
            }
        }
        Report::Entries { .. } | Report::Trade { .. } if csv => {
            return Err(config(
                "--format csv is for liability and movements; entries and trade print JSON".into(),
            ));
        }
        Report::Entries {
            vip_accountno,
            page,
            page_size,
        } => {
            let vip = crate::domain::VipAccountNo::parse(&vip_accountno)
                .map_err(|e| config(format!("vip_accountno {e}")))?;
            let max = ledger::history::PAGE_SIZE_MAX;
            if page < 1 || !(1..=max).contains(&page_size) {
                return Err(config(format!(
                    "--page must be at least 1 and --page-size from 1 to {max}"
                )));
            }
            let history = {
                let conn = &mut *store
                    .pool
                    .get()
                    .map_err(crate::service::ServiceError::from)?;
                crate::service::member_history(conn, &vip, page, page_size, &store.pages)?
            }
            .ok_or_else(|| config(format!("member {vip} not found")))?;
            out = json_text(&crate::http::history::HistoryData::new(
                &vip, page, page_size, history,
            ));
        }
        Report::Trade { number } => {
            let detail = crate::service::trade_detail(&store, &number)?
                .ok_or_else(|| config(format!("trade {number} not found")))?;
            let data = crate::http::history::TradeData::try_from(detail).map_err(config)?;
            out = json_text(&data);
        }
    }
    bar.finish_and_clear();
    print!("{out}");
    Ok(())
}

/// `point-engine rules ...`.
fn run_rules(command: RulesCommand) -> Result<(), StartupError> {
    let config = StartupError::Config;
    match command {
        RulesCommand::Check { dir, rules } => {
            let dir = dir.or(rules).unwrap_or_else(|| "rules/".into());
            let rules = rules::load_dir(&dir)?;
            for warning in rules.lint(chrono::Utc::now()) {
                println!("warning: {warning}");
            }
            let failures = rules.run_tests();
            for failure in &failures {
                println!("FAILED: {failure}");
            }
            if !failures.is_empty() {
                return Err(config(format!(
                    "{} of {} rule tests failed",
                    failures.len(),
                    rules.tests.len()
                )));
            }
            println!(
                "ok: rules {} in {}: {} campaigns, {} objectives, {} tests passed",
                rules.version,
                dir.display(),
                rules.campaigns.len(),
                rules.objectives.len(),
                rules.tests.len()
            );
            Ok(())
        }
        RulesCommand::Explain { trade, rules: dir } => {
            let rules = rules::load_dir(&dir)?;
            let text = std::fs::read_to_string(&trade)
                .map_err(|e| config(format!("{}: {e}", trade.display())))?;
            let request: crate::http::trade_create::TradeCreateRequest =
                serde_json::from_str(&text).map_err(|e| {
                    config(format!("{}: not a trade-create body: {e}", trade.display()))
                })?;
            let trade = request
                .into_trade(chrono::Utc::now(), u32::MAX)
                .map_err(|e| config(e.to_string()))?;
            let (priced, explanation) = rules
                .explain(&trade, &crate::domain::MemberContext::default())
                .map_err(|e| config(e.to_string()))?;
            print_json(&serde_json::json!({
                "ruleset_version": rules.version,
                "total_point": priced.grants.iter().map(|g| g.points.value()).sum::<i64>(),
                "detail": priced.grants.iter().map(crate::http::trade_create::GrantDetail::from).collect::<Vec<_>>(),
                "e_point": explanation.e_points,
                "spend_base": explanation.spend_base,
                "campaigns": explanation.campaigns,
            }));
            Ok(())
        }
        RulesCommand::Backtest {
            rules: dir,
            from,
            to,
            db,
        } => {
            let draft = rules::load_dir(&dir)?;
            let url = db.url().map_err(config)?;
            let store = existing_ledger(&url)?;
            let now = chrono::Utc::now();
            let from = match from {
                Some(raw) => cli_instant("from", &raw)?,
                None => chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            };
            // A period reaching past now (the year to date, say) runs up to now.
            let to = match to {
                Some(raw) => cli_instant("to", &raw)?.min(now),
                None => now,
            };
            if from > to {
                return Err(config("--from is after --to".into()));
            }
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "backtest [{bar:40}] {pos}/{len} trades, {elapsed} (eta {eta})",
                )
                .expect("a valid template")
                .progress_chars("#>-"),
            );
            let mut progress = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            let report = crate::service::backtest(&store, &draft, from, to, &mut progress);
            bar.finish_and_clear();
            print_json(&report?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beside_writer_lanes_leave_the_lanes_their_share_of_the_pool() {
        assert_eq!(reads_beside_lanes(8, 2), 6);
        assert_eq!(reads_beside_lanes(2, 2), 1);
        assert_eq!(reads_beside_lanes(1, 64), 1);
    }

    #[test]
    fn a_worker_keeps_enough_blocking_threads_for_its_turns_and_no_more_than_it_needs() {
        // PostgreSQL's turns at the pool are twice its connections: one worker may hold them all.
        assert_eq!(turns_at_the_pool(64), 128);
        assert_eq!(blocking_threads_a_worker_max(64), 128);
        assert_eq!(blocking_threads_a_worker_max(256), 512);
        // The default pool (8): enough for SQLite's adapters to fill a group.
        assert_eq!(
            blocking_threads_a_worker_max(8),
            BLOCKING_THREADS_A_WORKER_MIN
        );
        assert_eq!(
            blocking_threads_a_worker_max(1),
            BLOCKING_THREADS_A_WORKER_MIN
        );
    }
}
