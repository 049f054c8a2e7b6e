//! Persistence of students and grades: SQLite (an embedded file, the
//! default) or PostgreSQL (shared by several instances), chosen by the URL.
//! The same SQL runs on both; each backend has its own migrations.
//!
//! Grades are written in groups: a writer task takes whatever requests have
//! queued (at most [`GROUP`]), stores them in one transaction and answers
//! them all once it committed, so concurrent writers share one commit and its
//! fsync and each is still durable before it is answered. A failed commit
//! fails exactly the requests of its group, none of them stored.
//!
//! On PostgreSQL every write also sends a `NOTIFY` in its transaction, so
//! that the instances sharing the database drop their read snapshots the
//! moment it commits (see [`Writes::watch_changes`]). Each instance answers
//! every notification it acted on with an acknowledgement (another
//! `NOTIFY`), and a write is answered only once every instance listening
//! then (each names its listening connection, so `pg_stat_activity` lists
//! them) has acknowledged it: after a write is answered, no instance serves
//! a snapshot from before it. An instance that does not acknowledge within
//! [`ACK_LIMIT`] (stopped, say) is not waited for any longer, and logged;
//! it has stopped serving snapshots by then. Each instance notifies itself
//! every [`BEAT_EVERY`], and trusts that it has heard every write only for
//! [`TRUST_AFTER_BEAT`] after sending a beat it heard back (notifications
//! arrive in commit order, so a beat heard means every write committed
//! before it was heard). A listener that stalls or silently lost its
//! connection thus stops trusting well before a writer stops waiting.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gradebook_shared::grading::{Grade, NewGrade, NewStudent, Student};
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Most grades committed in one transaction.
pub const GROUP: usize = 256;
/// Grade requests waiting for the writer, at most; beyond that senders wait.
const QUEUE: usize = 4 * GROUP;
/// The PostgreSQL channel every write notifies.
const CHANNEL: &str = "gradebook_grading";
/// Longest wait for the acknowledgements of a write (see
/// [`Changes::acknowledged`]); past it the write is answered anyway.
const ACK_LIMIT: Duration = Duration::from_secs(1);
/// How often an instance notifies itself (see the module's text).
const BEAT_EVERY: Duration = Duration::from_millis(50);
/// How long a beat heard back lets an instance trust that it heard every
/// write. Its feed's subscribers trust for at most `LEASE` (250 ms) longer,
/// and all of it must end before [`ACK_LIMIT`].
const TRUST_AFTER_BEAT: Duration = Duration::from_millis(500);
/// How a listening connection names itself, followed by its instance.
const LISTENER_NAME: &str = "gradebook-grading:";
/// The instances listening on this database now.
const LISTENERS: &str = "SELECT application_name FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name LIKE 'gradebook-grading:%'";

#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite takes one writer at a time; the lock queues ours fairly in
    /// memory instead of letting them spin on SQLITE_BUSY with growing sleeps.
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

/// Grading's writes to a [`Db`]: grades go to a writer task (started with
/// the first grade, it ends when the last clone of this is dropped), and on
/// PostgreSQL every write notifies the other instances.
#[derive(Clone, Debug)]
pub struct Writes {
    db: Db,
    grades: Arc<std::sync::OnceLock<mpsc::Sender<Pending>>>,
    changes: Arc<Changes>,
}

/// A committed grade (`None`: no such student) and the number of its group
/// (groups commit one after another, numbered from 1).
pub type Committed = (u64, Option<Grade>);

/// A grade waiting for the writer, and where its outcome goes.
#[derive(Debug)]
struct Pending {
    student_id: i64,
    grade: NewGrade,
    /// The committed grade (`None`: no such student), sent once every
    /// instance has acknowledged its group (see [`Changes::acknowledged`]).
    reply: oneshot::Sender<Result<Committed, Arc<sqlx::Error>>>,
}

/// This instance's notifications on PostgreSQL: a write's carries
/// `WRITER:N`, its acknowledgements `ack:WRITER:N:INSTANCE` (in hex).
#[derive(Debug)]
struct Changes {
    instance: u64,
    sent: AtomicU64,
    /// For each of our writes not answered yet, the instances that have
    /// acknowledged it.
    acks: std::sync::Mutex<HashMap<u64, HashSet<u64>>>,
    /// Moves on with every acknowledgement of ours received.
    acked: watch::Sender<u64>,
    /// Whether our listener runs: we hear acknowledgements only then.
    listening: std::sync::atomic::AtomicBool,
    /// Until when (milliseconds of `clock`) we know we heard every write.
    heard_until: AtomicU64,
    clock: std::time::Instant,
}

/// What [`Writes::watch_changes`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Listening (again): anything read before may have missed writes.
    Listening,
    /// Not listening: other instances' writes go unnoticed until `Listening`.
    Deaf,
    /// Some instance committed a write.
    Wrote,
}

/// Runs `$body` with `$conn` an executor for one write: on SQLite holding
/// the write lock; on PostgreSQL inside a transaction that also notifies the
/// other instances. Gives the body's value and the notification's number (0
/// on SQLite).
macro_rules! writing {
    ($db:expr, |$conn:ident| $body:expr) => {
        match &$db.db {
            Db::Sqlite(pool, lock) => {
                let _writing = lock.lock().await;
                let $conn = pool;
                ($body, 0)
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let $conn = &mut *tx;
                let value = $body;
                let notified = $db.changes.notify(&mut tx).await?;
                tx.commit().await?;
                (value, notified)
            }
        }
    };
}

/// Runs the same query code against whichever pool `db` holds.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool, _) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Inserts the grades of `group` on `conn` in one statement (on SQLite a
/// transaction of its own: one trip to the connection's thread and one
/// commit for the whole group): the grades' IDs, `None` for a student that
/// does not exist (looked up by the same statement, so the answer holds at
/// the commit).
macro_rules! insert_grades {
    ($conn:expr, $group:expr, $database:ty) => {{
        let group: &[Pending] = $group;
        let mut query =
            sqlx::QueryBuilder::<$database>::new("INSERT INTO grades (student_id, title, kind, score) SELECT * FROM (");
        query.push_values(group, |mut row, p| {
            row.push_bind(p.student_id)
                .push_bind(&p.grade.title)
                .push_bind(p.grade.kind.as_str())
                .push_bind(p.grade.score);
        });
        query
            .push(") AS given WHERE column1 IN (SELECT id FROM students) RETURNING id, student_id, title, kind, score");
        let rows = query.build().fetch_all(&mut *$conn).await?;
        // RETURNING gives rows in no promised order: each goes to a request
        // with the same content (equal requests are interchangeable), the
        // lowest ID to the earliest. (`+ 0.0` makes -0 and 0 one key.)
        let key =
            |student: i64, title: String, kind: String, score: f64| (student, title, kind, (score + 0.0).to_bits());
        let mut stored: HashMap<_, std::collections::VecDeque<i64>> = HashMap::new();
        for row in &rows {
            let key = key(row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
            stored.entry(key).or_default().push_back(row.try_get(0)?);
        }
        for ids in stored.values_mut() {
            ids.make_contiguous().sort_unstable();
        }
        let ids: Vec<Option<i64>> = group
            .iter()
            .map(|p| {
                let key = key(p.student_id, p.grade.title.clone(), p.grade.kind.as_str().to_owned(), p.grade.score);
                stored.get_mut(&key).and_then(|ids| ids.pop_front())
            })
            .collect();
        let matched = ids.iter().flatten().count();
        if matched != rows.len() {
            return Err(sqlx::Error::Protocol(format!("{} grades stored, {matched} matched", rows.len())));
        }
        ids
    }};
}

const STUDENTS: &str = "SELECT id, first_name, last_name FROM students ORDER BY id";
const GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades ORDER BY student_id, id";
const STUDENT: &str = "SELECT id, first_name, last_name FROM students WHERE id = $1";
const STUDENT_GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades WHERE student_id = $1 ORDER BY id";
const ADD_STUDENT: &str = "INSERT INTO students (first_name, last_name) VALUES ($1, $2) RETURNING id";
const REMOVE_GRADE: &str = "DELETE FROM grades WHERE student_id = $1 AND id = $2";

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a
    /// SQLite file (and its folder) when needed, and migrates.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(5)).connect(url).await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // WAL lets reads proceed during a write; FULL makes every
                // commit durable before it is acknowledged.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool, Arc::default())
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://...");
        };
        Ok(db)
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Postgres(..))
    }

    pub async fn students(&self) -> sqlx::Result<Vec<Student>> {
        let (students, grades) = on_pool!(self, |pool| {
            let students = sqlx::query(STUDENTS).fetch_all(pool).await?;
            let students = students
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?)))
                .collect::<sqlx::Result<Vec<_>>>()?;
            let grades = sqlx::query(GRADES).fetch_all(pool).await?;
            let grades = grades
                .iter()
                .map(|r| {
                    Ok((r.try_get::<i64, _>(1)?, grade(r.try_get(0)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
                })
                .collect::<sqlx::Result<Vec<_>>>()?;
            (students, grades)
        });
        let mut grades = grades.into_iter().peekable();
        Ok(students
            .into_iter()
            .map(|(id, first_name, last_name)| {
                let mut mine = vec![];
                while let Some((_, g)) = grades.next_if(|(sid, _)| *sid == id) {
                    mine.push(g);
                }
                student(id, first_name, last_name, mine)
            })
            .collect())
    }

    pub async fn student(&self, id: i64) -> sqlx::Result<Option<Student>> {
        on_pool!(self, |pool| {
            let Some(row) = sqlx::query(STUDENT).bind(id).fetch_optional(pool).await? else { return Ok(None) };
            let rows = sqlx::query(STUDENT_GRADES).bind(id).fetch_all(pool).await?;
            let grades = rows
                .iter()
                .map(|r| Ok(grade(r.try_get(0)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)))
                .collect::<sqlx::Result<Vec<_>>>()?;
            Ok(Some(student(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, grades)))
        })
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

impl Writes {
    pub fn new(db: Db) -> Self {
        Self { db, grades: Default::default(), changes: Arc::new(Changes::new()) }
    }

    /// Stores a grade, committed with whatever other grades queued beside
    /// it; `None` when the student does not exist. An error is its whole
    /// group's: shared by every request in it, none of them stored.
    pub async fn add_grade(&self, student_id: i64, grade: NewGrade) -> Result<Committed, Arc<sqlx::Error>> {
        let (reply, outcome) = oneshot::channel();
        // The writer stops only once every clone of this is dropped, or if
        // it panicked: either way nothing is stored.
        let gone = || Arc::new(sqlx::Error::PoolClosed);
        let grades = self.grades.get_or_init(|| {
            let (grades, queue) = mpsc::channel(QUEUE);
            tokio::spawn(write_grades(self.db.clone(), self.changes.clone(), queue));
            grades
        });
        grades.send(Pending { student_id, grade, reply }).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    pub async fn add_student(&self, s: &NewStudent) -> sqlx::Result<Student> {
        let (id, notified): (i64, u64) = writing!(self, |conn| {
            sqlx::query_scalar(ADD_STUDENT).bind(&s.first_name).bind(&s.last_name).fetch_one(conn).await?
        });
        self.changes.acknowledged(&self.db, notified).await;
        Ok(student(id, s.first_name.clone(), s.last_name.clone(), vec![]))
    }

    /// Removes a grade; false when the student has no such grade.
    pub async fn remove_grade(&self, student_id: i64, grade_id: i64) -> sqlx::Result<bool> {
        let (affected, notified) = writing!(self, |conn| {
            sqlx::query(REMOVE_GRADE).bind(student_id).bind(grade_id).execute(conn).await?.rows_affected()
        });
        self.changes.acknowledged(&self.db, notified).await;
        Ok(affected > 0)
    }

    /// Whether this instance knows, right now, that it has heard every write
    /// committed (see the module's text): always on SQLite.
    pub fn hears_everything(&self) -> bool {
        match self.db {
            Db::Sqlite(..) => true,
            Db::Postgres(_) => {
                self.changes.listening.load(Ordering::SeqCst)
                    && self.changes.now_ms() < self.changes.heard_until.load(Ordering::SeqCst)
            }
        }
    }

    /// On PostgreSQL, listens for every instance's writes (ours included)
    /// until `shutdown`, telling `report` of each (and acknowledging another
    /// instance's once the wait `report` gives back is over), and of when it
    /// starts and stops listening; a lost connection is made again, with backoff. On
    /// SQLite returns at once: this process is the only writer there.
    pub async fn watch_changes<F>(&self, report: impl Fn(Change) -> Option<F>, shutdown: CancellationToken)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Db::Postgres(pool) = &self.db else { return };
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let connect = async {
                let mut listener = PgListener::connect_with(pool).await?;
                // A lost connection is made anew below, named again.
                listener.eager_reconnect(false);
                listener.listen(CHANNEL).await?;
                // Named once listening: from now on writers wait for us.
                let name = format!("{LISTENER_NAME}{:x}", self.changes.instance);
                sqlx::query(&format!("SET application_name = '{name}'")).execute(&mut listener).await?;
                sqlx::Result::<PgListener>::Ok(listener)
            };
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return,
                connected = connect => connected,
            };
            let mut listener = match connected {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for other instances' writes; reads go to the database");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            self.changes.listening.store(true, Ordering::SeqCst);
            drop(report(Change::Listening));
            let beating = shutdown.child_token();
            tokio::spawn(beat(pool.clone(), self.changes.clone(), beating.clone()));
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = listener.try_recv() => next,
                };
                let notification = match next {
                    Ok(Some(notification)) => notification,
                    Ok(None) => {
                        tracing::warn!("lost the connection that hears other instances' writes");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the notifications of other instances' writes");
                        break;
                    }
                };
                let Some(heard) = Heard::parse(notification.payload()) else { continue };
                match heard {
                    Heard::Write { writer, n } => {
                        // Dropped at once; acknowledged once our feed's
                        // subscribers heard of it, in a task of its own, so
                        // that the notifications behind it are not held up.
                        let told = report(Change::Wrote);
                        if writer == self.changes.instance {
                            self.changes.ack(n, writer);
                        } else {
                            let ack = format!("ack:{writer:x}:{n}:{:x}", self.changes.instance);
                            let pool = pool.clone();
                            tokio::spawn(async move {
                                if let Some(told) = told {
                                    told.await;
                                }
                                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                                    .bind(CHANNEL)
                                    .bind(ack)
                                    .execute(&pool)
                                    .await;
                                if let Err(e) = sent {
                                    tracing::warn!(error = %e, "cannot acknowledge another instance's write");
                                }
                            });
                        }
                    }
                    Heard::Ack { writer, n, from } if writer == self.changes.instance => self.changes.ack(n, from),
                    Heard::Ack { .. } => {}
                    Heard::Beat { from, sent } if from == self.changes.instance => {
                        let until = sent.saturating_add(TRUST_AFTER_BEAT.as_millis() as u64);
                        self.changes.heard_until.fetch_max(until, Ordering::SeqCst);
                    }
                    Heard::Beat { .. } => {}
                }
            }
            beating.cancel();
            self.changes.heard_until.store(0, Ordering::SeqCst);
            self.changes.listening.store(false, Ordering::SeqCst);
            drop(report(Change::Deaf));
        }
    }
}

impl Db {
    /// The pool (and SQLite's write lock), for the accounts kept in the same
    /// database (`crate::accounts`).
    pub(crate) fn accounts_pool(&self) -> crate::accounts::store::Pool {
        match self {
            Db::Sqlite(pool, lock) => crate::accounts::store::Pool::Sqlite(pool.clone(), lock.clone()),
            Db::Postgres(pool) => crate::accounts::store::Pool::Postgres(pool.clone()),
        }
    }
}

/// Notifies this instance's beat every [`BEAT_EVERY`] until `stop`.
async fn beat(pool: PgPool, changes: Arc<Changes>, stop: CancellationToken) {
    let mut every = tokio::time::interval(BEAT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let payload = format!("beat:{:x}:{}", changes.instance, changes.now_ms());
        let sent = sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(payload).execute(&pool);
        // A beat not sent is a beat not heard: trust runs out.
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tokio::time::timeout(TRUST_AFTER_BEAT, sent) => {}
        }
    }
}

/// The grade writer: commits whatever queued, in groups of at most
/// [`GROUP`], until every sender is gone.
async fn write_grades(pool: Db, changes: Arc<Changes>, mut queue: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(GROUP);
    // On SQLite the writer keeps one connection: its page cache stays warm,
    // and no group waits for the pool.
    let mut writer = None;
    let mut committed_groups = 0;
    while queue.recv_many(&mut group, GROUP).await > 0 {
        let committed = commit_group(&pool, &changes, &mut writer, &group).await;
        if committed.is_err() {
            // Whatever state it is in, the next group starts on a fresh one.
            writer = None;
        }
        match committed {
            Ok((ids, notified)) => {
                committed_groups += 1;
                let number = committed_groups;
                let answers: Vec<_> = group
                    .drain(..)
                    .zip(ids)
                    .map(|(p, id)| {
                        let NewGrade { title, kind, score } = p.grade;
                        (p.reply, id.map(|id| Grade { id, title, kind: kind.to_string(), score }))
                    })
                    .collect();
                let answer = move |answers: Vec<(oneshot::Sender<_>, _)>| {
                    for (reply, grade) in answers {
                        // A requester whose client hung up needs no answer.
                        let _ = reply.send(Ok((number, grade)));
                    }
                };
                if notified == 0 {
                    answer(answers);
                } else {
                    // Waiting for the other instances is left to a task of
                    // its own: meanwhile the next group commits.
                    let (pool, changes) = (pool.clone(), changes.clone());
                    tokio::spawn(async move {
                        changes.acknowledged(&pool, notified).await;
                        answer(answers);
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, grades = group.len(), "a group of grades failed to commit; none is stored");
                let e = Arc::new(e);
                for p in group.drain(..) {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Stores `group` in one transaction: each grade's ID (`None`: no such
/// student), and the number of the notification sent (0 on SQLite). Any
/// error fails the whole group, rolled back: the grades were validated, so
/// an error here is the database's, not a request's.
async fn commit_group(
    pool: &Db,
    changes: &Changes,
    writer: &mut Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    group: &[Pending],
) -> sqlx::Result<(Vec<Option<i64>>, u64)> {
    match pool {
        Db::Sqlite(pool, lock) => {
            let _writing = lock.lock().await;
            let conn: &mut sqlx::SqliteConnection = match writer {
                Some(conn) => conn,
                None => writer.insert(pool.acquire().await?),
            };
            Ok((insert_grades!(conn, group, sqlx::Sqlite), 0))
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let ids = insert_grades!(tx, group, sqlx::Postgres);
            let notified = changes.notify(&mut tx).await?;
            tx.commit().await?;
            Ok((ids, notified))
        }
    }
}

/// A notification on [`CHANNEL`].
#[derive(Debug, PartialEq)]
enum Heard {
    Write {
        writer: u64,
        n: u64,
    },
    Ack {
        writer: u64,
        n: u64,
        from: u64,
    },
    /// An instance's beat, with when it was sent by its own clock.
    Beat {
        from: u64,
        sent: u64,
    },
}

impl Heard {
    fn parse(payload: &str) -> Option<Heard> {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let fields: Vec<&str> = payload.split(':').collect();
        match fields[..] {
            [writer, n] => Some(Heard::Write { writer: hex(writer)?, n: n.parse().ok()? }),
            ["ack", writer, n, from] => Some(Heard::Ack { writer: hex(writer)?, n: n.parse().ok()?, from: hex(from)? }),
            ["beat", from, sent] => Some(Heard::Beat { from: hex(from)?, sent: sent.parse().ok()? }),
            _ => None,
        }
    }
}

impl Changes {
    fn new() -> Self {
        Self {
            instance: rand::random(),
            sent: AtomicU64::new(0),
            acks: Default::default(),
            acked: watch::Sender::new(0),
            listening: Default::default(),
            heard_until: AtomicU64::new(0),
            clock: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Notes that instance `from` acted on our write `n`.
    fn ack(&self, n: u64, from: u64) {
        if let Some(acks) = self.acks.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&n) {
            acks.insert(from);
        }
        self.acked.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Sends this instance's next notification on `conn`, within its
    /// transaction (PostgreSQL delivers it at the commit, and never if it
    /// rolls back): its number.
    async fn notify(&self, conn: &mut PgConnection) -> sqlx::Result<u64> {
        let n = self.sent.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
            // A write that failed after this point leaves its entry behind:
            // keep only the latest ones.
            if acks.len() >= 4096
                && let Some(oldest) = acks.keys().min().copied()
            {
                acks.remove(&oldest);
            }
            acks.insert(n, HashSet::new());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(format!("{:x}:{n}", self.instance))
            .execute(conn)
            .await?;
        Ok(n)
    }

    /// Waits (at most [`ACK_LIMIT`]) until every instance listening now
    /// (ourselves included) has acknowledged our write `n`, i.e. dropped the
    /// snapshots it had from before. Not waited for while we do not listen:
    /// we would not hear the acknowledgements.
    async fn acknowledged(&self, db: &Db, n: u64) {
        let Db::Postgres(pool) = db else { return };
        if n == 0 || !self.listening.load(Ordering::SeqCst) {
            self.acks.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
            return;
        }
        let mut acked = self.acked.subscribe();
        let listeners = match sqlx::query_scalar::<_, String>(LISTENERS).fetch_all(pool).await {
            Ok(names) => names,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the instances to wait for");
                vec![]
            }
        };
        let listeners: HashSet<u64> = listeners
            .iter()
            .filter_map(|name| u64::from_str_radix(name.strip_prefix(LISTENER_NAME)?, 16).ok())
            .collect();
        let deadline = tokio::time::Instant::now() + ACK_LIMIT;
        loop {
            let missing: Vec<u64> = {
                let acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
                let heard = acks.get(&n);
                listeners.iter().filter(|l| !heard.is_some_and(|h| h.contains(l))).copied().collect()
            };
            if missing.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, acked.changed()).await.is_err() {
                let missing: Vec<String> = missing.iter().map(|m| format!("{m:x}")).collect();
                tracing::warn!(?missing, "instances did not acknowledge a write in time; answered anyway");
                break;
            }
        }
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).remove(&n);
    }
}

fn grade(id: i64, title: String, kind: String, score: f64) -> Grade {
    Grade { id, title, kind, score }
}

fn student(id: i64, first_name: String, last_name: String, grades: Vec<Grade>) -> Student {
    Student { id, first_name, last_name, average: Student::average_of(&grades), grades }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradebook_shared::grading::GradeType;

    /// A new SQLite database in a fresh folder (removed by the caller).
    async fn sqlite(label: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gradebook-db-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let db = Db::connect(&format!("sqlite://{}/grading.db", dir.display())).await.expect("SQLite opens");
        (db, dir)
    }

    fn quiz(title: &str) -> NewGrade {
        NewGrade { title: title.to_owned(), kind: GradeType::Quiz, score: 50.0 }
    }

    /// Queues `grades` before the writer runs, so they form one group, then
    /// runs the writer until it took them all: each one's outcome.
    async fn one_group(db: &Db, grades: &[(i64, &str)]) -> Vec<Result<Option<Grade>, Arc<sqlx::Error>>> {
        let (queue_tx, queue) = mpsc::channel(GROUP);
        let mut outcomes = vec![];
        for (student_id, title) in grades {
            let (reply, outcome) = oneshot::channel();
            queue_tx.try_send(Pending { student_id: *student_id, grade: quiz(title), reply }).expect("room to queue");
            outcomes.push(outcome);
        }
        drop(queue_tx);
        write_grades(db.clone(), Arc::new(Changes::new()), queue).await;
        let mut results = vec![];
        for outcome in outcomes {
            results.push(outcome.await.expect("every request is answered").map(|(group, grade)| {
                assert_eq!(group, 1, "one group");
                grade
            }));
        }
        results
    }

    async fn grade_count(db: &Db) -> usize {
        db.students().await.expect("students read").iter().map(|s| s.grades.len()).sum()
    }

    #[test]
    fn notifications_are_told_apart_and_anything_else_is_ignored() {
        assert_eq!(Heard::parse("ff:12"), Some(Heard::Write { writer: 255, n: 12 }));
        assert_eq!(Heard::parse("ack:ff:12:a"), Some(Heard::Ack { writer: 255, n: 12, from: 10 }));
        assert_eq!(Heard::parse("beat:ff:1500"), Some(Heard::Beat { from: 255, sent: 1500 }));
        for other in ["", "ff", "zz:1", "ff:-1", "ack:ff:1", "nack:ff:1:a", "ff:1:a"] {
            assert_eq!(Heard::parse(other), None, "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_group_stores_every_grade_and_answers_an_unknown_student_alone() {
        let (db, dir) = sqlite("group").await;
        let before = grade_count(&db).await;

        let results = one_group(&db, &[(1, "a"), (99, "nobody's"), (2, "b"), (1, "a")]).await;

        let ids: Vec<Option<i64>> = results.into_iter().map(|r| r.expect("the group commits").map(|g| g.id)).collect();
        let [Some(a), None, Some(b), Some(again)] = ids[..] else { panic!("one ID each, none for nobody: {ids:?}") };
        assert_ne!(a, again, "equal grades are two grades");
        assert_eq!(grade_count(&db).await, before + 3);
        let students = db.students().await.expect("students read");
        let titled =
            |student: usize, id: i64| students[student].grades.iter().find(|g| g.id == id).map(|g| g.title.clone());
        assert_eq!(
            (titled(0, a), titled(1, b)),
            (Some("a".to_owned()), Some("b".to_owned())),
            "each ID is its own grade's"
        );
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_whole_group_and_stores_none_of_it() {
        let (db, dir) = sqlite("failed-commit").await;
        // A grade titled "poison" adds a row whose foreign key is checked
        // only at COMMIT (deferred), so that the commit itself fails.
        let Db::Sqlite(pool, _) = &db else { unreachable!("a SQLite URL gives SQLite") };
        for sql in [
            "CREATE TABLE poison (student_id INTEGER REFERENCES students (id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TRIGGER poisoned AFTER INSERT ON grades WHEN NEW.title = 'poison' \
             BEGIN INSERT INTO poison VALUES (-1); END",
        ] {
            sqlx::query(sql).execute(pool).await.expect("the failure is set up");
        }
        let before = grade_count(&db).await;

        let results = one_group(&db, &[(1, "fine"), (2, "poison"), (99, "nobody's"), (3, "fine too")]).await;

        assert!(results.iter().all(Result::is_err), "every request of the group fails: {results:?}");
        assert_eq!(grade_count(&db).await, before, "none of the group is stored");
        let after = one_group(&db, &[(1, "next")]).await;
        assert!(matches!(after[..], [Ok(Some(_))]), "the next group commits: {after:?}");
        assert_eq!(grade_count(&db).await, before + 1);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
