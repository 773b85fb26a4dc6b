//! The one way writes reach the ledger.
//!
//! SQLite: one thread owns the write connection and commits in groups. A write is sent over a
//! bounded queue; the thread takes everything waiting (up to `batch_max`), opens one
//! `BEGIN IMMEDIATE`, runs the writes one after another, commits once (`synchronous = FULL`:
//! one fsync for the group) and only then answers every write of the group. A write that fails
//! fails alone: its group is rolled back and run again with each write in its own savepoint
//! (released on success, rolled back on the write's own error, which only that write gets); see
//! `GroupWriter::commit_group`. A write sees what the writes before it in its group wrote.
//! Nothing is answered before its commit is durable, and nobody queues in SQLite's busy
//! handler. A full queue is refused at once (`Busy::QueueFull`). A caller waits on its thread
//! (`Writer::write`) or awaits the answer without holding one (`Writer::submit`).
//!
//! PostgreSQL: new receipts go to `lanes` grouped writers like SQLite's, each on a connection
//! of its own, a member's receipts always to the same lane (`Writer::submit_for`), so that the
//! groups of one process never wait on each other's member locks; the lanes commit in
//! parallel. The receipts of a group priced before their writes (`Writer::submit_receipt`) are
//! posted together, in three statements for the group (`together::post_receipts`); the rest
//! of the group runs after them, each write alone. Every other write runs in its own transaction on a pooled connection (many
//! writers at once, serialized per member by row locks). Either is run again from the start
//! (a whole group, for a lane) when PostgreSQL ends it for a deadlock or a serialization
//! failure: two instances on one database, or two lanes taking two budgets in opposite orders.
//! With 0 lanes every write is pooled.

use super::connection::{self, Conn, Manager, Pool};
use super::together::{self, PricedReceipt};
use super::{PostError, Posted};
use diesel::connection::TransactionManager;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::Connection;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Why a write was not even tried: nothing was written, and the caller may retry.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("no database connection came free in time: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("the ledger's write queue is full ({0} writes waiting)")]
    QueueFull(usize),
}

/// Why a write that was tried did not land.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The group the write ran in could not begin or commit: nothing of it was written.
    #[error("the ledger could not commit: {0}")]
    Commit(String),
    #[error("the ledger writer has stopped")]
    Stopped,
}

/// What a write's error type must tell the writer.
pub trait WriteFailure: From<WriteError> + From<diesel::result::Error> {
    /// The database ended the transaction for a deadlock or a serialization failure: running
    /// the whole write again from the start is safe, and likely to succeed.
    fn is_transient(&self) -> bool;
}

/// How many times a write PostgreSQL keeps ending for deadlocks or serialization failures is
/// run.
const TRANSIENT_ATTEMPTS_MAX: usize = 8;

/// Settings of the grouped writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterLimits {
    /// Writes waiting for the writer (for each lane on PostgreSQL) before new ones are refused
    /// (503, `Retry-After`).
    pub queue_max: usize,
    /// Writes committed together at most.
    pub batch_max: usize,
    /// PostgreSQL: grouped writers of new receipts, each with a connection of its own
    /// (0: every write in its own transaction on the pool).
    pub lanes: usize,
}

/// PostgreSQL's grouped writers by default (measured: see docs/performance.md).
pub const LANES_DEFAULT: usize = 2;

impl Default for WriterLimits {
    fn default() -> Self {
        Self {
            queue_max: 4096,
            batch_max: 512,
            lanes: LANES_DEFAULT,
        }
    }
}

/// A write in the grouped writer's queue.
trait Queued: Send {
    /// Runs the write once, inside the writer's transaction.
    fn run(&mut self, conn: &mut Conn) -> Ran;
    /// Answers the caller: with the write's own result, or with the failure of the group's
    /// commit (or of the write's savepoint) if there was one.
    fn answer(self: Box<Self>, failed: Option<&str>);
    /// The new receipt this write posts, when it may be posted together with its group's
    /// (`together::post_receipts`) instead of run alone.
    fn receipt(&self) -> Option<&PricedReceipt> {
        None
    }
    /// Takes the outcome of the receipt, posted together with its group's.
    fn posted(&mut self, _outcome: Result<Posted, PostError>) {}
}

/// How one run of a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Done,
    Failed,
    /// Failed in a way a fresh run may not: run it again (after rolling it back).
    Transient,
}

impl Ran {
    fn of<T, E: WriteFailure>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::Done,
            Err(e) if e.is_transient() => Self::Transient,
            Err(_) => Self::Failed,
        }
    }
}

struct Pending<T, E, F> {
    write: F,
    result: Option<Result<T, E>>,
    reply: Reply<Result<T, E>>,
}

/// Where a write's outcome goes: to a thread blocked on it, or to a task awaiting it.
enum Reply<R> {
    Blocking(SyncSender<R>),
    Awaited(oneshot::Sender<R>),
}

impl<R> Reply<R> {
    /// Hands the outcome over; a caller that stopped waiting is not an error of the writer.
    fn send(self, outcome: R) {
        match self {
            Self::Blocking(sender) => {
                let _ = sender.send(outcome);
            }
            Self::Awaited(sender) => {
                let _ = sender.send(outcome);
            }
        }
    }
}

/// The outcome of a write started with `Writer::submit`.
#[must_use = "a write's outcome says whether it landed"]
pub enum Answer<T, E> {
    /// Known already: the write ran on the calling thread (PostgreSQL), or was refused.
    Ready(Result<T, E>),
    /// In the grouped writer's queue: known once its group's commit is durable.
    Queued(oneshot::Receiver<Result<T, E>>),
}

impl<T, E: From<WriteError>> Answer<T, E> {
    /// The write's outcome, awaited without holding a thread.
    pub async fn outcome(self) -> Result<T, E> {
        match self {
            Self::Ready(outcome) => outcome,
            Self::Queued(answer) => answer.await.unwrap_or(Err(WriteError::Stopped.into())),
        }
    }

    /// The write's outcome, waited for on this thread (not from async code: use `outcome`).
    pub fn wait(self) -> Result<T, E> {
        match self {
            Self::Ready(outcome) => outcome,
            Self::Queued(answer) => answer
                .blocking_recv()
                .unwrap_or(Err(WriteError::Stopped.into())),
        }
    }
}

impl<T, E, F> Queued for Pending<T, E, F>
where
    F: FnMut(&mut Conn) -> Result<T, E> + Send,
    T: Send,
    E: WriteFailure + Send,
{
    fn run(&mut self, conn: &mut Conn) -> Ran {
        let result = (self.write)(conn);
        let ran = Ran::of(&result);
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        self.reply.send(outcome(self.result, failed));
    }
}

/// A write's outcome: its own result, or the failure of its group's commit (or of its
/// savepoint) if there was one.
fn outcome<T, E: From<WriteError>>(
    result: Option<Result<T, E>>,
    failed: Option<&str>,
) -> Result<T, E> {
    match (failed, result) {
        (None, Some(result)) => result,
        (Some(error), _) => Err(WriteError::Commit(error.to_string()).into()),
        (None, None) => Err(WriteError::Stopped.into()),
    }
}

/// A new receipt priced before its write (`together::PricedReceipt`), in a lane's queue: posted
/// together with its group's receipts, or run alone by `write`.
struct ReceiptWrite<E, F> {
    receipt: PricedReceipt,
    write: F,
    result: Option<Result<Posted, E>>,
    reply: Reply<Result<Posted, E>>,
}

impl<E, F> Queued for ReceiptWrite<E, F>
where
    F: FnMut(&mut Conn, &PricedReceipt) -> Result<Posted, E> + Send,
    E: WriteFailure + From<PostError> + Send,
{
    fn run(&mut self, conn: &mut Conn) -> Ran {
        let result = (self.write)(conn, &self.receipt);
        let ran = Ran::of(&result);
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        self.reply.send(outcome(self.result, failed));
    }

    fn receipt(&self) -> Option<&PricedReceipt> {
        Some(&self.receipt)
    }

    fn posted(&mut self, outcome: Result<Posted, PostError>) {
        self.result = Some(outcome.map_err(E::from));
    }
}

type Job = Box<dyn Queued>;

/// The ledger's writer; clones share it.
#[derive(Clone)]
pub struct Writer {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// SQLite: every write through one grouped writer.
    Grouped(Lane),
    /// PostgreSQL: writes on the pool; new receipts through `lanes` when there are any.
    Pooled {
        pool: Pool,
        lanes: Arc<[Lane]>,
        stats: Arc<WriterStats>,
    },
}

/// The queue of one grouped writer thread.
#[derive(Clone)]
struct Lane {
    jobs: SyncSender<Job>,
    stats: Arc<WriterStats>,
    queue_max: usize,
}

impl Lane {
    /// Starts a grouped writer thread on `conn`, counting in `stats`.
    fn start(
        name: String,
        manager: Manager,
        conn: Conn,
        stats: Arc<WriterStats>,
        limits: WriterLimits,
    ) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<Job>(limits.queue_max);
        let counters = stats.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                raise_priority();
                let mut writer = GroupWriter {
                    manager,
                    conn,
                    careful_groups: 0,
                };
                writer.run(queue, &counters, limits.batch_max)
            })
            .expect("a thread starts");
        Self {
            jobs,
            stats,
            queue_max: limits.queue_max,
        }
    }

    /// Puts a write in the queue, or says at once why it cannot.
    fn enqueue<T, E, F>(&self, write: F, reply: Reply<Result<T, E>>) -> Result<(), E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        self.enqueue_job(Box::new(Pending {
            write,
            result: None,
            reply,
        }))
    }

    /// Puts a job in the queue, or says at once why it cannot.
    fn enqueue_job<E: From<WriteError>>(&self, job: Job) -> Result<(), E> {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(job).map_err(|refused| {
            self.stats.waiting.fetch_sub(1, Ordering::Relaxed);
            match refused {
                TrySendError::Full(_) => WriteError::from(Busy::QueueFull(self.queue_max)).into(),
                TrySendError::Disconnected(_) => WriteError::Stopped.into(),
            }
        })
    }

    /// Queues `write` and awaits its answer.
    fn submit<T, E, F>(&self, write: F) -> Answer<T, E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T, E>>();
        match self.enqueue(write, Reply::Awaited(reply)) {
            Ok(()) => Answer::Queued(answer),
            Err(refused) => Answer::Ready(Err(refused)),
        }
    }
}

/// Counters of the grouped writer.
#[derive(Debug)]
pub struct WriterStats {
    /// Writes in the queue now.
    pub waiting: AtomicUsize,
    /// Writes taken from the queue and not answered yet: the groups being committed now.
    pub running: AtomicUsize,
    /// Groups committed (or failed) so far.
    pub groups: AtomicUsize,
    /// Writes run so far.
    pub writes: AtomicUsize,
    /// New receipts answered by posting them together with their group's
    /// (`together::post_receipts`: recorded, or a copy's replay or conflict) so far.
    pub together: AtomicUsize,
    /// When the last group was answered, in ms after `started` (`u64::MAX`: none yet).
    answered_at_ms: AtomicU64,
    started: Instant,
}

impl Default for WriterStats {
    fn default() -> Self {
        Self {
            waiting: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            groups: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            together: AtomicUsize::new(0),
            answered_at_ms: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        }
    }
}

/// How long after its last answer a lane still counts as writing (`Writer::lanes_writing`):
/// under load its callers' next writes arrive within it, and a gap between two groups is no
/// time for reads to take every backend.
const WRITING_AFTER_ANSWER_MS: u64 = 10;

impl WriterStats {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Writes queued or running, or a group answered within `WRITING_AFTER_ANSWER_MS`.
    fn writing(&self) -> bool {
        let answered_at_ms = self.answered_at_ms.load(Ordering::Relaxed);
        self.waiting.load(Ordering::Relaxed) + self.running.load(Ordering::Relaxed) > 0
            || (answered_at_ms != u64::MAX
                && self.now_ms() <= answered_at_ms.saturating_add(WRITING_AFTER_ANSWER_MS))
    }
}

impl Writer {
    /// The writer for this database: grouped on its own connection for SQLite; pooled for
    /// PostgreSQL, with `limits.lanes` grouped writers for new receipts.
    pub fn start(
        url: &super::DatabaseUrl,
        pool: &Pool,
        limits: WriterLimits,
    ) -> Result<Self, connection::ConnectError> {
        let stats = Arc::new(WriterStats::default());
        let lane_conn = || {
            let manager = Manager::new(url.clone());
            let conn = manager
                .connect()
                .map_err(|source| connection::ConnectError::Writer {
                    url: url.to_string(),
                    message: source.to_string(),
                })?;
            Ok((manager, conn))
        };
        let kind = match url {
            super::DatabaseUrl::Postgres(_) => {
                let lanes = (0..limits.lanes)
                    .map(|lane| {
                        let (manager, conn) = lane_conn()?;
                        let name = format!("ledger-lane-{lane}");
                        Ok(Lane::start(name, manager, conn, stats.clone(), limits))
                    })
                    .collect::<Result<Vec<_>, connection::ConnectError>>()?;
                Kind::Pooled {
                    pool: pool.clone(),
                    lanes: lanes.into(),
                    stats,
                }
            }
            super::DatabaseUrl::Sqlite(_) => {
                let (manager, conn) = lane_conn()?;
                let name = "ledger-writer".to_string();
                Kind::Grouped(Lane::start(name, manager, conn, stats, limits))
            }
        };
        Ok(Self { kind })
    }

    /// The grouped writers' counters (together, for PostgreSQL's lanes).
    pub fn stats(&self) -> &WriterStats {
        match &self.kind {
            Kind::Grouped(lane) => &lane.stats,
            Kind::Pooled { stats, .. } => stats,
        }
    }

    /// The grouped writers: 1 on SQLite, the lanes on PostgreSQL (0: every write pooled).
    pub fn lanes(&self) -> usize {
        match &self.kind {
            Kind::Grouped(_) => 1,
            Kind::Pooled { lanes, .. } => lanes.len(),
        }
    }

    /// PostgreSQL: whether a lane has writes queued or being committed, or answered some
    /// within `WRITING_AFTER_ANSWER_MS` (never on SQLite, nor without lanes).
    pub fn lanes_writing(&self) -> bool {
        match &self.kind {
            Kind::Pooled { lanes, stats, .. } if !lanes.is_empty() => stats.writing(),
            _ => false,
        }
    }

    /// Runs `write` as one atomic unit: all it wrote commits, or (when it returns an error)
    /// none of it. Blocks until the outcome is durable: call from `web::block`.
    pub fn write<T, E, F>(&self, write: F) -> Result<T, E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        match &self.kind {
            Kind::Pooled { pool, .. } => write_pooled(pool, write),
            Kind::Grouped(lane) => {
                let (reply, answer) = mpsc::sync_channel::<Result<T, E>>(1);
                lane.enqueue(write, Reply::Blocking(reply))?;
                answer.recv().unwrap_or(Err(WriteError::Stopped.into()))
            }
        }
    }

    /// Starts `write` like `write`, without waiting on the calling thread for the grouped
    /// writer: the returned answer is awaited (`Answer::outcome`), so no thread is held while
    /// the write waits for its group's commit. On PostgreSQL the write runs on the calling
    /// thread, as `write` does (call from `web::block`).
    pub fn submit<T, E, F>(&self, write: F) -> Answer<T, E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        match &self.kind {
            Kind::Pooled { pool, .. } => Answer::Ready(write_pooled(pool, write)),
            Kind::Grouped(lane) => lane.submit(write),
        }
    }

    /// `submit` for a write of one member's, `key` (a hash of the member): on PostgreSQL it
    /// goes to the lane of that key (when there are lanes), so one member's writes are never
    /// in two groups at once.
    pub fn submit_for<T, E, F>(&self, key: u64, write: F) -> Answer<T, E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        match &self.kind {
            Kind::Pooled { lanes, .. } if !lanes.is_empty() => {
                let lane = (key % lanes.len() as u64) as usize;
                lanes[lane].submit(write)
            }
            _ => self.submit(write),
        }
    }

    /// `submit_for` for a new receipt priced before its write: in a lane (PostgreSQL), it is
    /// posted together with its group's receipts (`together::post_receipts`), or, when it cannot
    /// be, by `write`; elsewhere by `write`.
    pub fn submit_receipt<E, F>(
        &self,
        key: u64,
        receipt: PricedReceipt,
        mut write: F,
    ) -> Answer<Posted, E>
    where
        F: FnMut(&mut Conn, &PricedReceipt) -> Result<Posted, E> + Send + 'static,
        E: WriteFailure + From<PostError> + Send + 'static,
    {
        match &self.kind {
            Kind::Pooled { lanes, .. } if !lanes.is_empty() => {
                let lane = &lanes[(key % lanes.len() as u64) as usize];
                let (reply, answer) = oneshot::channel();
                let job = Box::new(ReceiptWrite {
                    receipt,
                    write,
                    result: None,
                    reply: Reply::Awaited(reply),
                });
                match lane.enqueue_job(job) {
                    Ok(()) => Answer::Queued(answer),
                    Err(refused) => Answer::Ready(Err(refused)),
                }
            }
            _ => self.submit_for(key, move |conn| write(conn, &receipt)),
        }
    }
}

/// Runs a write in its own transaction on a pooled connection (PostgreSQL), again from the
/// start when the database ended it for a deadlock or a serialization failure.
fn write_pooled<T, E, F>(pool: &Pool, mut write: F) -> Result<T, E>
where
    F: FnMut(&mut Conn) -> Result<T, E>,
    E: WriteFailure,
{
    let mut conn = pool
        .get()
        .map_err(|e| E::from(WriteError::Busy(Busy::Pool(e))))?;
    let mut attempt = 1;
    loop {
        match connection::write_transaction(&mut conn, &mut write) {
            Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                attempt += 1;
                back_off(attempt);
            }
            other => return other,
        }
    }
}

/// Waits before the `attempt`th run of a write (or group) PostgreSQL ended transiently, longer
/// each time, so that the other side of a deadlock can finish first.
fn back_off(attempt: usize) {
    std::thread::sleep(std::time::Duration::from_millis((attempt * attempt) as u64));
}

/// Moves what is waiting in `queue` to `taken`, until it holds `taken_max`.
pub(super) fn take_waiting<T>(queue: &Receiver<T>, taken: &mut Vec<T>, taken_max: usize) {
    while taken.len() < taken_max {
        match queue.try_recv() {
            Ok(item) => taken.push(item),
            Err(_) => break,
        }
    }
}

/// Asks the scheduler to favour the writer thread: every write waits on it, so under a flood of
/// reads it must not get only its one-in-N share of the cores (measured: new trades during
/// balance reads went from 2,800/s to 3,700/s). Needs CAP_SYS_NICE (root has it); without it
/// the writer runs at the normal priority.
fn raise_priority() {
    if let Err(e) = crate::priority::set_this_threads_nice(-10) {
        log::info!(
            "the ledger writer runs at the normal priority (raising it needs CAP_SYS_NICE): {e}"
        );
    }
}

/// Groups run with a savepoint per write after a group in which a write failed, before the
/// writer tries a group without them again.
const CAREFUL_GROUPS: usize = 8;

/// The grouped writer: its connection and what it keeps between groups.
struct GroupWriter {
    manager: Manager,
    conn: Conn,
    /// Groups still to run with a savepoint per write (see `commit_group`).
    careful_groups: usize,
}

impl GroupWriter {
    /// The loop: until every `Writer` is gone. A connection that breaks (the database file's
    /// disk gone away, say) is opened again, once a second until it opens; writes meanwhile
    /// wait in the queue or are refused as busy.
    fn run(&mut self, queue: Receiver<Job>, stats: &WriterStats, batch_max: usize) {
        let mut group: Vec<Job> = Vec::with_capacity(batch_max);
        while let Ok(first) = queue.recv() {
            group.push(first);
            take_waiting(&queue, &mut group, batch_max);
            let writes = group.len();
            stats.running.fetch_add(writes, Ordering::Relaxed);
            stats.waiting.fetch_sub(writes, Ordering::Relaxed);
            stats.groups.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(writes, Ordering::Relaxed);
            self.commit_group(&mut group, stats);
            stats
                .answered_at_ms
                .store(stats.now_ms(), Ordering::Relaxed);
            stats.running.fetch_sub(writes, Ordering::Relaxed);
            while self.conn.is_broken() {
                log::error!("the ledger writer's connection broke; opening it again");
                match self.manager.connect() {
                    Ok(fresh) => self.conn = fresh,
                    Err(e) => {
                        log::error!("the ledger writer cannot open its connection: {e}");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            }
        }
    }

    /// Runs a group of writes in one transaction and answers every write of it once the
    /// commit is durable.
    ///
    /// Most groups are run straight through (`run_straight`): a savepoint per write costs its
    /// statements and a copy of every page the write touches that earlier writes of the group
    /// touched (profiled: a sixth of the writer's time). When a write of such a group fails,
    /// the whole group is rolled back and run again carefully, each write in its own savepoint
    /// (`run_careful`), so that only the failing write fails; the next `CAREFUL_GROUPS` groups
    /// are run carefully too, so that a run of failing writes costs each group once.
    ///
    /// On PostgreSQL a write ended for a deadlock or a serialization failure (or that lost a
    /// race to another process) runs its whole group again from the start, up to
    /// `TRANSIENT_ATTEMPTS_MAX` times: rolling back only its savepoint would keep the locks of
    /// the writes before it, which the other side of a deadlock waits for.
    fn commit_group(&mut self, group: &mut Vec<Job>, stats: &WriterStats) {
        if self.careful_groups == 0 {
            let mut attempt = 1;
            loop {
                match run_straight(&mut self.conn, group, &stats.together) {
                    Straight::Committed => {
                        for job in group.drain(..) {
                            job.answer(None);
                        }
                        return;
                    }
                    Straight::Failed(message) => {
                        for job in group.drain(..) {
                            job.answer(Some(&message));
                        }
                        return;
                    }
                    Straight::Transient if attempt < TRANSIENT_ATTEMPTS_MAX => {
                        attempt += 1;
                        back_off(attempt);
                    }
                    Straight::WriteFailed | Straight::Transient => {
                        self.careful_groups = CAREFUL_GROUPS;
                        break;
                    }
                }
            }
        } else {
            self.careful_groups -= 1;
        }
        if run_careful(&mut self.conn, group) {
            self.careful_groups = CAREFUL_GROUPS;
        }
    }
}

type Transactions = <Conn as Connection>::TransactionManager;

/// How a group run without savepoints ended.
enum Straight {
    /// Every write succeeded and the group is durable.
    Committed,
    /// The group could not begin or commit: nothing of it was written.
    Failed(String),
    /// A write failed: the group was rolled back, to be run with a savepoint per write.
    WriteFailed,
    /// A write on PostgreSQL failed transiently: the group was rolled back, to be run again.
    Transient,
}

/// Runs every write of a group in one transaction, without savepoints, and commits.
fn run_straight(conn: &mut Conn, group: &mut [Job], together: &AtomicUsize) -> Straight {
    if let Err(error) = connection::begin_write(conn) {
        let message = error.to_string();
        log::error!("the ledger writer cannot begin a transaction: {message}");
        return Straight::Failed(message);
    }
    let posted = match post_together(conn, group) {
        Ok(posted) => posted,
        Err(ran) => {
            if let Err(e) = Transactions::rollback_transaction(conn) {
                log::error!("the ledger writer could not roll back: {e}");
            }
            return match ran {
                Ran::Transient => Straight::Transient,
                _ => Straight::WriteFailed,
            };
        }
    };
    let posted_together = posted.iter().filter(|p| **p).count();
    for (job, posted) in group.iter_mut().zip(posted) {
        if posted {
            continue;
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn)));
        if !matches!(ran, Ok(Ran::Done)) {
            if let Err(e) = Transactions::rollback_transaction(conn) {
                log::error!("the ledger writer could not roll back: {e}");
            }
            return match (ran, &*conn) {
                (Ok(Ran::Transient), Conn::Postgres(_)) => Straight::Transient,
                _ => Straight::WriteFailed,
            };
        }
    }
    match Transactions::commit_transaction(conn) {
        Ok(()) => {
            together.fetch_add(posted_together, Ordering::Relaxed);
            Straight::Committed
        }
        Err(error) => {
            let message = error.to_string();
            log::error!("the ledger writer could not commit a group: {message}");
            if let Err(e) = Transactions::rollback_transaction(conn) {
                log::error!("the ledger writer could not roll back: {e}");
            }
            Straight::Failed(message)
        }
    }
}

/// Posts the group's new receipts together (`together::post_receipts`), inside the group's
/// transaction, and says which writes of the group that posted. `Err`: how the posting failed
/// (`Transient`: a deadlock, to run the group again; otherwise to run each write alone).
fn post_together(conn: &mut Conn, group: &mut [Job]) -> Result<Vec<bool>, Ran> {
    let mut posted = vec![false; group.len()];
    let receipts: Vec<(usize, &PricedReceipt)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, job)| job.receipt().map(|receipt| (i, receipt)))
        .collect();
    if receipts.len() < 2 {
        return Ok(posted);
    }
    let list: Vec<&PricedReceipt> = receipts.iter().map(|(_, receipt)| *receipt).collect();
    let tried = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        together::post_receipts(conn, &list)
    }));
    let outcomes = match tried {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(PostError::Race)) => return Err(Ran::Transient),
        Ok(Err(error)) => {
            log::debug!("receipts posted together failed, each is posted alone: {error}");
            return Err(Ran::Failed);
        }
        Err(_) => {
            log::error!("posting receipts together panicked; each is posted alone");
            return Err(Ran::Failed);
        }
    };
    let places: Vec<usize> = receipts.iter().map(|(i, _)| *i).collect();
    for (i, outcome) in places.into_iter().zip(outcomes) {
        if let Some(outcome) = outcome {
            group[i].posted(outcome);
            posted[i] = true;
        }
    }
    Ok(posted)
}

/// Runs a group of writes in one transaction, each in its own savepoint (run again, up to
/// `TRANSIENT_ATTEMPTS_MAX` times, when it fails transiently), commits, then answers every
/// write of the group. True when a write of the group failed.
fn run_careful(conn: &mut Conn, group: &mut Vec<Job>) -> bool {
    if let Err(error) = connection::begin_write(conn) {
        let message = error.to_string();
        log::error!("the ledger writer cannot begin a transaction: {message}");
        for job in group.drain(..) {
            job.answer(Some(&message));
        }
        return false;
    }
    let mut any_failed = false;
    let mut answers: Vec<(Job, Option<String>)> = Vec::with_capacity(group.len());
    for mut job in group.drain(..) {
        let mut attempt = 1;
        let failed = loop {
            if let Err(error) = Transactions::begin_transaction(conn) {
                break Some(error.to_string());
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn)));
            any_failed |= !matches!(ran, Ok(Ran::Done));
            let ended = match ran {
                Ok(Ran::Done) => Transactions::commit_transaction(conn),
                _ => Transactions::rollback_transaction(conn),
            };
            match (ran, ended) {
                (Ok(Ran::Transient), Ok(())) if attempt < TRANSIENT_ATTEMPTS_MAX => attempt += 1,
                (Ok(_), Ok(())) => break None,
                (Ok(_), Err(error)) => break Some(error.to_string()),
                (Err(_), _) => {
                    log::error!("a ledger write panicked; it was rolled back");
                    break Some("the write failed inside point-engine".to_string());
                }
            }
        };
        answers.push((job, failed));
    }
    let committed = Transactions::commit_transaction(conn).map_err(|e| e.to_string());
    if let Err(message) = &committed {
        log::error!("the ledger writer could not commit a group: {message}");
        if let Err(e) = Transactions::rollback_transaction(conn) {
            log::error!("the ledger writer could not roll back: {e}");
        }
    }
    for (job, failed) in answers {
        let failed = committed.as_ref().err().or(failed.as_ref());
        job.answer(failed.map(String::as_str));
    }
    any_failed
}
