//! The grading service: students and their grades, persisted (see [`db`]),
//! with the original design's JSON names. Registers as `GradingService`.
//!
//! Reads are served from an in-memory copy of the last answer (its bytes and
//! ETag) while nothing has been written since: once warm, reads never touch
//! the database. Every write drops that copy before it is answered; with a
//! shared (PostgreSQL) database every instance also drops it when PostgreSQL
//! notifies it of another instance's write (see [`db::Writes::watch_changes`]),
//! and reads go to the database while it cannot tell that it heard every
//! write (not listening, or no beat of its own heard back lately); a write
//! is answered only once every listening instance has dropped its copy.
//! Grades are
//! written in groups sharing one commit (see [`db`]). Every read carries an
//! `ETag` derived from its content (equal on every instance), and
//! `If-None-Match` gets a bodiless 304. The portal subscribes to the change
//! feed (see [`feed`]), and a write is answered only once it has heard of
//! it, so it revalidates what it kept only when told of a change (or while it
//! cannot hear the feed).

pub mod args;
pub mod db;
pub mod feed;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::{NewGrade, NewStudent, changes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use db::Db;
use db::Writes;

use gradebook_runtime::Runtime;
use gradebook_runtime::http::{ApiJson, error_response, finish_router};

/// Largest request body.
pub const BODY_LIMIT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("no student with ID {0}")]
    NoStudent(i64),
    #[error("student {0} has no grade with ID {1}")]
    NoGrade(i64, i64),
    #[error("{}", .0.error)]
    Invalid(ErrorBody),
    #[error("the database is unavailable")]
    Database(#[from] sqlx::Error),
    /// The commit of a group of grades failed (logged once, by the writer).
    #[error("the database is unavailable")]
    Group(Arc<sqlx::Error>),
    #[error("GET /changes is a feed: ask for it with `Upgrade: {}`", changes::PROTOCOL)]
    NotUpgraded,
    #[error("{0}")]
    FeedRefused(&'static str),
}

impl IntoResponse for GradingError {
    fn into_response(self) -> Response {
        match self {
            GradingError::NoStudent(_) | GradingError::NoGrade(..) => {
                error_response(StatusCode::NOT_FOUND, ErrorBody::new(self.to_string()))
            }
            GradingError::Invalid(body) => error_response(StatusCode::BAD_REQUEST, body),
            GradingError::Database(e) => {
                tracing::error!(error = %e, "database error");
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new("the database is unavailable"))
            }
            GradingError::Group(_) => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new("the database is unavailable"))
            }
            GradingError::NotUpgraded => error_response(StatusCode::UPGRADE_REQUIRED, ErrorBody::new(self.to_string())),
            GradingError::FeedRefused(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(why)),
        }
    }
}

/// The grading service's state: cheap to clone.
#[derive(Clone)]
pub struct Grading {
    db: Db,
    writes: Writes,
    cache: Arc<ReadCache>,
    feed: Arc<feed::Feed>,
    /// The newest group of grades whose commit moved the generation, and
    /// the generation it moved it to.
    told: Arc<std::sync::Mutex<(u64, u64)>>,
}

/// Serialized answers of the last reads, valid while `generation` is the one
/// they were read at; every write moves the generation on.
#[derive(Default)]
struct ReadCache {
    generation: AtomicU64,
    list: RwLock<Option<(u64, Answer)>>,
    students: RwLock<HashMap<i64, (u64, Answer)>>,
}

/// A read's serialized body and its validator.
#[derive(Clone)]
struct Answer {
    body: Bytes,
    etag: HeaderValue,
}

impl Answer {
    fn new<T: serde::Serialize>(value: &T) -> Self {
        // Our own types always serialize.
        let body = Bytes::from(serde_json::to_vec(value).expect("wire types serialize"));
        // FNV-1a: stable across builds and machines, so every instance gives
        // the same content the same tag.
        let hash =
            body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let etag = HeaderValue::from_str(&format!("\"{hash:016x}\"")).expect("hex is a valid header");
        Self { body, etag }
    }

    fn respond(self, request: &HeaderMap) -> Response {
        let matches = request
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| matches!(tag.trim(), "*") || tag.trim().trim_start_matches("W/") == self.etag);
        if matches {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, self.etag)]).into_response();
        }
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json")), (header::ETAG, self.etag)], self.body)
            .into_response()
    }
}

impl ReadCache {
    /// Moves the generation on: the new one.
    fn invalidate(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }
}

impl Grading {
    pub fn new(db: Db) -> Self {
        let cache = Arc::new(ReadCache::default());
        let writes = Writes::new(db.clone());
        let hears = writes.clone();
        // On PostgreSQL no subscriber is taken before we listen.
        let feed = feed::Feed::new((!db.is_shared()).then_some(0), move || hears.hears_everything());
        Self { writes, db, cache, feed, told: Arc::default() }
    }

    /// After a write of ours: the snapshots are dropped and every subscriber
    /// of the feed has heard of it.
    async fn wrote(&self) {
        let generation = self.moved_on();
        self.feed.reached(generation).await;
    }

    /// Drops the snapshots and tells the feed: the new generation.
    fn moved_on(&self) -> u64 {
        let generation = self.cache.invalidate();
        self.feed.moved_to(generation);
        generation
    }

    /// After a group of grades committed: the same, once for the group (a
    /// group answers up to hundreds of requests together), and once for
    /// any earlier group not told yet, which the move covers as well.
    async fn wrote_group(&self, group: u64) {
        let generation = {
            let mut told = self.told.lock().unwrap_or_else(|p| p.into_inner());
            if told.0 < group {
                *told = (group, self.moved_on());
            }
            told.1
        };
        self.feed.reached(generation).await;
    }

    /// What the database told of the instances' writes (see
    /// [`db::Writes::watch_changes`]), applied at once; for a write, the
    /// wait for our subscribers to hear of it.
    fn changed(&self, change: db::Change) -> Option<impl Future<Output = ()> + Send + 'static> {
        match change {
            db::Change::Wrote => {
                let generation = self.moved_on();
                let feed = self.feed.clone();
                Some(async move { feed.reached(generation).await })
            }
            db::Change::Listening => {
                let generation = self.cache.invalidate();
                self.feed.listening(generation);
                None
            }
            db::Change::Deaf => {
                self.cache.invalidate();
                self.feed.deaf();
                None
            }
        }
    }

    /// The generation reads may use and keep answers at, or `None` while
    /// writes may go unnoticed (see [`db::Writes::hears_everything`]). Read
    /// before asking: trust comes back only with a beat heard after the
    /// generation moved on (listening again), and nothing is kept while it
    /// is gone, so no answer kept from before is served.
    fn generation(&self) -> Option<u64> {
        let generation = self.cache.generation.load(Ordering::SeqCst);
        self.writes.hears_everything().then_some(generation)
    }
}

pub fn router(state: Grading) -> Router {
    // Shared behind one pointer: axum clones the state several times a
    // request, and a clone of `Grading` itself touches every pool's count.
    let api = Router::new()
        .route("/students", get(list_students).post(add_student))
        .route("/students/{id}", get(get_student))
        .route("/students/{id}/grades", post(add_grade))
        .route("/students/{id}/grades/{grade_id}", delete(remove_grade))
        .route(changes::PATH, get(subscribe))
        .route("/healthz", get(|| async { "ok" }))
        .merge(crate::accounts::router(state.db.clone()))
        .with_state(Arc::new(state));
    finish_router(api, BODY_LIMIT)
}

/// Serves the grading service, registered as `GradingService`, until
/// `shutdown`; in-flight requests finish, then the database is closed.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    state: Grading,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (db, feed) = (state.db.clone(), state.feed.clone());
    // Other instances' writes, on PostgreSQL; nothing to do on SQLite.
    let watching = shutdown.child_token();
    let (grading, token) = (Arc::new(state.clone()), watching.clone());
    let watcher =
        tokio::spawn(async move { grading.writes.watch_changes(|change| grading.changed(change), token).await });
    let served = gradebook_runtime::serve(listener, runtime, router(state), shutdown).await;
    // Taken off HTTP, subscriptions outlive the server's drain.
    feed.close();
    watching.cancel();
    let _ = watcher.await;
    db.close().await;
    served
}

// Reads take the whole request and look at its headers in place: a
// `HeaderMap` argument would be a copy of them.
async fn list_students(State(g): State<Arc<Grading>>, request: Request) -> Result<Response, GradingError> {
    let request = request.headers();
    let cache = &g.cache;
    let Some(generation) = g.generation() else {
        return Ok(Answer::new(&g.db.students().await?).respond(request));
    };
    if let Some((at, answer)) = &*cache.list.read().unwrap_or_else(|p| p.into_inner())
        && *at == generation
    {
        return Ok(answer.clone().respond(request));
    }
    let answer = Answer::new(&g.db.students().await?);
    *cache.list.write().unwrap_or_else(|p| p.into_inner()) = Some((generation, answer.clone()));
    Ok(answer.respond(request))
}

async fn get_student(
    State(g): State<Arc<Grading>>,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, GradingError> {
    let request = request.headers();
    let cache = &g.cache;
    let generation = g.generation();
    if let Some(generation) = generation
        && let Some((at, answer)) = cache.students.read().unwrap_or_else(|p| p.into_inner()).get(&id)
        && *at == generation
    {
        return Ok(answer.clone().respond(request));
    }
    let Some(student) = g.db.student(id).await? else {
        // Clients of the original send no Accept header and read a 404's
        // body as a student (the original's portal would render an empty
        // one): they get the original's bodiless 404. Everyone else, JSON.
        if !request.contains_key(header::ACCEPT) {
            let mut response = StatusCode::NOT_FOUND.into_response();
            response.extensions_mut().insert(gradebook_runtime::http::AsIs);
            return Ok(response);
        }
        return Err(GradingError::NoStudent(id));
    };
    let answer = Answer::new(&student);
    if let Some(generation) = generation {
        let mut students = cache.students.write().unwrap_or_else(|p| p.into_inner());
        students.retain(|_, (at, _)| *at == generation);
        students.insert(id, (generation, answer.clone()));
    }
    Ok(answer.respond(request))
}

/// `GET /changes`: the change feed (see [`feed`]). Who may subscribe was
/// decided before: with a cluster token, only its holders.
async fn subscribe(State(g): State<Arc<Grading>>, mut request: Request) -> Result<Response, GradingError> {
    let asked = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(changes::PROTOCOL.as_bytes()));
    if !asked {
        return Err(GradingError::NotUpgraded);
    }
    let accepted = g.feed.subscribe().map_err(|refused| {
        GradingError::FeedRefused(match refused {
            feed::Refused::Deaf => "grading cannot hear the other instances' writes now; ask again later",
            feed::Refused::Full => "the change feed has as many subscribers as it takes",
        })
    })?;
    let upgrading = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrading.await {
            accepted.run(hyper_util::rt::TokioIo::new(upgraded)).await;
        }
    });
    let switching = [(header::CONNECTION, "upgrade"), (header::UPGRADE, changes::PROTOCOL)];
    Ok((StatusCode::SWITCHING_PROTOCOLS, switching).into_response())
}

async fn add_grade(
    State(g): State<Arc<Grading>>,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, GradingError> {
    let new = NewGrade::validate(&body).map_err(GradingError::Invalid)?;
    let (group, grade) = g.writes.add_grade(id, new).await.map_err(GradingError::Group)?;
    g.wrote_group(group).await;
    let grade = grade.ok_or(GradingError::NoStudent(id))?;
    tracing::info!(student = id, grade = grade.id, title = %grade.title, score = grade.score, "grade added");
    metrics::counter!("gradebook_grades_written_total").increment(1);
    let location = format!("/students/{id}/grades/{}", grade.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(grade)))
}

async fn add_student(
    State(g): State<Arc<Grading>>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, GradingError> {
    let new = NewStudent::validate(&body).map_err(GradingError::Invalid)?;
    let stored = g.writes.add_student(&new).await;
    g.wrote().await;
    let student = stored?;
    tracing::info!(student = student.id, "student added");
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/students/{}", student.id))], Json(student)))
}

async fn remove_grade(
    State(g): State<Arc<Grading>>,
    Path((id, grade_id)): Path<(i64, i64)>,
) -> Result<StatusCode, GradingError> {
    let removed = g.writes.remove_grade(id, grade_id).await;
    g.wrote().await;
    if !removed? {
        return Err(GradingError::NoGrade(id, grade_id));
    }
    tracing::info!(student = id, grade = grade_id, "grade removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn sqlite(label: &str) -> (Grading, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "gradebook-grading-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let db = Db::connect(&format!("sqlite://{}/grading.db", dir.display())).await.expect("SQLite opens");
        (Grading::new(db), dir)
    }

    /// Sends `method path` with `body` (JSON when given): status, ETag, body.
    async fn send(g: &Grading, method: &str, path: &str, body: Option<&str>) -> (StatusCode, String, Bytes) {
        let mut request = Request::builder().method(method).uri(path).header("accept", "application/json");
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(Body::from(body.unwrap_or_default().to_owned())).expect("a valid request");
        let response = router(g.clone()).oneshot(request).await.expect("the router answers");
        let status = response.status();
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body arrives");
        (status, etag, body)
    }

    #[tokio::test]
    async fn warm_reads_are_answered_from_memory_without_the_database() {
        let (g, dir) = sqlite("memory").await;
        let warm_list = send(&g, "GET", "/students", None).await;
        let warm_one = send(&g, "GET", "/students/2", None).await;
        assert_eq!((warm_list.0, warm_one.0), (StatusCode::OK, StatusCode::OK));

        g.db.close().await;

        assert_eq!(send(&g, "GET", "/students", None).await, warm_list, "the list, from memory");
        assert_eq!(send(&g, "GET", "/students/2", None).await, warm_one, "one student, from memory");
        let cold = send(&g, "GET", "/students/3", None).await;
        assert_eq!(cold.0, StatusCode::SERVICE_UNAVAILABLE, "an unread student still needs the database");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_write_replaces_the_snapshot_before_it_is_answered() {
        let (g, dir) = sqlite("replace").await;
        let (_, list_tag, _) = send(&g, "GET", "/students", None).await;
        let (_, one_tag, _) = send(&g, "GET", "/students/4", None).await;

        let (status, _, _) =
            send(&g, "POST", "/students/4/grades", Some(r#"{"Title":"New","Type":"Test","Score":70}"#)).await;

        assert_eq!(status, StatusCode::CREATED);
        let (_, new_list_tag, list) = send(&g, "GET", "/students", None).await;
        let (_, new_one_tag, one) = send(&g, "GET", "/students/4", None).await;
        assert_ne!((new_list_tag, new_one_tag), (list_tag, one_tag));
        let list: Vec<gradebook_shared::grading::Student> = serde_json::from_slice(&list).expect("a list");
        let one: gradebook_shared::grading::Student = serde_json::from_slice(&one).expect("a student");
        assert_eq!(list[3].grades.last().map(|g| g.title.as_str()), Some("New"));
        assert_eq!(one.grades.last().map(|g| g.title.as_str()), Some("New"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_grade_whose_commit_fails_is_answered_503_in_json() {
        let (g, dir) = sqlite("commit-503").await;
        // Checked only at COMMIT (deferred): the commit itself fails.
        let Db::Sqlite(pool, _) = &g.db else { unreachable!("a SQLite URL gives SQLite") };
        for sql in [
            "CREATE TABLE poison (student_id INTEGER REFERENCES students (id) DEFERRABLE INITIALLY DEFERRED)",
            "CREATE TRIGGER poisoned AFTER INSERT ON grades BEGIN INSERT INTO poison VALUES (-1); END",
        ] {
            sqlx::query(sql).execute(pool).await.expect("the failure is set up");
        }
        let (_, _, before) = send(&g, "GET", "/students", None).await;

        let (status, _, body) =
            send(&g, "POST", "/students/1/grades", Some(r#"{"Title":"Lost","Type":"Quiz","Score":1}"#)).await;

        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
        assert_eq!(body["error"], "the database is unavailable");
        assert_eq!(send(&g, "GET", "/students", None).await.2, before, "nothing stored");
        let _ = std::fs::remove_dir_all(dir);
    }
}
