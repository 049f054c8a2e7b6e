//! The page cache: what is kept, within which budget, and what grading
//! is asked.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::routing::get;
use gradebook_runtime::Runtime;
use gradebook_shared::grading::Student;
use gradebook_shared::names;
use gradebook_shared::registry::PatchEntry;
use tower::ServiceExt;

use super::cache::unchecked;
use super::pages::is_grading_page;
use super::store::{Limits, Page};
use super::*;
use crate::backends::Backends;
use crate::freshness::Freshness;
use crate::people::Viewer;

/// What the tests ask of the kept pages, by path.
impl PageCache {
    fn keep(&self, path: String, page: Page) {
        self.store.keep(path, page);
    }

    fn page(&self, path: &str, etag: &HeaderValue) -> Option<Arc<Page>> {
        self.store.tagged(path, etag)
    }
}

/// A cache of `limits` whose grading is unreachable.
fn cache_of(limits: Limits) -> PageCache {
    PageCache::with_limits(backends_knowing_grading("http://127.0.0.1:9".into()), Freshness::default(), limits)
}

#[test]
fn only_the_pages_made_of_one_grading_answer_are_kept() {
    assert!(is_grading_page("/students"));
    assert!(is_grading_page("/students/12"));
    for path in ["/students/", "/students/abc", "/students/1/grades", "/services", "/logs", "/"] {
        assert!(!is_grading_page(path), "{path}");
    }
}

#[test]
fn a_student_page_is_kept_only_under_its_canonical_id() {
    for path in ["/students/01", "/students/001", "/students/+1", "/students/-1", "/students/99999999999999999999"] {
        assert!(!is_grading_page(path), "{path}");
    }
}

fn page_of(bytes: usize) -> Page {
    Page::new(HeaderValue::from_static("\"v\""), HeaderMap::new(), Bytes::from(vec![b'a'; bytes]), 0)
}

fn stored_bytes(cache: &PageCache) -> usize {
    cache.store.body_bytes()
}

#[test]
fn the_kept_pages_stay_within_their_byte_budget_dropping_the_least_recently_used() {
    let cache = cache_of(Limits { pages: 100, bytes: 1000, page_bytes: 500 });
    let tag = HeaderValue::from_static("\"v\"");
    cache.keep("/students/1".into(), page_of(400));
    cache.keep("/students/2".into(), page_of(400));
    assert!(cache.page("/students/1", &tag).is_some(), "read, so used more recently than 2");

    for i in 3..10 {
        cache.keep(format!("/students/{i}"), page_of(400));
        assert!(stored_bytes(&cache) <= 1000, "{} bytes kept after page {i}", stored_bytes(&cache));
    }
    assert!(cache.page("/students/9", &tag).is_some(), "the newest page is kept");

    let cache = cache_of(Limits { pages: 100, bytes: 1000, page_bytes: 500 });
    cache.keep("/students/1".into(), page_of(400));
    cache.keep("/students/2".into(), page_of(400));
    cache.page("/students/1", &tag);
    cache.keep("/students/3".into(), page_of(400));
    assert!(cache.page("/students/1", &tag).is_some(), "the page read last stays");
    assert!(cache.page("/students/2", &tag).is_none(), "the least recently used page went");
}

#[test]
fn the_kept_pages_stay_within_their_count_however_small_they_are() {
    let cache = cache_of(Limits { pages: 3, bytes: 1_000_000, page_bytes: 500 });
    let tag = HeaderValue::from_static("\"v\"");
    for i in 1..=10 {
        cache.keep(format!("/students/{i}"), page_of(10));
    }
    let kept = (1..=10).filter(|i| cache.page(&format!("/students/{i}"), &tag).is_some()).count();
    assert_eq!(kept, 3, "no more pages than the count allows");
    assert!(cache.page("/students/10", &tag).is_some(), "the newest page is kept");
}

/// A grading stand-in on a real socket that tags every answer.
async fn tagging_grading() -> String {
    let app =
        Router::new().route("/students", get(|| async { ([(header::ETAG, "\"v1\"")], axum::Json(Vec::<()>::new())) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn backends_knowing_grading(url: String) -> Backends {
    let spec = gradebook_runtime::ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9");
    let runtime = Runtime::new(spec, "127.0.0.1:5005".parse().unwrap());
    runtime.providers().merge(&[PatchEntry { name: names::GRADING.into(), url }]);
    Backends::new(runtime, "http://127.0.0.1:9".into())
}

#[tokio::test]
async fn no_answer_from_grading_is_held_once_no_page_load_waits_for_it() {
    let backends = backends_knowing_grading(tagging_grading().await);
    let cache = PageCache::new(backends, Freshness::default());

    cache.revalidate("/students", "/students", unchecked).await;

    let flights = cache.flights.get("/students").unwrap();
    assert!(flights.last().is_none(), "a later load asks anew, so the answer is of no use");
}

#[tokio::test]
async fn a_student_let_through_to_the_api_would_still_get_only_their_own_record() {
    let student = |id| Student { id, first_name: "F".into(), last_name: "L".into(), grades: vec![], average: None };
    let students = vec![student(1), student(2)];
    let app = Router::new()
        .route(
            "/students",
            get(move || std::future::ready(([(header::ETAG, "\"two\"")], axum::Json(students.clone())))),
        )
        .route("/students/{id}", get(move || async move { ([(header::ETAG, "\"one\"")], axum::Json(student(2))) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let account =
        crate::people::Account { name: "sam".into(), role: crate::people::Role::Student, student: Some(1), version: 1 };
    // Past `auth::authenticate`, which refuses these today.
    let api = Router::new()
        .route("/api/students", get(api_students))
        .route("/api/students/{id}", get(api_student))
        .with_state(PageCache::new(backends_knowing_grading(url), Freshness::default()))
        .layer(axum::Extension(Viewer::Person { account, csrf: String::new(), bearer: true }));

    let list = api.clone().oneshot(Request::get("/api/students").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert!(list.headers().get(header::ETAG).is_none(), "not grading's answer, so not its tag");
    let body = axum::body::to_bytes(list.into_body(), 1 << 20).await.unwrap();
    let ids: Vec<i64> = serde_json::from_slice::<Vec<Student>>(&body).unwrap().iter().map(|s| s.id).collect();
    assert_eq!(ids, [1]);

    let other = api.oneshot(Request::get("/api/students/2").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(other.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_page_larger_than_what_is_kept_is_served_whole_and_not_kept() {
    let backends = backends_knowing_grading(tagging_grading().await);
    let cache =
        PageCache::with_limits(backends, Freshness::default(), Limits { pages: 100, bytes: 100_000, page_bytes: 1000 });
    let big = "x".repeat(10_000);
    let app = Router::new()
        .route("/students", get(move || std::future::ready(big.clone())))
        .layer(axum::middleware::from_fn_with_state(cache.clone(), serve_cached));

    let response = app.oneshot(Request::get("/students").body(Body::empty()).unwrap()).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(body.len(), 10_000);
    assert_eq!(stored_bytes(&cache), 0, "a page over the size kept is rendered every time");
}
