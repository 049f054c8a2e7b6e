//! The grading service's router and its handlers: reads answered from the
//! snapshots when they may be, writes that drop them before they are
//! answered, and `GET /changes`, the feed's upgrade.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use gradebook_runtime::http::{ApiJson, finish_router};
use gradebook_shared::grading::{NewGrade, NewStudent, changes};

use super::answer::Answer;
use super::{BODY_LIMIT, Grading, GradingError, feed, store};

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

// Reads take the whole request and look at its headers in place: a
// `HeaderMap` argument would be a copy of them.
async fn list_students(State(g): State<Arc<Grading>>, request: Request) -> Result<Response, GradingError> {
    let request = request.headers();
    let Some(generation) = g.generation() else {
        return Ok(Answer::new(&store::students(&g.db).await?).respond(request));
    };
    if let Some(answer) = g.cache.list(generation) {
        return Ok(answer.respond(request));
    }
    let answer = Answer::new(&store::students(&g.db).await?);
    g.cache.keep_list(generation, answer.clone());
    Ok(answer.respond(request))
}

async fn get_student(
    State(g): State<Arc<Grading>>,
    Path(id): Path<i64>,
    request: Request,
) -> Result<Response, GradingError> {
    let request = request.headers();
    let generation = g.generation();
    if let Some(answer) = generation.and_then(|generation| g.cache.student(generation, id)) {
        return Ok(answer.respond(request));
    }
    let Some(student) = store::student(&g.db, id).await? else {
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
        g.cache.keep_student(generation, id, answer.clone());
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
    use crate::db::Db;
    use axum::body::Body;
    use axum::http::Request;
    use bytes::Bytes;
    use tower::ServiceExt;

    /// A grading service on a new SQLite database in `dir`.
    async fn sqlite(dir: &tempfile::TempDir) -> Grading {
        let db = Db::connect(&format!("sqlite://{}/grading.db", dir.path().display())).await.expect("SQLite opens");
        Grading::new(db)
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
        let dir = tempfile::tempdir().expect("a temporary folder");
        let g = sqlite(&dir).await;
        let warm_list = send(&g, "GET", "/students", None).await;
        let warm_one = send(&g, "GET", "/students/2", None).await;
        assert_eq!((warm_list.0, warm_one.0), (StatusCode::OK, StatusCode::OK));

        g.db.close().await;

        assert_eq!(send(&g, "GET", "/students", None).await, warm_list, "the list, from memory");
        assert_eq!(send(&g, "GET", "/students/2", None).await, warm_one, "one student, from memory");
        let cold = send(&g, "GET", "/students/3", None).await;
        assert_eq!(cold.0, StatusCode::SERVICE_UNAVAILABLE, "an unread student still needs the database");
    }

    #[tokio::test]
    async fn a_write_replaces_the_snapshot_before_it_is_answered() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let g = sqlite(&dir).await;
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
    }

    #[tokio::test]
    async fn a_grade_whose_commit_fails_is_answered_503_in_json() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let g = sqlite(&dir).await;
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
    }
}
