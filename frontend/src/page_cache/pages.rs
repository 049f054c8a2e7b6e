//! The middleware in front of the page renderer: the grade-book pages
//! (`/students`, `/students/{id}`) served as kept while grading says their
//! data has not changed, and otherwise rendered from exactly the answer
//! that said it has (handed over as [`Prefetched`]) and kept under its tag.
//!
//! A page is kept per viewer variant (see `Viewer::page_variant`: role,
//! account, the forms' CSRF token), never only per path: a teacher's page
//! (with its add-grade form and token) is never served to a student. Who may
//! see a page at all was decided before this layer (`auth::authenticate`).

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::cache::{PageCache, unchecked};
use super::flights::Outcome;
use super::store::Page;
use crate::backends::Prefetched;
use crate::ids::student_id;
use crate::people::Viewer;

/// The grade-book pages whose whole data is grading's answer to the same
/// path; a student's only under its canonical ID, so that `/students/01`
/// cannot become a second copy of `/students/1` (it is a 404 page).
pub fn is_grading_page(path: &str) -> bool {
    path == "/students" || path.strip_prefix("/students/").and_then(student_id).is_some()
}

/// Middleware in front of the page renderer.
pub async fn serve_cached(State(pages): State<PageCache>, mut request: Request, next: Next) -> Response {
    // A query carries a refused form's message and inputs: render those.
    let path = request.uri().path().to_owned();
    if request.method() != Method::GET || request.uri().query().is_some() || !is_grading_page(&path) {
        return next.run(request).await;
    }
    // Kept per viewer: what a page shows depends on who looks.
    let key = match request.extensions().get::<Viewer>() {
        Some(viewer) => format!("{path}\n{}", viewer.page_variant()),
        None => path.clone(),
    };
    let (etag, answer, epoch) = match pages.revalidate(&path, &key, unchecked).await {
        Outcome::Kept(page) => return (page.headers.clone(), page.body.clone()).into_response(),
        Outcome::Unchanged(tag) => match pages.store.tagged(&key, &tag) {
            Some(page) => return (page.headers.clone(), page.body.clone()).into_response(),
            // Replaced meanwhile: render, asking for itself.
            None => return next.run(request).await,
        },
        Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
    };
    request.extensions_mut().insert(Prefetched { path: path.clone(), answer });
    let response = next.run(request).await;
    let Some(etag) = etag.filter(|_| response.status() == StatusCode::OK) else { return response };
    let (parts, body) = response.into_parts();
    let mut rendered = body.into_data_stream();
    let (mut read, mut size) = (Vec::new(), 0);
    while let Some(chunk) = rendered.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(%path, error = %e, "rendering failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        size += chunk.len();
        read.push(chunk);
        if size > pages.store.limits().page_bytes {
            // Too large to keep: served as it is rendered, what was read first.
            tracing::debug!(%path, "page too large to keep");
            let read = futures::stream::iter(read.into_iter().map(Ok));
            return Response::from_parts(parts, Body::from_stream(read.chain(rendered)));
        }
    }
    let body = Bytes::from(read.concat());
    pages.store.keep(key, Page::new(etag, parts.headers.clone(), body.clone(), epoch));
    Response::from_parts(parts, Body::from(body))
}
