//! What the portal talks to in these tests: grading, the log service and the
//! registry in one stand-in on a real socket, refusing what those refuse
//! with the same shared rules, and the portal in-process (`oneshot`),
//! knowing it as all three, open or closed to people.
//!
//! Grading's reads are tagged as grading tags them (an `ETag` derived from
//! the content, a bodiless 304 for a matching `If-None-Match`), and written
//! pretty-printed, as no portal would write them: a test can tell grading's
//! own bytes from the portal's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gradebook_frontend::auth::{DEFAULT_IDLE, Security};
use gradebook_frontend::backends::Backends;
use gradebook_frontend::people::{Account, Role};
use gradebook_frontend::state::AppState;
use gradebook_runtime::{Runtime, ServiceSpec};
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::{Grade, NewGrade, Student};
use gradebook_shared::log::{Level, LogRecord};
use gradebook_shared::names;
use gradebook_shared::registry::PatchEntry;
use leptos::prelude::LeptosOptions;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// The cluster token of a closed portal.
pub const CLUSTER_TOKEN: &str = "a-cluster-token-that-is-at-least-32-bytes-long";
/// Personal API tokens shaped as `gradebook accounts token` prints them: the
/// teacher `tess`'s, and the student `sam`'s, linked to student 1.
pub const TEACHER_TOKEN: &str = "gb_tess_TTTTTTTTTTTTTTTTTTTT12345678901234567890";
pub const STUDENT_TOKEN: &str = "gb_sam_SSSSSSSSSSSSSSSSSSSS09876543210987654321";

/// What grading and the log service hold, and how grading behaves.
#[derive(Clone)]
pub struct Stored {
    pub students: Arc<Mutex<Vec<Student>>>,
    pub logs: Arc<Mutex<Vec<LogRecord>>>,
    /// Set: grading's reads answer these bytes (a tagged 200) instead of
    /// the data, as a broken grading would.
    pub broken: Arc<Mutex<Option<Vec<u8>>>>,
    /// Grading's reads carry no `ETag`, as the original grading's do.
    pub untagged: Arc<AtomicBool>,
    /// `GET /students` takes 20 ms: long enough for requests sent together
    /// to meet in the portal.
    pub slow: Arc<AtomicBool>,
    /// `GET /students` asked, and answered with a body (not a 304).
    pub list_asked: Arc<AtomicUsize>,
    pub list_answered: Arc<AtomicUsize>,
    pub feed: Feed,
}

/// Grading's change feed (`GET /changes`) as a test drives it. Off, it is
/// a 404, as on the original grading.
#[derive(Clone)]
pub struct Feed {
    pub on: Arc<AtomicBool>,
    /// `changed N` lines for every subscriber (the first is `changed 1`);
    /// [`HANG_UP`] closes their connections instead.
    pub changes: tokio::sync::broadcast::Sender<u64>,
    /// The newest `ack` heard.
    pub acked: Arc<AtomicU64>,
    /// Off, pings go unanswered, as on a feed that stalled.
    pub pongs: Arc<AtomicBool>,
    pub subscriptions: Arc<AtomicUsize>,
}

/// Sent on [`Feed::changes`], closes the feed's connections.
pub const HANG_UP: u64 = u64::MAX;

impl Default for Feed {
    fn default() -> Self {
        Self {
            on: Arc::default(),
            changes: tokio::sync::broadcast::channel(16).0,
            acked: Arc::default(),
            pongs: Arc::new(AtomicBool::new(true)),
            subscriptions: Arc::default(),
        }
    }
}

impl Stored {
    pub fn new() -> Self {
        let grade = |id, title: &str, score| Grade { id, title: title.into(), kind: "Quiz".into(), score };
        let students = vec![
            Student {
                id: 1,
                first_name: "Nick".into(),
                last_name: "Carter".into(),
                grades: vec![grade(1, "Quiz 1", 85.0), grade(2, "Quiz 2", 82.0)],
                average: Some(83.5),
            },
            Student { id: 2, first_name: "Roberto".into(), last_name: "Baggio".into(), grades: vec![], average: None },
        ];
        let logs = vec![LogRecord {
            seq: 1,
            service: "Seed".into(),
            level: Level::Info,
            message: "one".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            fields: None,
        }];
        Self {
            students: Arc::new(Mutex::new(students)),
            logs: Arc::new(Mutex::new(logs)),
            broken: Arc::default(),
            untagged: Arc::default(),
            slow: Arc::default(),
            list_asked: Arc::default(),
            list_answered: Arc::default(),
            feed: Feed::default(),
        }
    }

    /// Everything held, as text, to compare before and after a case.
    pub fn snapshot(&self) -> String {
        json!({"students": *self.students.lock(), "logs": *self.logs.lock()}).to_string()
    }

    /// Grading's read answering `value`: tagged, and 304 when `request`
    /// already holds the tag.
    fn read(&self, request: &HeaderMap, value: &impl serde::Serialize) -> Response {
        let body = match self.broken.lock().clone() {
            Some(broken) => broken,
            None => serde_json::to_vec_pretty(value).expect("the wire types serialize"),
        };
        let json = (header::CONTENT_TYPE, "application/json".to_owned());
        if self.untagged.load(Ordering::SeqCst) {
            return ([json], body).into_response();
        }
        // FNV-1a, as grading derives its tags.
        let hash =
            body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let etag = format!("\"{hash:016x}\"");
        if request.get_all(header::IF_NONE_MATCH).iter().any(|given| given == etag.as_str()) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
        }
        ([json, (header::ETAG, etag)], body).into_response()
    }
}

fn refuse(status: StatusCode, body: ErrorBody) -> Response {
    (status, Json(body)).into_response()
}

async fn students(State(s): State<Stored>, request: HeaderMap) -> Response {
    s.list_asked.fetch_add(1, Ordering::SeqCst);
    if s.slow.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let list = s.students.lock().clone();
    let answer = s.read(&request, &list);
    if answer.status() == StatusCode::OK {
        s.list_answered.fetch_add(1, Ordering::SeqCst);
    }
    answer
}

async fn student(State(s): State<Stored>, Path(id): Path<String>, request: HeaderMap) -> Response {
    let Ok(id) = id.parse::<i64>() else { return refuse(StatusCode::BAD_REQUEST, ErrorBody::new("bad ID")) };
    let found = s.students.lock().iter().find(|st| st.id == id).cloned();
    match found {
        Some(st) => s.read(&request, &st),
        None => refuse(StatusCode::NOT_FOUND, ErrorBody::new(format!("no student with ID {id}"))),
    }
}

/// Grading's rules: the shared validation, then the student must exist.
async fn add_grade(State(s): State<Stored>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(id) = id.parse::<i64>() else { return refuse(StatusCode::BAD_REQUEST, ErrorBody::new("bad ID")) };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, ErrorBody::new(e.to_string())),
    };
    let new = match NewGrade::validate(&value) {
        Ok(g) => g,
        Err(refused) => return refuse(StatusCode::BAD_REQUEST, refused),
    };
    let mut students = s.students.lock();
    let next = students.iter().flat_map(|st| &st.grades).map(|g| g.id).max().unwrap_or(0) + 1;
    let Some(st) = students.iter_mut().find(|st| st.id == id) else {
        return refuse(StatusCode::NOT_FOUND, ErrorBody::new(format!("no student with ID {id}")));
    };
    let grade = Grade { id: next, title: new.title, kind: new.kind.to_string(), score: new.score };
    st.grades.push(grade.clone());
    (StatusCode::CREATED, Json(grade)).into_response()
}

/// The accounts behind [`TEACHER_TOKEN`] and [`STUDENT_TOKEN`].
async fn verify_token(Json(body): Json<Value>) -> Response {
    let account = |name: &str, role, student| Account { name: name.into(), role, student, version: 1 };
    match body["token"].as_str() {
        Some(TEACHER_TOKEN) => Json(account("tess", Role::Teacher, None)).into_response(),
        Some(STUDENT_TOKEN) => Json(account("sam", Role::Student, Some(1))).into_response(),
        _ => refuse(StatusCode::UNAUTHORIZED, ErrorBody::new("invalid token")),
    }
}

/// The log service's query rules for what the portal passes through.
fn check_log_query(q: &HashMap<String, String>) -> Result<(), ErrorBody> {
    if let Some(l) = q.get("limit")
        && l.parse::<usize>().is_err()
    {
        return Err(ErrorBody::new(format!("limit {l:?} is not a count")));
    }
    if let Some(a) = q.get("after")
        && a.parse::<u64>().is_err()
    {
        return Err(ErrorBody::new(format!("after {a:?} is not a sequence number")));
    }
    if let Some(l) = q.get("level").filter(|l| !l.is_empty())
        && let Err(e) = l.parse::<Level>()
    {
        return Err(ErrorBody { error: e.to_string(), field: Some("level".into()) });
    }
    Ok(())
}

async fn logs(State(s): State<Stored>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(e) = check_log_query(&q) {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    Json(s.logs.lock().clone()).into_response()
}

/// A tail that ends at once, so that a case reading it finishes.
async fn log_stream(Query(q): Query<HashMap<String, String>>) -> Response {
    if let Err(e) = check_log_query(&q) {
        return refuse(StatusCode::BAD_REQUEST, e);
    }
    ([(header::CONTENT_TYPE, "text/event-stream")], ": quiet\n\n").into_response()
}

/// `GET /changes`: lines as grading writes them, driven by [`Feed`].
async fn changes(State(s): State<Stored>, mut request: axum::extract::Request) -> Response {
    use gradebook_shared::grading::changes::{Line, PROTOCOL};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    if !s.feed.on.load(Ordering::SeqCst) {
        return refuse(StatusCode::NOT_FOUND, ErrorBody::new("no route"));
    }
    let upgrading = hyper::upgrade::on(&mut request);
    let feed = s.feed.clone();
    let mut changes = feed.changes.subscribe();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrading.await else { return };
        feed.subscriptions.fetch_add(1, Ordering::SeqCst);
        let (read, mut write) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let mut lines = tokio::io::BufReader::new(read).lines();
        if write.write_all(&Line::Changed(1).to_bytes()).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                line = lines.next_line() => match line.ok().flatten().and_then(|l| Line::parse(l.as_bytes())) {
                    Some(Line::Ack(n)) => {
                        feed.acked.fetch_max(n, Ordering::SeqCst);
                    }
                    Some(Line::Ping(k)) => {
                        if feed.pongs.load(Ordering::SeqCst) && write.write_all(&Line::Pong(k).to_bytes()).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                change = changes.recv() => match change {
                    Ok(HANG_UP) => return,
                    Ok(n) if write.write_all(&Line::Changed(n).to_bytes()).await.is_ok() => {}
                    _ => return,
                },
            }
        }
    });
    (StatusCode::SWITCHING_PROTOCOLS, [(header::CONNECTION, "upgrade"), (header::UPGRADE, PROTOCOL)]).into_response()
}

/// Grading, the log service and the registry in one, on a real socket.
pub async fn start_backend(stored: Stored) -> String {
    let app = Router::new()
        .route("/students", get(students))
        .route("/students/{id}", get(student))
        .route("/students/{id}/grades", post(add_grade))
        .route("/changes", get(changes))
        .route("/accounts/verify-token", post(verify_token))
        .route("/log", get(logs))
        .route("/log/stream", get(log_stream))
        .route("/services", get(|| async { Json(Vec::<Value>::new()) }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(stored);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port is free");
    let url = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// An open portal (no sign-in), knowing the stand-in as grading, log
/// service and registry.
pub fn portal(backend: &str) -> Router {
    portal_with(backend, Security::open())
}

/// A portal closed with [`CLUSTER_TOKEN`]: people and scripts must say who
/// they are (here: with the personal API tokens above).
pub fn closed_portal(backend: &str) -> Router {
    portal_with(backend, Security::closed(CLUSTER_TOKEN, DEFAULT_IDLE).expect("the token is long enough"))
}

/// An open portal that follows the stand-in's change feed, as a served
/// portal does.
pub fn following_portal(backend: &str) -> Router {
    let state = state(backend, Security::open());
    state.follow_changes();
    gradebook_frontend::server::router(options(), state)
}

fn options() -> LeptosOptions {
    LeptosOptions::builder().output_name("gradebook").build()
}

fn state(backend: &str, security: Security) -> AppState {
    let mut spec = ServiceSpec::new(names::PORTAL, backend);
    spec.token = (!security.is_open()).then(|| CLUSTER_TOKEN.to_owned());
    let runtime = Runtime::new(spec, "127.0.0.1:0".parse().expect("an address"));
    runtime
        .providers()
        .merge(&[PatchEntry::new(names::GRADING, backend.to_owned()), PatchEntry::new(names::LOG, backend.to_owned())]);
    AppState::new(Backends::new(runtime, backend.to_owned()), security)
}

fn portal_with(backend: &str, security: Security) -> Router {
    gradebook_frontend::server::router(options(), state(backend, security))
}
