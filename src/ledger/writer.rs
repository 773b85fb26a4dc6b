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

/// A write in the queue: `run` runs it in the writer's transaction and says whether it
/// succeeded, with the answer to give its caller once the group's commit is known; `refuse`
/// answers it without running it.
struct Job {
    run: Box<dyn FnOnce(&mut Conn) -> Ran + Send>,
    refuse: Box<dyn FnOnce(String) + Send>,
}

struct Ran {
    ok: bool,
    answer: Answer,
}

/// Answers a write's caller, given the group's commit failure, if any.
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

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
                let conn = Manager::new(url.clone()).connect().map_err(|source| {
                    connection::ConnectError::Writer {
                        url: url.to_string(),
                        message: source.to_string(),
                    }
                })?;
                let (jobs, queue) = mpsc::sync_channel::<Job>(limits.queue_max);
                let stats = Arc::new(WriterStats::default());
                let counters = stats.clone();
                std::thread::Builder::new()
                    .name("ledger-writer".into())
                    .spawn(move || run_groups(conn, queue, &counters, limits.batch_max))
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
                let refusal = reply.clone();
                let job = Job {
                    run: Box::new(move |conn| {
                        let result = write(conn);
                        Ran {
                            ok: result.is_ok(),
                            answer: Box::new(move |commit_failed| {
                                let result = match commit_failed {
                                    None => result,
                                    Some(error) => {
                                        Err(WriteError::Commit(error.to_string()).into())
                                    }
                                };
                                let _ = reply.send(result);
                            }),
                        }
                    }),
                    refuse: Box::new(move |error| {
                        let _ = refusal.send(Err(WriteError::Commit(error).into()));
                    }),
                };
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

/// The grouped writer's loop: until every `Writer` is gone.
fn run_groups(mut conn: Conn, queue: Receiver<Job>, stats: &WriterStats, batch_max: usize) {
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
        if conn.is_broken() {
            log::error!("the ledger writer's connection broke; it stops");
            return;
        }
    }
}

type Transactions = <Conn as Connection>::TransactionManager;

/// Runs a group of writes in one transaction, each in its own savepoint, commits, then answers
/// every write of the group.
fn commit_group(conn: &mut Conn, group: &mut Vec<Job>) {
    if let Err(error) = connection::begin_write(conn) {
        let message = error.to_string();
        log::error!("the ledger writer cannot begin a transaction: {message}");
        for job in group.drain(..) {
            (job.refuse)(message.clone());
        }
        return;
    }
    let mut answers: Vec<Answer> = Vec::with_capacity(group.len());
    for Job { run, refuse } in group.drain(..) {
        if let Err(error) = Transactions::begin_transaction(conn) {
            refuse(error.to_string());
            continue;
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(conn)));
        let ok = matches!(&ran, Ok(Ran { ok: true, .. }));
        let ended = if ok {
            Transactions::commit_transaction(conn)
        } else {
            Transactions::rollback_transaction(conn)
        };
        match (ran, ended) {
            (Ok(ran), Ok(())) => answers.push(ran.answer),
            (Ok(ran), Err(error)) => {
                let message = error.to_string();
                answers.push(Box::new(move |_| (ran.answer)(Some(&message))));
            }
            // Its caller sees the writer gone for it (its answer was dropped in the panic).
            (Err(_), _) => log::error!("a ledger write panicked; it was rolled back"),
        }
    }
    let committed = Transactions::commit_transaction(conn).map_err(|e| e.to_string());
    if let Err(message) = &committed {
        log::error!("the ledger writer could not commit a group: {message}");
        if let Err(e) = Transactions::rollback_transaction(conn) {
            log::error!("the ledger writer could not roll back: {e}");
        }
    }
    for answer in answers {
        answer(committed.as_ref().err().map(String::as_str));
    }
}
