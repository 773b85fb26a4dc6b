//! Configuration: the command line (each flag with an environment variable), loaded once into
//! a typed `Settings` and passed down.

use crate::domain::ShortfallPolicy;
use crate::ledger::DatabaseUrl;
use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "point-engine",
    version,
    about = "A loyalty points engine: receipts in, points out."
)]
pub struct Cli {
    /// A TOML file of settings named as the flags (docs/operations.md).
    ///
    /// Each setting is named as its flag (`database = "…"`, `pool_size = 16`,
    /// `insecure_no_auth = true`). The command line wins over the environment, the environment
    /// over the file, the file over the defaults. Settings other commands take are ignored;
    /// unknown ones are refused.
    #[arg(long, global = true, env = "POINT_ENGINE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line, with the config file's settings (`--config` or
    /// `POINT_ENGINE_CONFIG`) filled in where neither a flag nor its environment variable gives
    /// one.
    pub fn from_command_line(
        args: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Self, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let args: Vec<std::ffi::OsString> = args.into_iter().collect();
        let mut command = every_arg_overrides_itself(Self::command());
        // First as given: --help, --version and mistakes are answered as clap answers them.
        let given = Self::from_arg_matches(&command.try_get_matches_from_mut(&args)?)?;
        let Some(file) = given.config else {
            return Ok(given);
        };
        let settings = read_config_file(&file)
            .map_err(|e| command.error(clap::error::ErrorKind::InvalidValue, e))?;
        command.build();
        let env_is_set = |name: &std::ffi::OsStr| std::env::var_os(name).is_some();
        let args = with_config_settings(&command, args, &settings, &file, &env_is_set)
            .map_err(|e| command.error(clap::error::ErrorKind::UnknownArgument, e))?;
        Self::from_arg_matches(&command.try_get_matches_from_mut(args)?)
    }
}

/// A flag given twice keeps its last value, so the command line, which comes after the config
/// file's settings, wins.
fn every_arg_overrides_itself(command: clap::Command) -> clap::Command {
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(command.args_override_self(true), |command, name| {
            command.mut_subcommand(name, every_arg_overrides_itself)
        })
}

/// The most bytes a config file may have.
const CONFIG_FILE_BYTES_MAX: u64 = 64 * 1024;

fn read_config_file(file: &std::path::Path) -> Result<toml::Table, String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(CONFIG_FILE_BYTES_MAX + 1).read_to_string(&mut text))
        .map_err(|e| format!("--config {}: {e}", file.display()))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        return Err(format!(
            "--config {}: larger than {CONFIG_FILE_BYTES_MAX} bytes",
            file.display()
        ));
    }
    text.parse::<toml::Table>()
        .map_err(|e| format!("--config {}: {e}", file.display()))
}

/// `args` with the file's settings for the chosen command put right after the command's name,
/// before the flags given, skipping a setting whose environment variable is set.
fn with_config_settings(
    root: &clap::Command,
    args: Vec<std::ffi::OsString>,
    settings: &toml::Table,
    file: &std::path::Path,
    env_is_set: &dyn Fn(&std::ffi::OsStr) -> bool,
) -> Result<Vec<std::ffi::OsString>, String> {
    // The chosen (sub)command: the leading words that name one (a --config among them).
    let (mut command, mut at, mut word_at) = (root, 1, 1);
    while let Some(word) = args.get(word_at).and_then(|word| word.to_str()) {
        if word == "--config" {
            word_at += 2;
        } else if word.starts_with("--config=") {
            word_at += 1;
        } else if let Some(sub) = command.find_subcommand(word) {
            command = sub;
            word_at += 1;
            at = word_at;
        } else {
            break;
        }
    }
    let mut inserted: Vec<std::ffi::OsString> = Vec::new();
    for (key, value) in settings {
        let long = key.replace('_', "-");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
        else {
            if long != "config" && takes_anywhere(root, &long) {
                continue;
            }
            return Err(format!(
                "--config {}: unknown setting {key:?} (settings are named as flags: {}, …)",
                file.display(),
                ["database", "bind", "rules", "clients", "pool_size"].join(", ")
            ));
        };
        if arg.get_env().is_some_and(env_is_set) {
            continue;
        }
        let flag = std::ffi::OsString::from(format!("--{long}"));
        let values = match value {
            toml::Value::Array(items) if matches!(arg.get_action(), clap::ArgAction::Append) => {
                items.iter().collect()
            }
            toml::Value::Array(_) => {
                return Err(format!(
                    "--config {}: {key} takes one value, not a list",
                    file.display()
                ))
            }
            one => vec![one],
        };
        for value in values {
            let text = match value {
                toml::Value::String(text) => text.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(n) => n.to_string(),
                toml::Value::Boolean(on) if !arg.get_action().takes_values() => {
                    if *on {
                        inserted.push(flag.clone());
                    }
                    continue;
                }
                toml::Value::Boolean(on) => on.to_string(),
                _ => {
                    return Err(format!(
                        "--config {}: {key} must be a string, a number or true/false",
                        file.display()
                    ))
                }
            };
            inserted.push(flag.clone());
            inserted.push(text.into());
        }
    }
    let mut args = args;
    args.splice(at..at, inserted);
    Ok(args)
}

/// Whether some command takes the flag (a setting the file holds for another command).
fn takes_anywhere(command: &clap::Command, long: &str) -> bool {
    command.get_arguments().any(|a| a.get_long() == Some(long))
        || command.get_subcommands().any(|s| takes_anywhere(s, long))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Write expire entries for every lot past its expiry date, then exit.
    Expire(ExpireArgs),
    /// Check every ledger invariant; exit non-zero and print the offending rows on a violation.
    Audit(DatabaseArg),
    /// Copy a SQLite ledger, consistent while the server writes, to a new file, and audit the
    /// copy. (PostgreSQL: use pg_dump.)
    Backup {
        #[command(flatten)]
        db: DatabaseArg,
        /// The file to write; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Move a SQLite ledger to PostgreSQL: migrate the target (an empty database), copy every
    /// row in one transaction from one snapshot, then audit both and compare them. Stop the
    /// server first, so no trade lands in the old ledger after the copy.
    MigrateTo {
        /// The target: postgres://user:password@host:port/database (it must exist; createdb).
        target: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Ask a running server whether it is ready (GET /ready: the ledger answers); exit 0 if it
    /// answers 200, 1 otherwise. For container health checks, where there is no curl.
    Probe {
        /// The URL to ask (http only).
        #[arg(long, default_value = "http://127.0.0.1:8080/ready")]
        url: String,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        timeout_ms: u64,
    },
    /// Finance reports and queries, printed as JSON (the endpoint's `data`) or CSV.
    Report(ReportArgs),
    /// API keys of the native API.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tools for the people who write rules: check, explain, backtest.
    #[command(subcommand)]
    Rules(RulesCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum RulesCommand {
    /// Parse and lint a rules folder and run its [[test]] receipts; exit 1 on an error or a
    /// failing test. Warnings (past windows, impossible or shadowed campaigns) do not fail.
    Check {
        /// The rules folder (default: rules/).
        dir: Option<PathBuf>,
        /// The rules folder, as `explain` and `backtest` take it.
        #[arg(long = "rules", env = "POINT_ENGINE_RULES", conflicts_with = "dir")]
        rules: Option<PathBuf>,
    },
    /// The grants a trade (a trade-create JSON body) would get, and for each campaign why it
    /// matched or which condition failed. Priced as a member's first trade.
    Explain {
        /// A file with a trade-create request body.
        trade: PathBuf,
        /// The rules folder to price it under.
        #[arg(long, env = "POINT_ENGINE_RULES", default_value = "rules/")]
        rules: PathBuf,
    },
    /// Replay the ledger's trades under a draft rules folder, writing nothing, and report per
    /// campaign what the draft would grant against what the live rules granted.
    Backtest {
        /// The draft rules folder.
        #[arg(long)]
        rules: PathBuf,
        /// RFC 3339 start of the sales period, included (default: the first trade).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 end, excluded (default: now).
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Make a new key: prints the key (once; only its SHA-256 is kept) and the lines of the
    /// clients file that admit it, or appends them to a clients file with --append.
    Create {
        /// Who holds the key, as the access log names the caller (e.g. DP01-tills).
        #[arg(long)]
        name: String,
        /// What the key may do: store, marketer, finance or admin (repeat for several).
        #[arg(long = "scope", required = true, value_parser = crate::clients::Scope::parse)]
        scopes: Vec<crate::clients::Scope>,
        /// Append the key's lines to this clients file (created if missing) and print only the
        /// key.
        #[arg(long)]
        append: Option<PathBuf>,
    },
    /// Print the public key discount-card responses are signed with (the clients file's
    /// `[wechatpay_platform]`; PEM on stdout) and its id (on stderr): what a merchant configures
    /// its WeChat Pay SDK with (e.g. wechatpayv3's `public_key` and `public_key_id`).
    WechatpayPublicKey {
        /// The clients file.
        #[arg(long, env = "POINT_ENGINE_CLIENTS")]
        clients: PathBuf,
    },
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub report: Report,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// The rules folder: its program gives the time zone and base currency.
    #[arg(
        long,
        global = true,
        env = "POINT_ENGINE_RULES",
        default_value = "rules/"
    )]
    pub rules: PathBuf,
    /// json or csv (csv: liability and movements only).
    #[arg(long, global = true, default_value = "json", value_parser = ["json", "csv"])]
    pub format: String,
    /// What one point costs in the base currency (see `serve --point-cost`).
    #[arg(long, global = true, env = "POINT_ENGINE_POINT_COST", value_parser = parse_point_cost)]
    pub point_cost: Option<Decimal>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Report {
    /// Outstanding points as of a time, by expiry month and quarter, type and campaign.
    Liability {
        /// RFC 3339 (default: now; never in the future).
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Points earned, burned, expired and reversed over [from, to), with the roll-forward.
    Movements {
        /// RFC 3339 start, included.
        #[arg(long)]
        from: String,
        /// RFC 3339 end, excluded (default: now).
        #[arg(long)]
        to: Option<String>,
        /// day, store or campaign.
        #[arg(long, default_value = "day")]
        by: String,
    },
    /// A member's entries, newest first.
    Entries {
        /// The member: its account number, or an identity (TEL:…, WX:…, CARD:…).
        vip_accountno: String,
        /// The page, from 1.
        #[arg(long, default_value_t = 1)]
        page: i64,
        /// Entries a page, at most 200.
        #[arg(long, default_value_t = 50)]
        page_size: i64,
    },
    /// One trade by trade_no or out_trade_no: its grants, entries and refunds.
    Trade {
        /// The trade's trade_no (PE…) or the out_trade_no it was posted with.
        number: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArg {
    /// The ledger: a SQLite file (a path or sqlite://path) or postgres://user:password@host:port/db.
    ///
    /// serve and expire create and migrate a new SQLite file (a PostgreSQL database must exist:
    /// createdb); audit, report, backup and backtest need the ledger to exist.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "data/point-engine.db"
    )]
    pub database: String,
}

impl DatabaseArg {
    pub fn url(&self) -> Result<DatabaseUrl, String> {
        DatabaseUrl::parse(&self.database).map_err(|e| format!("--database: {e}"))
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExpireArgs {
    #[command(flatten)]
    pub db: DatabaseArg,
    /// Expire what is past its expiry at this RFC 3339 time (default: now; never in the future).
    #[arg(long)]
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "POINT_ENGINE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub db: DatabaseArg,
    /// The folder of rule files (*.toml) that make the ruleset.
    #[arg(long, env = "POINT_ENGINE_RULES", default_value = "rules/")]
    pub rules: PathBuf,
    /// HTTP worker threads (default: one per CPU core and one more, `workers_default`).
    #[arg(long, env = "POINT_ENGINE_WORKERS")]
    pub workers: Option<usize>,
    /// Database connections in the pool (reads; PostgreSQL writes too).
    #[arg(long, env = "POINT_ENGINE_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pool_size: u32,
    /// Writes waiting for the ledger's writer (SQLite; each lane on PostgreSQL) before new ones
    /// are answered 503 with Retry-After (backpressure instead of growing latency).
    #[arg(long, env = "POINT_ENGINE_WRITE_QUEUE_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_queue_max: u32,
    /// Writes committed together at most (one transaction, one fsync).
    #[arg(long, env = "POINT_ENGINE_WRITE_BATCH_MAX", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub write_batch_max: u32,
    /// PostgreSQL: grouped writers of new receipts, each on a connection of its own, a
    /// member's receipts always to the same one (0: each receipt in its own transaction on the
    /// pool, as every other write).
    #[arg(long, env = "POINT_ENGINE_WRITE_LANES", default_value_t = crate::ledger::writer::LANES_DEFAULT as u32, value_parser = clap::value_parser!(u32).range(0..=64))]
    pub write_lanes: u32,
    /// Trades recorded lately whose answers are kept in memory, so that a replay of one (a
    /// till retrying) is answered without reading the ledger (about 400 bytes each, fewer
    /// trades when they earn more than 4 grants on average; 0: none).
    #[arg(long, env = "POINT_ENGINE_RECENT_TRADES_MAX", default_value_t = crate::ledger::recent::RECENT_TRADES_MAX_DEFAULT as u32, value_parser = clap::value_parser!(u32).range(0..=4_000_000))]
    pub recent_trades_max: u32,
    /// Lots of members' balances kept in memory, so that a member asked about again is
    /// answered without reading every lot while the member's ledger is unchanged (about 24
    /// bytes a lot; 0: none).
    #[arg(long, env = "POINT_ENGINE_BALANCES_LOTS_MAX", default_value_t = crate::ledger::balances::BALANCES_LOTS_MAX_DEFAULT as u32, value_parser = clap::value_parser!(u32).range(0..=16_000_000))]
    pub balances_lots_max: u32,
    /// Movements of members' history pages kept in memory, so that a page asked for again is
    /// answered without reading it while the member has no newer entry (about 80 bytes a
    /// movement; 0: none).
    #[arg(long, env = "POINT_ENGINE_HISTORY_MOVEMENTS_MAX", default_value_t = crate::ledger::pages::HISTORY_MOVEMENTS_MAX_DEFAULT as u32, value_parser = clap::value_parser!(u32).range(0..=16_000_000))]
    pub history_movements_max: u32,
    /// Megabytes the three memories above (recent trades, balances, history pages) hold
    /// together at most, by their reckoning of what each item takes, so that resident memory
    /// has a bound whatever is asked (0: none kept).
    #[arg(long, env = "POINT_ENGINE_ANSWERS_MEMORY_MB", default_value_t = (crate::ledger::ANSWERS_MEMORY_BYTES_DEFAULT >> 20) as u32, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    pub answers_memory_mb: u32,
    /// How far in the future (seconds) a sales_time may be, for clock skew between tills and server.
    #[arg(long, env = "POINT_ENGINE_CLOCK_SKEW_S_MAX", default_value_t = 300)]
    pub clock_skew_s_max: u32,
    /// Seconds between runs of the expiry task in the server (0: no task).
    #[arg(long, env = "POINT_ENGINE_EXPIRE_INTERVAL_S", default_value_t = 60)]
    pub expire_interval_s: u32,
    /// Milliseconds between looks at the rules folder for changes (0: only on SIGHUP).
    #[arg(
        long,
        env = "POINT_ENGINE_RULES_RELOAD_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub rules_reload_interval_ms: u32,
    /// Seconds the requests in flight get to finish after SIGTERM or SIGINT before the server
    /// stops anyway.
    #[arg(long, env = "POINT_ENGINE_SHUTDOWN_GRACE_S", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=3600))]
    pub shutdown_grace_s: u32,
    #[command(flatten)]
    pub finance: FinanceArgs,
    /// The largest completion_count or usage_count one discount-card record may carry; larger
    /// ones are refused (400 PARAM_ERROR), so no record costs work past it.
    #[arg(long, env = "POINT_ENGINE_CARD_COUNT_MAX", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub card_count_max: u32,
    /// Who may call: the native API's keys (`keys create`) and the adapters' clients (POS
    /// tokens, cblink apps, discount-card merchants), a TOML file; see
    /// `config/clients.example.toml`. Without it, every call is refused 401.
    #[arg(long, env = "POINT_ENGINE_CLIENTS")]
    pub clients: Option<PathBuf>,
    /// Let every caller use the native API without a key. For a trial on a private network
    /// only; logged loudly. Without keys and without this flag, serve binds only a loopback
    /// address.
    #[arg(long, env = "POINT_ENGINE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Requests a second each caller (a key, a POS client, a cblink app, a merchant) may send
    /// on average; more get 429 with Retry-After. 0: no limit. Default: none on a loopback
    /// address, 200 on any other.
    #[arg(long, env = "POINT_ENGINE_RATE_LIMIT_PER_S")]
    pub rate_limit_per_s: Option<u32>,
    /// Requests a caller may send at once above its rate (default: twice the rate).
    #[arg(long, env = "POINT_ENGINE_RATE_LIMIT_BURST", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit_burst: Option<u32>,
}

/// Finance's settings: how refunds treat points already spent or expired, and what a point
/// costs.
#[derive(Debug, Clone, Args)]
pub struct FinanceArgs {
    /// What a refund does with points the member no longer holds: record_shortfall (take back
    /// what is left of the grant, write the rest off) or allow_negative (take back what is left
    /// of the grant, the member owes the rest: it comes off the balance, which may go negative,
    /// and later earns pay it).
    #[arg(long, env = "POINT_ENGINE_REFUND_SHORTFALL_POLICY", default_value = "record_shortfall", value_parser = ShortfallPolicy::parse)]
    pub refund_shortfall_policy: ShortfallPolicy,
    /// What one point costs in the program's base currency (a decimal such as 0.005): turns
    /// outstanding points into the deferred revenue figure in liability reports.
    #[arg(long, env = "POINT_ENGINE_POINT_COST", value_parser = parse_point_cost)]
    pub point_cost: Option<Decimal>,
}

/// A point's cost: a non-negative decimal with at most 6 places, below 1,000.
pub fn parse_point_cost(raw: &str) -> Result<Decimal, String> {
    let text = raw.trim();
    let value: Decimal = Some(text)
        .filter(|t| t.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("must be a decimal such as 0.005, got {raw:?}"))?;
    if value.is_sign_negative() || value.scale() > 6 || value >= Decimal::from(1000) {
        return Err(format!(
            "must be at least 0, below 1000, with at most 6 decimal places, got {raw:?}"
        ));
    }
    Ok(value.normalize())
}

/// Everything the server needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub database: DatabaseUrl,
    pub rules_dir: PathBuf,
    pub workers: usize,
    pub pool_size: u32,
    pub writer: crate::ledger::writer::WriterLimits,
    /// Trades whose answers are remembered for replays (`ledger::recent`).
    pub recent_trades_max: usize,
    /// Lots of balances kept for members asked about again (`ledger::balances`).
    pub balances_lots_max: usize,
    /// Movements of history pages kept for pages asked for again (`ledger::pages`).
    pub history_movements_max: usize,
    /// Bytes the three memories hold together at most (`ledger::memory::Budget`).
    pub answers_memory_bytes_max: usize,
    pub clock_skew_s_max: u32,
    pub card_count_max: u32,
    pub expire_interval_s: u32,
    pub rules_reload_interval_ms: u32,
    pub body_bytes_max: usize,
    pub refund_shortfall_policy: ShortfallPolicy,
    pub point_cost: Option<Decimal>,
    pub clients: crate::clients::Clients,
    pub insecure_no_auth: bool,
    pub shutdown_grace_s: u32,
    /// Requests per caller; `None`: no limit.
    pub rate_limit: Option<crate::http::rate_limit::RateLimit>,
}

impl Settings {
    /// The largest request body accepted, in bytes.
    pub const BODY_BYTES_MAX: usize = 64 * 1024;
    /// Requests a second per caller by default on an address other than loopback.
    pub const RATE_LIMIT_PER_S: u32 = 200;

    pub fn from_args(args: &ServeArgs) -> Result<Self, String> {
        Ok(Self {
            bind: args.bind,
            database: args.db.url()?,
            rules_dir: args.rules.clone(),
            workers: args.workers.unwrap_or_else(workers_default).clamp(1, 256),
            pool_size: args.pool_size,
            writer: crate::ledger::writer::WriterLimits {
                queue_max: args.write_queue_max as usize,
                batch_max: args.write_batch_max as usize,
                lanes: args.write_lanes as usize,
            },
            recent_trades_max: args.recent_trades_max as usize,
            balances_lots_max: args.balances_lots_max as usize,
            history_movements_max: args.history_movements_max as usize,
            answers_memory_bytes_max: (args.answers_memory_mb as usize) << 20,
            clock_skew_s_max: args.clock_skew_s_max,
            card_count_max: args.card_count_max,
            expire_interval_s: args.expire_interval_s,
            rules_reload_interval_ms: args.rules_reload_interval_ms,
            body_bytes_max: Self::BODY_BYTES_MAX,
            refund_shortfall_policy: args.finance.refund_shortfall_policy,
            point_cost: args.finance.point_cost,
            clients: match &args.clients {
                Some(path) => crate::clients::Clients::load(path)?,
                None => crate::clients::Clients::default(),
            },
            insecure_no_auth: args.insecure_no_auth,
            shutdown_grace_s: args.shutdown_grace_s,
            rate_limit: {
                let default_per_s = if args.bind.ip().is_loopback() {
                    0
                } else {
                    Self::RATE_LIMIT_PER_S
                };
                match args.rate_limit_per_s.unwrap_or(default_per_s) {
                    0 => None,
                    per_s => Some(crate::http::rate_limit::RateLimit {
                        per_s,
                        burst: args.rate_limit_burst.unwrap_or(per_s.saturating_mul(2)),
                    }),
                }
            },
        })
    }
}

/// One HTTP worker a core and one more. A worker serves its connections one request at a
/// time, and SQLite's writer thread (and, on a small machine, a load of clients) takes part of
/// a core: with one worker a core, a worker the kernel puts aside holds up every connection it
/// serves. On 2 cores, three workers cut the p99 of reads during new receipts from 10.5–12.1 ms
/// to 8.2–9.4 ms at the same rates (docs/performance.md, 2026-12-05).
pub fn workers_default() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `from_command_line` makes of `args` given the config file `file`, with the
    /// environment variables `env` set.
    fn with_config(args: &[&str], file: &str, env: &[&str]) -> Result<Cli, String> {
        use clap::{CommandFactory, FromArgMatches};
        let mut command = every_arg_overrides_itself(Cli::command());
        command.build();
        let settings: toml::Table = file.parse().map_err(|e| format!("{e}"))?;
        let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        let env_is_set =
            |name: &std::ffi::OsStr| env.iter().any(|e| std::ffi::OsStr::new(e) == name);
        let args = with_config_settings(
            &command,
            args,
            &settings,
            std::path::Path::new("pe.toml"),
            &env_is_set,
        )?;
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    fn serve(cli: Cli) -> ServeArgs {
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {:?}", cli.command)
        };
        args
    }

    const FILE: &str = r#"
        database = "/var/lib/point-engine/ledger.db"
        bind = "0.0.0.0:9090"
        pool_size = 16
        insecure_no_auth = true
        point_cost = "0.005"
    "#;

    #[test]
    fn a_config_file_fills_in_what_flags_and_environment_do_not_give() {
        let args = serve(with_config(&["pe", "serve"], FILE, &[]).unwrap());
        assert_eq!(args.db.database, "/var/lib/point-engine/ledger.db");
        assert_eq!(args.bind.to_string(), "0.0.0.0:9090");
        assert_eq!(args.pool_size, 16);
        assert!(args.insecure_no_auth);
        assert_eq!(args.finance.point_cost, Some(Decimal::new(5, 3)));
        // Flags win, wherever --config is.
        let args = serve(
            with_config(
                &[
                    "pe",
                    "--config",
                    "pe.toml",
                    "serve",
                    "--pool-size",
                    "4",
                    "--database",
                    "x.db",
                ],
                FILE,
                &[],
            )
            .unwrap(),
        );
        assert_eq!((args.pool_size, args.db.database.as_str()), (4, "x.db"));
        assert_eq!(args.bind.to_string(), "0.0.0.0:9090");
        // A set environment variable wins over the file (clap reads it; here it is unset, so
        // the default shows the file's setting was left out).
        let args = serve(
            with_config(
                &["pe", "serve"],
                FILE,
                &["POINT_ENGINE_POOL_SIZE", "DATABASE_URL"],
            )
            .unwrap(),
        );
        assert_eq!(
            (args.pool_size, args.db.database.as_str()),
            (8, "data/point-engine.db")
        );
        assert_eq!(args.bind.to_string(), "0.0.0.0:9090");
        // false leaves a switch off.
        let args = serve(with_config(&["pe", "serve"], "insecure_no_auth = false", &[]).unwrap());
        assert!(!args.insecure_no_auth);
    }

    #[test]
    fn a_config_file_serves_every_command_and_refuses_unknown_settings() {
        // `audit` takes the database and ignores the server's settings.
        let cli = with_config(&["pe", "audit"], FILE, &[]).unwrap();
        let Command::Audit(db) = cli.command else {
            panic!()
        };
        assert_eq!(db.database, "/var/lib/point-engine/ledger.db");
        let cli = with_config(&["pe", "report", "liability"], FILE, &[]).unwrap();
        let Command::Report(report) = cli.command else {
            panic!()
        };
        assert_eq!(report.db.database, "/var/lib/point-engine/ledger.db");
        assert_eq!(report.point_cost, Some(Decimal::new(5, 3)));
        for (file, problem) in [
            ("databse = \"x\"", "unknown setting \"databse\""),
            (
                "pool_size = [1, 2]\n",
                "pool_size takes one value, not a list",
            ),
            ("pool_size = 0\n", "0 is not in 1..=256"),
            ("[serve]\npool_size = 1\n", "unknown setting \"serve\""),
            (
                "bind = { a = 1 }\n",
                "bind must be a string, a number or true/false",
            ),
        ] {
            let error = with_config(&["pe", "serve"], file, &[])
                .map(|_| ())
                .unwrap_err();
            assert!(error.contains(problem), "{file}: {error}");
        }
    }

    #[test]
    fn rate_limits_are_off_on_loopback_unless_asked_for() {
        let settings = |args: &[&str]| {
            let cli = Cli::parse_from(["point-engine", "serve"].iter().chain(args));
            let Command::Serve(serve) = cli.command else {
                unreachable!()
            };
            Settings::from_args(&serve).unwrap().rate_limit
        };
        use crate::http::rate_limit::RateLimit;
        assert_eq!(settings(&[]), None);
        assert_eq!(
            settings(&["--bind", "0.0.0.0:8080"]),
            Some(RateLimit {
                per_s: 200,
                burst: 400
            })
        );
        assert_eq!(
            settings(&["--bind", "0.0.0.0:8080", "--rate-limit-per-s", "0"]),
            None
        );
        assert_eq!(
            settings(&["--rate-limit-per-s", "5", "--rate-limit-burst", "7"]),
            Some(RateLimit { per_s: 5, burst: 7 })
        );
    }

    #[test]
    fn point_costs() {
        assert_eq!(parse_point_cost("0.005").unwrap(), Decimal::new(5, 3));
        assert_eq!(parse_point_cost("0.0100").unwrap(), Decimal::new(1, 2));
        for raw in ["", "-0.01", "0.0000001", "1000", "abc", "1e-3"] {
            assert!(parse_point_cost(raw).is_err(), "{raw:?} should be rejected");
        }
    }
}
