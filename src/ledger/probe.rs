//! PostgreSQL: whether receipts were recorded already, asked for many at once.
//!
//! A new receipt is looked up by its `out_trade_no` before it goes to a writer lane (a replay
//! is answered from that read, never from the writer). One statement a receipt on a pooled
//! connection, handed to a blocking thread and back, cost about a fifth of the machine at full
//! rate (measured: docs/performance.md). Here one thread with a connection of its own takes
//! every question waiting (up to `ASKS_BATCH_MAX`), answers them all with one statement
//! (`repo::recorded_trades`), and under load asks in bigger groups, as the writer commits.
//! Anything it cannot answer (its queue full, the statement failed) is `Probed::Unknown`: the
//! caller looks on the pool as before, so the probe never refuses a receipt the pool would
//! take.

use super::connection::{Conn, Manager};
use super::models::{LotRow, TradeRow};
use super::{posted_of, repo, PostError, Posted};
use crate::domain::Fingerprint;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Questions answered by one statement at most.
pub const ASKS_BATCH_MAX: usize = 256;

/// What the ledger holds under an `out_trade_no`.
#[derive(Debug)]
pub enum Probed {
    /// No trade: a write may take it as new (`Replay::known_new`).
    New,
    /// A trade is recorded under it: what the ledger answers again for the request asked
    /// about (`super::posted_of`), or a `Conflict` if the request differs.
    Recorded(Result<Posted, PostError>),
    /// Not known: the probe was busy or could not read. Look on the pool.
    Unknown,
}

struct Ask {
    out_trade_no: String,
    fingerprint: Fingerprint,
    reply: oneshot::Sender<Probed>,
}

/// Counters of the probe.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Questions answered from the ledger so far.
    pub asks: AtomicU64,
    /// Statements that answered them.
    pub statements: AtomicU64,
    /// Questions asked and not answered yet.
    pub pending: AtomicUsize,
}

/// The probe's queue; clones share its thread.
#[derive(Clone)]
pub struct TradeProbe {
    asks: SyncSender<Ask>,
    stats: Arc<ProbeStats>,
}

impl TradeProbe {
    /// Starts the probe's thread on `conn` (of `manager`'s database), with room for
    /// `queue_max` questions waiting.
    pub fn start(manager: Manager, mut conn: Conn, queue_max: usize) -> Self {
        index_only(&mut conn);
        let (asks, queue) = mpsc::sync_channel::<Ask>(queue_max);
        let stats = Arc::new(ProbeStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("ledger-probe".to_string())
            .spawn(move || run(manager, conn, queue, &counters))
            .expect("a thread starts");
        Self { asks, stats }
    }

    pub fn stats(&self) -> &ProbeStats {
        &self.stats
    }

    /// What the ledger holds under `out_trade_no`, for a request of `fingerprint`, awaited
    /// without holding a thread.
    pub async fn ask(&self, out_trade_no: &str, fingerprint: Fingerprint) -> Probed {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            out_trade_no: out_trade_no.to_string(),
            fingerprint,
            reply,
        };
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if self.asks.try_send(ask).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            return Probed::Unknown;
        }
        answer.await.unwrap_or(Probed::Unknown)
    }
}

/// The probe's loop, until every `TradeProbe` is gone.
fn run(manager: Manager, mut conn: Conn, queue: Receiver<Ask>, stats: &ProbeStats) {
    let mut batch: Vec<Ask> = Vec::with_capacity(ASKS_BATCH_MAX);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        super::writer::take_waiting(&queue, &mut batch, ASKS_BATCH_MAX);
        stats.statements.fetch_add(1, Ordering::Relaxed);
        stats.asks.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let asked = batch.len();
        answer(&mut conn, &mut batch);
        stats.pending.fetch_sub(asked, Ordering::Relaxed);
        if conn.is_broken() {
            log::error!("the ledger probe's connection broke; opening it again");
            match manager.connect() {
                Ok(fresh) => {
                    conn = fresh;
                    index_only(&mut conn);
                }
                // Until it opens, each batch fails at once and is answered `Unknown`.
                Err(e) => log::error!("the ledger probe cannot open its connection: {e}"),
            }
        }
    }
}

/// Makes the probe's statement find trades and lots by their indexes whatever PostgreSQL knows
/// of the tables. PostgreSQL keeps a statement's plan once it has run a few times, and planned
/// on a new database (tables of a few pages) `= ANY($1)` reads every row of `trades`: measured,
/// 2,131 statements read 16 million rows in a 5 s load, and new receipts ran at 3,700/s
/// instead of 5,000/s. The connection runs this statement only.
fn index_only(conn: &mut Conn) {
    use diesel::connection::SimpleConnection;
    if let Conn::Postgres(pg) = conn {
        if let Err(e) = pg.batch_execute("SET enable_seqscan = off") {
            log::error!("the ledger probe may read whole tables: {e}");
        }
    }
}

/// Answers every question of `batch` from one statement.
fn answer(conn: &mut Conn, batch: &mut Vec<Ask>) {
    let numbers: Vec<&str> = batch.iter().map(|ask| ask.out_trade_no.as_str()).collect();
    let recorded = repo::recorded_trades(conn, &numbers);
    drop(numbers);
    match recorded {
        Ok(trades) => {
            let found: HashMap<&str, &(TradeRow, Vec<LotRow>)> = trades
                .iter()
                .map(|recorded| (recorded.0.out_trade_no.as_str(), recorded))
                .collect();
            for ask in batch.drain(..) {
                // Two questions of a batch may ask for one trade.
                let probed = match found.get(ask.out_trade_no.as_str()) {
                    Some((trade, lots)) => {
                        Probed::Recorded(posted_of(trade.clone(), lots, &ask.fingerprint))
                    }
                    None => Probed::New,
                };
                let _ = ask.reply.send(probed);
            }
        }
        Err(error) => {
            log::error!("the ledger probe could not read: {error}");
            for ask in batch.drain(..) {
                let _ = ask.reply.send(Probed::Unknown);
            }
        }
    }
}
