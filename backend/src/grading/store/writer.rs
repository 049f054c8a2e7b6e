//! The group-commit writer: a task takes whatever grade requests have
//! queued (at most [`GROUP`]), stores them in one transaction with one
//! statement and answers them all once it committed, so concurrent writers
//! share one commit and its fsync and each is still durable before it is
//! answered. A failed commit fails exactly the requests of its group, none
//! of them stored. On PostgreSQL a group is answered only once the other
//! instances acknowledged it (see [`super::coherence`]), in a task of its
//! own, while the next group commits.

use std::sync::Arc;

use gradebook_shared::grading::{Grade, NewGrade};
use sqlx::pool::PoolConnection;
use tokio::sync::{mpsc, oneshot};

use super::coherence::Changes;
use super::queries::{self, NewRow};
use crate::db::Db;

/// Most grades committed in one transaction.
pub const GROUP: usize = 256;
/// Grade requests waiting for the writer, at most; beyond that senders wait.
pub const QUEUE: usize = 4 * GROUP;

/// A committed grade (`None`: no such student) and the number of its group
/// (groups commit one after another, numbered from 1).
pub type Committed = (u64, Option<Grade>);

/// What a grade request is answered: an error is its whole group's.
pub type Outcome = Result<Committed, Arc<sqlx::Error>>;

/// A grade waiting for the writer, and where its outcome goes.
#[derive(Debug)]
pub struct Pending {
    pub student_id: i64,
    pub grade: NewGrade,
    /// The committed grade (`None`: no such student), sent once every
    /// instance has acknowledged its group (see [`Changes::acknowledged`]).
    pub reply: oneshot::Sender<Outcome>,
}

/// The grade writer: commits whatever queued, in groups of at most
/// [`GROUP`], until every sender is gone.
pub async fn write_grades(db: Db, changes: Arc<Changes>, mut queue: mpsc::Receiver<Pending>) {
    let mut group = Vec::with_capacity(GROUP);
    // On SQLite the writer keeps one connection: its page cache stays warm,
    // and no group waits for the pool.
    let mut writer = None;
    let mut committed_groups = 0;
    while queue.recv_many(&mut group, GROUP).await > 0 {
        let committed = commit_group(&db, &changes, &mut writer, &group).await;
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
                match (&db, notified) {
                    (Db::Postgres(pool), Some(n)) => {
                        // Waiting for the other instances is left to a task
                        // of its own: meanwhile the next group commits.
                        let (pool, changes) = (pool.clone(), changes.clone());
                        tokio::spawn(async move {
                            changes.acknowledged(&pool, n).await;
                            answer(answers);
                        });
                    }
                    _ => answer(answers),
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
/// student), and the number of the notification sent (on PostgreSQL). Any
/// error fails the whole group, rolled back: the grades were validated, so
/// an error here is the database's, not a request's.
async fn commit_group(
    db: &Db,
    changes: &Changes,
    writer: &mut Option<PoolConnection<sqlx::Sqlite>>,
    group: &[Pending],
) -> sqlx::Result<(Vec<Option<i64>>, Option<u64>)> {
    let rows: Vec<NewRow<'_>> = group.iter().map(|p| NewRow { student_id: p.student_id, grade: &p.grade }).collect();
    match db {
        Db::Sqlite(pool, lock) => {
            let _writing = lock.lock().await;
            let conn = match writer {
                Some(conn) => conn,
                None => writer.insert(pool.acquire().await?),
            };
            Ok((queries::insert_group_sqlite(conn, &rows).await?, None))
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let ids = queries::insert_group_postgres(&mut tx, &rows).await?;
            let notified = changes.notify(&mut tx).await?;
            tx.commit().await?;
            Ok((ids, Some(notified)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradebook_shared::grading::GradeType;

    /// A new SQLite database in `dir`.
    async fn sqlite(dir: &tempfile::TempDir) -> Db {
        Db::connect(&format!("sqlite://{}/grading.db", dir.path().display())).await.expect("SQLite opens")
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
        write_grades(db.clone(), Arc::new(Changes::default()), queue).await;
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
        queries::students(db).await.expect("students read").iter().map(|s| s.grades.len()).sum()
    }

    #[tokio::test]
    async fn a_group_stores_every_grade_and_answers_an_unknown_student_alone() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = sqlite(&dir).await;
        let before = grade_count(&db).await;

        let results = one_group(&db, &[(1, "a"), (99, "nobody's"), (2, "b"), (1, "a")]).await;

        let ids: Vec<Option<i64>> = results.into_iter().map(|r| r.expect("the group commits").map(|g| g.id)).collect();
        let [Some(a), None, Some(b), Some(again)] = ids[..] else { panic!("one ID each, none for nobody: {ids:?}") };
        assert_ne!(a, again, "equal grades are two grades");
        assert_eq!(grade_count(&db).await, before + 3);
        let students = queries::students(&db).await.expect("students read");
        let titled =
            |student: usize, id: i64| students[student].grades.iter().find(|g| g.id == id).map(|g| g.title.clone());
        assert_eq!(
            (titled(0, a), titled(1, b)),
            (Some("a".to_owned()), Some("b".to_owned())),
            "each ID is its own grade's"
        );
        db.close().await;
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_whole_group_and_stores_none_of_it() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = sqlite(&dir).await;
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
    }
}
