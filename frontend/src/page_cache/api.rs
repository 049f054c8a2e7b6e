//! The JSON API's reads of grading: `GET /api/students` and
//! `/api/students/{id}` are grading's answers to `/students` and
//! `/students/{id}`, their bytes passed on as they came, with grading's
//! ETag, revalidated on every request like the pages (so never staler than
//! grading) and kept in the same cache, within the same bounds. They are
//! kept per path, not per viewer: the bytes are the same whoever may see
//! them, and who may was decided before (`auth::authenticate`; a student
//! reaches only their own record). Grading's bytes are read as students
//! once per new tag before they are kept or passed on, so clients never get
//! a broken answer.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gradebook_shared::grading::Student;
use gradebook_shared::names;
use headers::{ETag, HeaderMapExt, IfNoneMatch};

use super::cache::{Check, PageCache};
use super::flights::Outcome;
use super::store::Page;
use crate::backends::{human, interpret, no_student};
use crate::error::ApiError;
use crate::ids::parse_id;
use crate::people::Viewer;

/// Grading's answer to `path`, kept under `key`: its tag (when grading
/// tags it) and bytes that passed `check`.
async fn checked(
    cache: &PageCache,
    path: &str,
    key: &str,
    check: Check,
) -> Result<(Option<HeaderValue>, Bytes), ApiError> {
    let (etag, answer, epoch) = match cache.revalidate(path, key, check).await {
        Outcome::Kept(kept) => return Ok((Some(kept.etag.clone()), kept.body.clone())),
        Outcome::Unchanged(tag) => match cache.store.tagged(key, &tag) {
            Some(kept) => return Ok((Some(kept.etag.clone()), kept.body.clone())),
            // Dropped meanwhile (replaced, or room was made): ask in full.
            None => match cache.ask(path, None, check).await {
                Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
                Outcome::Kept(_) | Outcome::Unchanged(_) => {
                    return Err(ApiError::unavailable(human(names::GRADING)));
                }
            },
        },
        Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
    };
    let body = answer?;
    if let Some(tag) = &etag {
        cache.store.keep(key.to_owned(), Page::new(tag.clone(), HeaderMap::new(), body.clone(), epoch));
    }
    Ok((etag, body))
}

fn students_check(body: &[u8]) -> Result<(), ApiError> {
    interpret::<Vec<Student>>(StatusCode::OK, body, human(names::GRADING)).map(drop)
}

fn student_check(body: &[u8]) -> Result<(), ApiError> {
    interpret::<Student>(StatusCode::OK, body, human(names::GRADING)).map(drop)
}

/// Grading's bytes as the answer, under its tag; a bodiless 304 when the
/// client already holds them.
fn pass_on(request: &HeaderMap, etag: Option<HeaderValue>, body: Bytes) -> Response {
    let json = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match etag {
        Some(tag) if holds(request, &tag) => (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response(),
        Some(tag) => ([json, (header::ETAG, tag)], body).into_response(),
        None => ([json], body).into_response(),
    }
}

/// Whether the client's `If-None-Match` names `tag` (or any, `*`), read as
/// grading reads it: a weak tag matches too, as RFC 9110 says for GET.
fn holds(request: &HeaderMap, tag: &HeaderValue) -> bool {
    let Some(given) = request.typed_get::<IfNoneMatch>() else { return false };
    let Some(tag) = tag.to_str().ok().and_then(|t| t.parse::<ETag>().ok()) else { return false };
    !given.precondition_passes(&tag)
}

/// `GET /api/students`: grading's list as it came. A student is refused
/// before this (403); should that rule ever loosen, a student would still
/// get only their own record out of it, read and written anew.
pub async fn api_students(State(cache): State<PageCache>, request: Request) -> Result<Response, ApiError> {
    let (etag, body) = checked(&cache, "/students", "/api/students", students_check).await?;
    match request.extensions().get::<Viewer>() {
        Some(viewer) if !viewer.sees_everything() => {
            let students: Vec<Student> = interpret(StatusCode::OK, &body, human(names::GRADING))?;
            let own: Vec<Student> = students.into_iter().filter(|s| viewer.may_see_student(s.id)).collect();
            Ok(axum::Json(own).into_response())
        }
        // Open mode, a teacher (or no `auth` in front, as in unit tests).
        _ => Ok(pass_on(request.headers(), etag, body)),
    }
}

/// `GET /api/students/{id}`: grading's record as it came, to whoever may
/// see it (a student only their own, as `auth::authenticate` already said).
pub async fn api_student(
    State(cache): State<PageCache>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    if !request.extensions().get::<Viewer>().is_none_or(|v| v.may_see_student(id)) {
        return Err(ApiError::new(403, "Your account may not see or do this."));
    }
    let (path, key) = (format!("/students/{id}"), format!("/api/students/{id}"));
    let (etag, body) = checked(&cache, &path, &key, student_check).await.map_err(|e| no_student(id, e))?;
    Ok(pass_on(request.headers(), etag, body))
}
