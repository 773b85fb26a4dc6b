//! What every request handler can reach, built once at start by `startup` and shared by the
//! `http` handlers: its own module, so `http` and `startup` do not import each other.

use crate::domain::ShortfallPolicy;
use crate::ledger::Store;
use crate::rules::LiveRules;
use rust_decimal::Decimal;
use std::sync::Arc;

/// What every request handler can reach.
pub struct AppState {
    /// The ledger: pooled reads, and the one writer.
    pub store: Store,
    /// The ruleset serving now; swapped whole when the rules folder changes.
    pub rules: Arc<LiveRules>,
    pub clock_skew_s_max: u32,
    /// The largest count one discount-card record may carry.
    pub card_count_max: u32,
    /// The largest request body accepted, in bytes.
    pub body_bytes_max: usize,
    pub refund_shortfall_policy: ShortfallPolicy,
    pub point_cost: Option<Decimal>,
    /// Who may call the native API (its keys) and the adapters.
    pub clients: crate::clients::Clients,
    /// The server's metrics (`GET /metrics`).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// Requests per caller, when limited (`--rate-limit-per-s`).
    pub rate_limiter: Option<crate::http::rate_limit::RateLimiter>,
    /// `serve --insecure-no-auth`: the native API takes every caller, keys or not.
    pub insecure_no_auth: bool,
    /// PostgreSQL: turns at the pool, twice as many as it has connections (a trade takes one
    /// twice, for its replay read and then for its write: the slack keeps every connection
    /// busy while a turn passes on). Every handler's database work waits for a turn here
    /// (`http::on_pool`), in arrival order and without holding a thread, before it takes a
    /// connection on a blocking thread (a readiness probe excepted). Without it every waiting
    /// request holds a blocking thread racing the others for the next free connection, and
    /// the unlucky ones wait longest (measured, 64 callers, pool 8: new receipts' p99 62–68 ms without, 34–37 ms
    /// with, at the same rate; as many turns as connections gave 8% fewer trades).
    pub pool_turns: Option<tokio::sync::Semaphore>,
    /// PostgreSQL with writer lanes: turns of balance and history reads while a lane is
    /// writing (`http::read_ledger`), pool size − lanes at once (`startup::reads_beside_lanes`).
    pub read_turns_beside_lanes: Option<tokio::sync::Semaphore>,
}

impl AppState {
    /// Counts a request of an authenticated caller against its rate limit: `Err(seconds)` to
    /// wait when it is over.
    pub fn take_rate(&self, caller: &str) -> Result<(), u32> {
        match &self.rate_limiter {
            Some(limiter) => limiter.take(caller, std::time::Instant::now()),
            None => Ok(()),
        }
    }
}
