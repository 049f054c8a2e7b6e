//! The grading service: students and their grades, persisted (see [`db`]),
//! with the original design's JSON names. Registers as `GradingService`.
//!
//! Reads are served from an in-memory copy of the last answer while nothing
//! has been written since; with a shared (PostgreSQL) database another
//! instance may write at any time, so there every read goes to the database.

pub mod db;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::{NewGrade, NewStudent};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use db::Db;

use crate::http::{ApiJson, error_response, finish_router};
use crate::runtime::Runtime;

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
    list: RwLock<Option<(u64, Bytes)>>,
    students: RwLock<HashMap<i64, (u64, Bytes)>>,
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
    let served = crate::runtime::serve(listener, runtime, router(state), shutdown).await;
    db.close().await;
    served
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Bytes {
    // Our own types always serialize.
    Bytes::from(serde_json::to_vec(value).expect("wire types serialize"))
}

async fn list_students(State(g): State<Grading>) -> Result<Response, GradingError> {
    let Some(cache) = &g.cache else { return Ok(json_bytes(to_bytes(&g.db.students().await?))) };
    let generation = cache.generation.load(Ordering::SeqCst);
    if let Some((at, bytes)) = &*cache.list.read().unwrap_or_else(|p| p.into_inner())
        && *at == generation
    {
        return Ok(json_bytes(bytes.clone()));
    }
    let bytes = to_bytes(&g.db.students().await?);
    *cache.list.write().unwrap_or_else(|p| p.into_inner()) = Some((generation, bytes.clone()));
    Ok(json_bytes(bytes))
}

async fn get_student(State(g): State<Grading>, Path(id): Path<i64>) -> Result<Response, GradingError> {
    let generation = g.cache.as_ref().map(|c| c.generation.load(Ordering::SeqCst));
    if let (Some(cache), Some(generation)) = (&g.cache, generation)
        && let Some((at, bytes)) = cache.students.read().unwrap_or_else(|p| p.into_inner()).get(&id)
        && *at == generation
    {
        return Ok(json_bytes(bytes.clone()));
    }
    let student = g.db.student(id).await?.ok_or(GradingError::NoStudent(id))?;
    let bytes = to_bytes(&student);
    if let (Some(cache), Some(generation)) = (&g.cache, generation) {
        let mut students = cache.students.write().unwrap_or_else(|p| p.into_inner());
        students.retain(|_, (at, _)| *at == generation);
        students.insert(id, (generation, bytes.clone()));
    }
    Ok(json_bytes(bytes))
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
