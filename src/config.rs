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
    #[command(subcommand)]
    pub command: Command,
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
        vip_accountno: String,
        #[arg(long, default_value_t = 1)]
        page: i64,
        #[arg(long, default_value_t = 50)]
        page_size: i64,
    },
    /// One trade by trade_no or out_trade_no: its grants, entries and refunds.
    Trade { number: String },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArg {
    /// The ledger database: a SQLite file path or sqlite://path (created and migrated if new).
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
    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "POINT_ENGINE_WORKERS")]
    pub workers: Option<usize>,
    /// Database connections in the pool (reads; PostgreSQL writes too).
    #[arg(long, env = "POINT_ENGINE_POOL_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub pool_size: u32,
    /// SQLite: writes waiting for the ledger's writer before new ones are answered 503 with
    /// Retry-After (backpressure instead of growing latency).
    #[arg(long, env = "POINT_ENGINE_WRITE_QUEUE_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub write_queue_max: u32,
    /// SQLite: writes committed together at most (one transaction, one fsync).
    #[arg(long, env = "POINT_ENGINE_WRITE_BATCH_MAX", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub write_batch_max: u32,
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
    /// what is left of the grant, write the rest off) or allow_negative (take the rest from the
    /// member's other points, pending first; the balance may go negative).
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
            workers: args
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
                .clamp(1, 256),
            pool_size: args.pool_size,
            writer: crate::ledger::writer::WriterLimits {
                queue_max: args.write_queue_max as usize,
                batch_max: args.write_batch_max as usize,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

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
