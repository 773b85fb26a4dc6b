//! PostgreSQL: reads asked for many at once, each kind by a thread with a connection of its own.
//!
//! A new receipt is looked up by its `out_trade_no` before it goes to a writer lane (a replay
//! is answered from that read, never from the writer). One statement a receipt on a pooled
//! connection, handed to a blocking thread and back, cost about a fifth of the machine at full
//! rate (measured: docs/performance.md). Here one thread (`TradeProbe`) takes every question
//! waiting (up to `ASKS_BATCH_MAX`), answers them all with one statement
//! (`repo::recorded_trades`), and under load asks in bigger groups, as the writer commits.
//! Anything it cannot answer (its queue full, the statement failed) is `Probed::Unknown`: the
//! caller looks on the pool as before, so the probe never refuses a receipt the pool would
//! take.
//!
//! A balance or a history page starts the same way: which member the account number names and
//! the member's ledger version, which answers a kept balance or page without another read
//! (`MemberProbe`, `repo::ledger_versions`); one not kept is read with others' (`ReadProbe`).

use super::balances::{KnownBalances, LedgerVersion};
use super::connection::{Conn, Manager};
use super::history::History;
use super::models::{LotRow, TradeRow};
use super::pages::KnownPages;
use super::{posted_of, repo, Balance, PostError, Posted};
use crate::domain::{Fingerprint, VipAccountNo};
use chrono::{DateTime, Utc};
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

/// Counters of a probe.
#[derive(Debug, Default)]
pub struct ProbeStats {
    /// Questions answered from the ledger so far.
    pub asks: AtomicU64,
    /// Statements that answered them.
    pub statements: AtomicU64,
    /// Questions asked and not answered yet.
    pub pending: AtomicUsize,
}

/// A thread with a connection of its own answering questions of one kind, all those waiting
/// at once (`answer`, which answers every question of the group in a statement or two);
/// clones share the thread.
struct Asking<A> {
    asks: SyncSender<A>,
    stats: Arc<ProbeStats>,
}

impl<A> Clone for Asking<A> {
    fn clone(&self) -> Self {
        Self {
            asks: self.asks.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<A: Send + 'static> Asking<A> {
    /// Starts the thread `name` on `conn` (of `manager`'s database), with room for `queue_max`
    /// questions waiting.
    fn start(
        name: &str,
        manager: Manager,
        mut conn: Conn,
        queue_max: usize,
        answer: fn(&mut Conn, &mut Vec<A>),
    ) -> Self {
        index_only(&mut conn);
        let (asks, queue) = mpsc::sync_channel::<A>(queue_max);
        let stats = Arc::new(ProbeStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || run(manager, conn, queue, &counters, answer))
            .expect("a thread starts");
        Self { asks, stats }
    }

    /// Queues `ask`; `false` when the queue is full (nothing will answer it).
    fn queue(&self, ask: A) -> bool {
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        let queued = self.asks.try_send(ask).is_ok();
        if !queued {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
        }
        queued
    }
}

/// The probe's trades: whether new receipts were recorded already.
#[derive(Clone)]
pub struct TradeProbe(Asking<Ask>);

impl TradeProbe {
    /// Starts the probe's thread on `conn` (of `manager`'s database), with room for
    /// `queue_max` questions waiting.
    pub fn start(manager: Manager, conn: Conn, queue_max: usize) -> Self {
        Self(Asking::start(
            "ledger-probe",
            manager,
            conn,
            queue_max,
            answer,
        ))
    }

    pub fn stats(&self) -> &ProbeStats {
        &self.0.stats
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
        match self.0.queue(ask) {
            true => answer.await.unwrap_or(Probed::Unknown),
            false => Probed::Unknown,
        }
    }
}

/// A member found by its account number, with its ledger version read in the same statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned {
    pub member_id: i64,
    pub version: LedgerVersion,
}

struct MemberAsk {
    vip_accountno: String,
    reply: oneshot::Sender<Option<Versioned>>,
}

/// The probe's members: which member an account number names and its ledger version, the
/// first read of a balance or a history page (`balances::KnownBalances`, `pages::KnownPages`),
/// asked for many reads at once instead of two statements each on a pooled connection.
#[derive(Clone)]
pub struct MemberProbe(Asking<MemberAsk>);

impl MemberProbe {
    /// Starts the thread on `conn` (of `manager`'s database), with room for `queue_max`
    /// questions waiting.
    pub fn start(manager: Manager, conn: Conn, queue_max: usize) -> Self {
        Self(Asking::start(
            "ledger-members",
            manager,
            conn,
            queue_max,
            answer_members,
        ))
    }

    pub fn stats(&self) -> &ProbeStats {
        &self.0.stats
    }

    /// The member whose account number is `vip_accountno` and its ledger version, awaited
    /// without holding a thread. `None` when no member has that account number (it may still
    /// be an identity) or the probe could not say: read on the pool.
    pub async fn ask(&self, vip_accountno: &str) -> Option<Versioned> {
        let (reply, answer) = oneshot::channel();
        let ask = MemberAsk {
            vip_accountno: vip_accountno.to_string(),
            reply,
        };
        match self.0.queue(ask) {
            true => answer.await.ok().flatten(),
            false => None,
        }
    }
}

struct BalanceAsk {
    member: Versioned,
    vip_accountno: VipAccountNo,
    as_of: DateTime<Utc>,
    known: Arc<KnownBalances>,
    reply: oneshot::Sender<Option<Arc<Balance>>>,
}

struct PageAsk {
    member: Versioned,
    page: i64,
    page_size: i64,
    known: Arc<KnownPages>,
    reply: oneshot::Sender<Option<History>>,
}

enum ReadAsk {
    Balance(BalanceAsk),
    Page(PageAsk),
}

/// The probe's reads: balances and history pages of members found with their versions
/// (`MemberProbe`) and not known for them, read for many at once (two statements for the
/// balances, `super::balances_of_members`; one for the pages, `history::pages_of_members`)
/// instead of two statements each on a pooled connection. Each is kept in its memory.
#[derive(Clone)]
pub struct ReadProbe(Asking<ReadAsk>);

impl ReadProbe {
    /// Starts the thread on `conn` (of `manager`'s database), with room for `queue_max`
    /// questions waiting.
    pub fn start(manager: Manager, conn: Conn, queue_max: usize) -> Self {
        Self(Asking::start(
            "ledger-reads",
            manager,
            conn,
            queue_max,
            answer_reads,
        ))
    }

    pub fn stats(&self) -> &ProbeStats {
        &self.0.stats
    }

    /// The balance of `member` as of `as_of`, read and kept in `known`, awaited without
    /// holding a thread. `None` when the probe could not read it: read on the pool.
    pub async fn balance(
        &self,
        member: Versioned,
        vip_accountno: &VipAccountNo,
        as_of: DateTime<Utc>,
        known: &Arc<KnownBalances>,
    ) -> Option<Arc<Balance>> {
        let (reply, answer) = oneshot::channel();
        let ask = ReadAsk::Balance(BalanceAsk {
            member,
            vip_accountno: vip_accountno.clone(),
            as_of,
            known: known.clone(),
            reply,
        });
        match self.0.queue(ask) {
            true => answer.await.ok().flatten(),
            false => None,
        }
    }

    /// History page `page` (from 1, of `page_size` movements, both validated) of `member`,
    /// read and kept in `known`, awaited without holding a thread. `None` when the probe
    /// could not read it: read on the pool.
    pub async fn page(
        &self,
        member: Versioned,
        page: i64,
        page_size: i64,
        known: &Arc<KnownPages>,
    ) -> Option<History> {
        let (reply, answer) = oneshot::channel();
        let ask = ReadAsk::Page(PageAsk {
            member,
            page,
            page_size,
            known: known.clone(),
            reply,
        });
        match self.0.queue(ask) {
            true => answer.await.ok().flatten(),
            false => None,
        }
    }
}

/// Answers every question of `batch`: its balances (two statements at most), then its pages
/// (one, two when a page holds no entry). Balances and pages are kept in one memory each (the
/// store's): a batch keeps them in its first question's.
fn answer_reads(conn: &mut Conn, batch: &mut Vec<ReadAsk>) {
    let (mut balances, mut pages) = (Vec::new(), Vec::new());
    for ask in batch.drain(..) {
        match ask {
            ReadAsk::Balance(ask) => balances.push(ask),
            ReadAsk::Page(ask) => pages.push(ask),
        }
    }
    if let Some(known) = balances.first().map(|ask| ask.known.clone()) {
        let asked: Vec<_> = balances
            .iter()
            .map(|ask| (ask.member, &ask.vip_accountno, ask.as_of))
            .collect();
        let read = super::balances_of_members(conn, &asked, &known);
        drop(asked);
        reply_each(balances, read, "balance", |ask| ask.reply);
    }
    if let Some(known) = pages.first().map(|ask| ask.known.clone()) {
        let asked: Vec<_> = pages
            .iter()
            .map(|ask| (ask.member, ask.page, ask.page_size))
            .collect();
        let read = super::history::pages_of_members(conn, &asked, &known);
        reply_each(pages, read, "history page", |ask| ask.reply);
    }
}

/// Answers each question its own read, `None` for a read that failed.
fn reply_each<A, T>(
    asks: Vec<A>,
    read: Result<Vec<Result<T, PostError>>, PostError>,
    what: &str,
    reply_of: fn(A) -> oneshot::Sender<Option<T>>,
) {
    match read {
        Ok(answers) => {
            for (ask, answer) in asks.into_iter().zip(answers) {
                if let Err(error) = &answer {
                    log::error!("a {what} could not be read: {error}");
                }
                let _ = reply_of(ask).send(answer.ok());
            }
        }
        Err(error) => {
            log::error!("the ledger's reads probe could not read a {what}: {error}");
            for ask in asks {
                let _ = reply_of(ask).send(None);
            }
        }
    }
}

/// A probe's loop, until every handle of it is gone.
fn run<A>(
    manager: Manager,
    mut conn: Conn,
    queue: Receiver<A>,
    stats: &ProbeStats,
    answer: fn(&mut Conn, &mut Vec<A>),
) {
    let mut batch: Vec<A> = Vec::with_capacity(ASKS_BATCH_MAX);
    while let Ok(first) = queue.recv() {
        batch.push(first);
        super::writer::take_waiting(&queue, &mut batch, ASKS_BATCH_MAX);
        stats.statements.fetch_add(1, Ordering::Relaxed);
        stats.asks.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let asked = batch.len();
        answer(&mut conn, &mut batch);
        debug_assert!(batch.is_empty(), "every question answered");
        batch.clear();
        stats.pending.fetch_sub(asked, Ordering::Relaxed);
        if conn.is_broken() {
            log::error!("a ledger probe's connection broke; opening it again");
            match manager.connect() {
                Ok(fresh) => {
                    conn = fresh;
                    index_only(&mut conn);
                }
                // Until it opens, each batch fails at once and is answered `Unknown`.
                Err(e) => log::error!("a ledger probe cannot open its connection: {e}"),
            }
        }
    }
}

/// Makes a probe's statement find trades, lots, members and entries by their indexes whatever
/// PostgreSQL knows of the tables. PostgreSQL keeps a statement's plan once it has run a few
/// times, and planned on a new database (tables of a few pages) `= ANY($1)` reads every row of
/// `trades`: measured, 2,131 statements read 16 million rows in a 5 s load, and new receipts
/// ran at 3,700/s instead of 5,000/s. The connection runs its probe's statement only.
fn index_only(conn: &mut Conn) {
    use diesel::connection::SimpleConnection;
    if let Conn::Postgres(pg) = conn {
        if let Err(e) = pg.batch_execute("SET enable_seqscan = off") {
            log::error!("a ledger probe may read whole tables: {e}");
        }
    }
}

/// Answers every question of `batch` from one statement (`repo::ledger_versions`).
fn answer_members(conn: &mut Conn, batch: &mut Vec<MemberAsk>) {
    let vips: Vec<&str> = batch.iter().map(|ask| ask.vip_accountno.as_str()).collect();
    let found = repo::ledger_versions(conn, &vips);
    drop(vips);
    let found: HashMap<String, Versioned> = match found {
        Ok(rows) => rows
            .into_iter()
            .map(|(vip, member_id, entry, refund)| {
                let version = (entry, refund);
                (vip, Versioned { member_id, version })
            })
            .collect(),
        Err(error) => {
            log::error!("the ledger's members probe could not read: {error}");
            HashMap::new()
        }
    };
    for ask in batch.drain(..) {
        let _ = ask.reply.send(found.get(&ask.vip_accountno).copied());
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
