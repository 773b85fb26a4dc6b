//! The one way writes reach the ledger.
//!
//! SQLite: one thread owns the write connection and commits in groups. A write is sent over a
//! bounded queue; the thread takes everything waiting (up to `batch_max`), opens one
//! `BEGIN IMMEDIATE`, runs each write in its own savepoint (released on success, rolled back on
//! its own error, which only that write gets), commits once (`synchronous = FULL`: one fsync
//! for the group) and only then answers every write of the group. A write sees what the writes
//! before it in its group wrote. Nothing is answered before its commit is durable, and nobody
//! queues in SQLite's busy handler. A full queue is refused at once (`Busy::QueueFull`).
//!
//! PostgreSQL: each write runs in its own transaction on a pooled connection (many writers at
//! once, serialized per member by row locks), and is run again from the start when PostgreSQL
//! ends it for a deadlock or a serialization failure.

use super::connection::{self, Conn, Manager, Pool};
use diesel::connection::TransactionManager;
use diesel::r2d2::{ManageConnection, R2D2Connection};
use diesel::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

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
    /// Writes waiting for the writer before new ones are refused (503, `Retry-After`).
    pub queue_max: usize,
    /// Writes committed together at most.
    pub batch_max: usize,
}

impl Default for WriterLimits {
    fn default() -> Self {
        Self {
            queue_max: 4096,
            batch_max: 512,
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
}

/// How one run of a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Done,
    Failed,
    /// Failed in a way a fresh run may not: run it again (after rolling it back).
    Transient,
}

struct Pending<T, E, F> {
    write: F,
    result: Option<Result<T, E>>,
    reply: SyncSender<Result<T, E>>,
}

impl<T, E, F> Queued for Pending<T, E, F>
where
    F: FnMut(&mut Conn) -> Result<T, E> + Send,
    T: Send,
    E: WriteFailure + Send,
{
    fn run(&mut self, conn: &mut Conn) -> Ran {
        let result = (self.write)(conn);
        let ran = match &result {
            Ok(_) => Ran::Done,
            Err(e) if e.is_transient() => Ran::Transient,
            Err(_) => Ran::Failed,
        };
        self.result = Some(result);
        ran
    }

    fn answer(self: Box<Self>, failed: Option<&str>) {
        let result = match (failed, self.result) {
            (None, Some(result)) => result,
            (Some(error), _) => Err(WriteError::Commit(error.to_string()).into()),
            (None, None) => Err(WriteError::Stopped.into()),
        };
        let _ = self.reply.send(result);
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
    Grouped {
        jobs: SyncSender<Job>,
        stats: Arc<WriterStats>,
        limits: WriterLimits,
    },
    Pooled(Pool),
}

/// Counters of the grouped writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Writes in the queue now.
    pub waiting: AtomicUsize,
    /// Groups committed (or failed) so far.
    pub groups: AtomicUsize,
    /// Writes run so far.
    pub writes: AtomicUsize,
}

impl Writer {
    /// The writer for this database: grouped on its own connection for SQLite, pooled for
    /// PostgreSQL.
    pub fn start(
        url: &super::DatabaseUrl,
        pool: &Pool,
        limits: WriterLimits,
    ) -> Result<Self, connection::ConnectError> {
        match url {
            super::DatabaseUrl::Postgres(_) => Ok(Self {
                kind: Kind::Pooled(pool.clone()),
            }),
            super::DatabaseUrl::Sqlite(_) => {
                let manager = Manager::new(url.clone());
                let conn =
                    manager
                        .connect()
                        .map_err(|source| connection::ConnectError::Writer {
                            url: url.to_string(),
                            message: source.to_string(),
                        })?;
                let (jobs, queue) = mpsc::sync_channel::<Job>(limits.queue_max);
                let stats = Arc::new(WriterStats::default());
                let counters = stats.clone();
                std::thread::Builder::new()
                    .name("ledger-writer".into())
                    .spawn(move || {
                        raise_priority();
                        run_groups(manager, conn, queue, &counters, limits.batch_max)
                    })
                    .expect("a thread starts");
                Ok(Self {
                    kind: Kind::Grouped {
                        jobs,
                        stats,
                        limits,
                    },
                })
            }
        }
    }

    /// The grouped writer's counters (`None` for PostgreSQL).
    pub fn stats(&self) -> Option<&WriterStats> {
        match &self.kind {
            Kind::Grouped { stats, .. } => Some(stats),
            Kind::Pooled(_) => None,
        }
    }

    /// Runs `write` as one atomic unit: all it wrote commits, or (when it returns an error)
    /// none of it. Blocks until the outcome is durable: call from `web::block`.
    pub fn write<T, E, F>(&self, mut write: F) -> Result<T, E>
    where
        F: FnMut(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: WriteFailure + Send + 'static,
    {
        match &self.kind {
            Kind::Pooled(pool) => {
                let mut conn = pool
                    .get()
                    .map_err(|e| E::from(WriteError::Busy(Busy::Pool(e))))?;
                let mut attempt = 1;
                loop {
                    match connection::write_transaction(&mut conn, &mut write) {
                        Err(e) if e.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                            attempt += 1;
                            std::thread::sleep(std::time::Duration::from_millis(
                                (attempt * attempt) as u64,
                            ));
                        }
                        other => return other,
                    }
                }
            }
            Kind::Grouped {
                jobs,
                stats,
                limits,
            } => {
                let (reply, answer) = mpsc::sync_channel::<Result<T, E>>(1);
                let job: Job = Box::new(Pending {
                    write,
                    result: None,
                    reply,
                });
                stats.waiting.fetch_add(1, Ordering::Relaxed);
                if let Err(refused) = jobs.try_send(job) {
                    stats.waiting.fetch_sub(1, Ordering::Relaxed);
                    return Err(match refused {
                        TrySendError::Full(_) => Busy::QueueFull(limits.queue_max).into(),
                        TrySendError::Disconnected(_) => WriteError::Stopped,
                    }
                    .into());
                }
                answer.recv().unwrap_or(Err(WriteError::Stopped.into()))
            }
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

/// The grouped writer's loop: until every `Writer` is gone. A connection that breaks (the
/// database file's disk gone away, say) is opened again, once a second until it opens; writes
/// meanwhile wait in the queue or are refused as busy.
fn run_groups(
    manager: Manager,
    mut conn: Conn,
    queue: Receiver<Job>,
    stats: &WriterStats,
    batch_max: usize,
) {
    let mut group: Vec<Job> = Vec::with_capacity(batch_max);
    while let Ok(first) = queue.recv() {
        group.push(first);
        while group.len() < batch_max {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        stats.waiting.fetch_sub(group.len(), Ordering::Relaxed);
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.writes.fetch_add(group.len(), Ordering::Relaxed);
        commit_group(&mut conn, &mut group);
        while conn.is_broken() {
            log::error!("the ledger writer's connection broke; opening it again");
            match manager.connect() {
                Ok(fresh) => conn = fresh,
                Err(e) => {
                    log::error!("the ledger writer cannot open its connection: {e}");
                    std::thread::sleep(std::time::Duration::from_secs(1));
                }
            }
        }
    }
}

type Transactions = <Conn as Connection>::TransactionManager;

/// Runs a group of writes in one transaction, each in its own savepoint (run again, up to
/// `TRANSIENT_ATTEMPTS_MAX` times, when it fails transiently), commits, then answers every
/// write of the group.
fn commit_group(conn: &mut Conn, group: &mut Vec<Job>) {
    if let Err(error) = connection::begin_write(conn) {
        let message = error.to_string();
        log::error!("the ledger writer cannot begin a transaction: {message}");
        for job in group.drain(..) {
            job.answer(Some(&message));
        }
        return;
    }
    let mut answers: Vec<(Job, Option<String>)> = Vec::with_capacity(group.len());
    for mut job in group.drain(..) {
        let mut attempt = 1;
        let failed = loop {
            if let Err(error) = Transactions::begin_transaction(conn) {
                break Some(error.to_string());
            }
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(conn)));
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
}
