//! The grading service: students and their grades, persisted (see [`db`]),
//! with the original design's JSON names. Registers as `GradingService`.
//!
//! Reads are served from an in-memory copy of the last answer while nothing
//! has been written since; with a shared (PostgreSQL) database another
//! instance may write at any time, so there every read goes to the database.
//! Every read carries an `ETag` derived from its content (equal on every
//! instance), and `If-None-Match` gets a bodiless 304: the portal revalidates
//! its rendered pages that way on every request.

pub mod db;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::{NewGrade, NewStudent};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use db::Db;

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
        }
    }
}

/// The grading service's state: cheap to clone.
#[derive(Clone)]
pub struct Grading {
    db: Db,
    cache: Option<Arc<ReadCache>>,
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
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Grading {
    pub fn new(db: Db) -> Self {
        let cache = (!db.is_shared()).then(Arc::default);
        Self { db, cache }
    }

    fn wrote(&self) {
        if let Some(c) = &self.cache {
            c.invalidate();
        }
    }
}

pub fn router(state: Grading) -> Router {
    let api = Router::new()
        .route("/students", get(list_students).post(add_student))
        .route("/students/{id}", get(get_student))
        .route("/students/{id}/grades", post(add_grade))
        .route("/students/{id}/grades/{grade_id}", delete(remove_grade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state);
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
    let db = state.db.clone();
    let served = gradebook_runtime::serve(listener, runtime, router(state), shutdown).await;
    db.close().await;
    served
}

async fn list_students(State(g): State<Grading>, request: HeaderMap) -> Result<Response, GradingError> {
    let Some(cache) = &g.cache else { return Ok(Answer::new(&g.db.students().await?).respond(&request)) };
    let generation = cache.generation.load(Ordering::SeqCst);
    if let Some((at, answer)) = &*cache.list.read().unwrap_or_else(|p| p.into_inner())
        && *at == generation
    {
        return Ok(answer.clone().respond(&request));
    }
    let answer = Answer::new(&g.db.students().await?);
    *cache.list.write().unwrap_or_else(|p| p.into_inner()) = Some((generation, answer.clone()));
    Ok(answer.respond(&request))
}

async fn get_student(
    State(g): State<Grading>,
    Path(id): Path<i64>,
    request: HeaderMap,
) -> Result<Response, GradingError> {
    let generation = g.cache.as_ref().map(|c| c.generation.load(Ordering::SeqCst));
    if let (Some(cache), Some(generation)) = (&g.cache, generation)
        && let Some((at, answer)) = cache.students.read().unwrap_or_else(|p| p.into_inner()).get(&id)
        && *at == generation
    {
        return Ok(answer.clone().respond(&request));
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
    if let (Some(cache), Some(generation)) = (&g.cache, generation) {
        let mut students = cache.students.write().unwrap_or_else(|p| p.into_inner());
        students.retain(|_, (at, _)| *at == generation);
        students.insert(id, (generation, answer.clone()));
    }
    Ok(answer.respond(&request))
}

async fn add_grade(
    State(g): State<Grading>,
    Path(id): Path<i64>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, GradingError> {
    let new = NewGrade::validate(&body).map_err(GradingError::Invalid)?;
    let stored = g.db.add_grade(id, &new).await;
    g.wrote();
    let grade = stored?.ok_or(GradingError::NoStudent(id))?;
    tracing::info!(student = id, grade = grade.id, title = %grade.title, score = grade.score, "grade added");
    metrics::counter!("gradebook_grades_written_total").increment(1);
    let location = format!("/students/{id}/grades/{}", grade.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(grade)))
}

async fn add_student(
    State(g): State<Grading>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, GradingError> {
    let new = NewStudent::validate(&body).map_err(GradingError::Invalid)?;
    let stored = g.db.add_student(&new).await;
    g.wrote();
    let student = stored?;
    tracing::info!(student = student.id, "student added");
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/students/{}", student.id))], Json(student)))
}

async fn remove_grade(
    State(g): State<Grading>,
    Path((id, grade_id)): Path<(i64, i64)>,
) -> Result<StatusCode, GradingError> {
    let removed = g.db.remove_grade(id, grade_id).await;
    g.wrote();
    if !removed? {
        return Err(GradingError::NoGrade(id, grade_id));
    }
    tracing::info!(student = id, grade = grade_id, "grade removed");
    Ok(StatusCode::NO_CONTENT)
}
