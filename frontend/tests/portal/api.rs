//! The portal's JSON API over grading's data (`GET /api/students` and
//! `/api/students/{id}`): grading's own bytes and tag, passed on without
//! being read and written again; a bodiless 304 for a client that holds
//! them; never staler than grading; who may see what, as before; and a
//! broken answer from grading never passed on.
//!
//! The portal runs in-process (`oneshot`) against the stand-in of `support`,
//! which writes its answers pretty-printed: re-serialized bytes would differ.

use std::sync::atomic::Ordering;

use crate::support::{STUDENT_TOKEN, Stored, TEACHER_TOKEN, closed_portal, portal, start_backend};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

/// The portal's answer to `GET path` with `headers`: status, headers, body.
async fn get(portal: &Router, path: &str, headers: &[(header::HeaderName, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = portal.clone().oneshot(request.body(Body::empty()).expect("a request")).await.expect("an answer");
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20).await.expect("a whole body");
    (parts.status, parts.headers, body)
}

/// Grading's own answer to `GET path`: its tag and bytes.
async fn from_grading(backend: &str, path: &str) -> (String, Bytes) {
    let response = reqwest::get(format!("{backend}{path}")).await.expect("the stand-in answers");
    let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (etag, response.bytes().await.expect("a whole body"))
}

fn etag(headers: &HeaderMap) -> &str {
    headers.get(header::ETAG).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn content_type(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn bearer(token: &str) -> (header::HeaderName, String) {
    (header::AUTHORIZATION, format!("Bearer {token}"))
}

/// The `error` of a JSON error answer; panics on anything else.
fn error_of(path: &str, headers: &HeaderMap, body: &[u8]) -> String {
    assert!(content_type(headers).starts_with("application/json"), "{path}: {}", content_type(headers));
    let body: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{path}: {e}"));
    body["error"].as_str().unwrap_or_else(|| panic!("{path}: no error in {body}")).to_owned()
}

#[tokio::test]
async fn the_api_answers_with_gradings_own_bytes_and_etag() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);

    for (api, own) in [("/api/students", "/students"), ("/api/students/1", "/students/1")] {
        let (tag, bytes) = from_grading(&backend, own).await;
        assert!(!tag.is_empty(), "the stand-in tags its reads");
        // The first is fetched in full, the second revalidated and served as kept.
        for round in ["fetched", "kept"] {
            let (status, headers, body) = get(&portal, api, &[]).await;

            assert_eq!(status, StatusCode::OK, "{api} ({round})");
            assert_eq!(body, bytes, "{api} ({round}): grading's bytes as they came");
            assert_eq!(etag(&headers), tag, "{api} ({round})");
            assert!(content_type(&headers).starts_with("application/json"), "{api}: {}", content_type(&headers));
        }
    }
}

#[tokio::test]
async fn a_client_holding_the_current_etag_gets_a_bodiless_304_once_grading_confirms_it() {
    let stored = Stored::new();
    let portal = portal(&start_backend(stored.clone()).await);
    let (_, headers, full) = get(&portal, "/api/students", &[]).await;
    let tag = etag(&headers).to_owned();
    let (asked, answered) = (stored.list_asked.load(Ordering::SeqCst), stored.list_answered.load(Ordering::SeqCst));

    let held = [tag.clone(), format!("W/{tag}"), format!("\"something-else\", {tag}"), "*".to_owned()];
    for held in &held {
        let (status, headers, body) = get(&portal, "/api/students", &[(header::IF_NONE_MATCH, held)]).await;

        assert_eq!(status, StatusCode::NOT_MODIFIED, "If-None-Match: {held}");
        assert!(body.is_empty(), "If-None-Match: {held}: a 304 has no body");
        assert_eq!(etag(&headers), tag, "If-None-Match: {held}");
    }
    assert_eq!(stored.list_asked.load(Ordering::SeqCst) - asked, held.len(), "every request still asks grading");
    assert_eq!(stored.list_answered.load(Ordering::SeqCst), answered, "and grading answered each with a 304");

    let (status, _, body) = get(&portal, "/api/students", &[(header::IF_NONE_MATCH, "\"an-old-tag\"")]).await;
    assert_eq!(status, StatusCode::OK, "another tag gets the answer");
    assert_eq!(body, full);

    let (_, headers, _) = get(&portal, "/api/students/1", &[]).await;
    let one = etag(&headers).to_owned();
    let (status, _, body) = get(&portal, "/api/students/1", &[(header::IF_NONE_MATCH, &one)]).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0), "a student's record too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_together_share_one_question_to_grading() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);
    let (_, _, first) = get(&portal, "/api/students", &[]).await;
    stored.slow.store(true, Ordering::SeqCst);
    let asked = stored.list_asked.load(Ordering::SeqCst);

    let loads = (0..20).map(|_| {
        let portal = portal.clone();
        tokio::spawn(async move { get(&portal, "/api/students", &[]).await })
    });
    let answers = futures::future::join_all(loads).await;

    for answer in answers {
        let (status, _, body) = answer.expect("no request panicked");
        assert_eq!((status, body), (StatusCode::OK, first.clone()));
    }
    let asked = stored.list_asked.load(Ordering::SeqCst) - asked;
    assert!((1..=3).contains(&asked), "20 requests sent together asked grading {asked} times");
}

#[tokio::test]
async fn a_grade_written_through_the_portal_is_in_the_next_answer() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);
    let (_, list_headers, _) = get(&portal, "/api/students", &[]).await;
    let (_, one_headers, _) = get(&portal, "/api/students/1", &[]).await;
    let (old_list, old_one) = (etag(&list_headers).to_owned(), etag(&one_headers).to_owned());

    let grade = r#"{"Title":"Quiz 3","Type":"Quiz","Score":91}"#;
    let post = Request::post("/api/students/1/grades")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(grade))
        .expect("a request");
    let added = portal.clone().oneshot(post).await.expect("an answer");
    assert_eq!(added.status(), StatusCode::CREATED);

    for (api, own, old) in [("/api/students", "/students", &old_list), ("/api/students/1", "/students/1", &old_one)] {
        // The client still holds the answer from before the grade.
        let (status, headers, body) = get(&portal, api, &[(header::IF_NONE_MATCH, old)]).await;

        assert_eq!(status, StatusCode::OK, "{api}: changed since the client's copy");
        assert!(String::from_utf8_lossy(&body).contains("Quiz 3"), "{api}: the new grade is there");
        assert_ne!(etag(&headers), old.as_str(), "{api}: under a new tag");
        assert_eq!(
            (etag(&headers).to_owned(), body),
            from_grading(&backend, own).await,
            "{api}: as grading has it now"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_stream_of_reads_each_grade_written_is_in_the_next_read() {
    let stored = Stored::new();
    let portal = portal(&start_backend(stored.clone()).await);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (portal, done) = (portal.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    assert_eq!(get(&portal, "/api/students", &[]).await.0, StatusCode::OK);
                    // An answer can be ready at once: let the test end should it fail.
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    for i in 0..30 {
        let title = format!("Stream {i}");
        let grade = serde_json::json!({"Title": title, "Type": "Quiz", "Score": 50});
        let post = Request::post("/api/students/2/grades")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(grade.to_string()))
            .expect("a request");
        assert_eq!(portal.clone().oneshot(post).await.expect("an answer").status(), StatusCode::CREATED);

        let (_, _, body) = get(&portal, "/api/students", &[]).await;
        assert!(String::from_utf8_lossy(&body).contains(&title), "{title} is missing from the read after it");
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.expect("every read succeeded");
    }
}

#[tokio::test]
async fn a_student_gets_their_own_record_as_grading_wrote_it_and_403_for_anything_else() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = closed_portal(&backend);
    let (teacher, student) = (bearer(TEACHER_TOKEN), bearer(STUDENT_TOKEN));
    let as_teacher = [(teacher.0.clone(), teacher.1.as_str())];
    let as_student = [(student.0.clone(), student.1.as_str())];

    // A teacher first: what is kept is kept per path, and must not leak.
    for (api, own) in [("/api/students", "/students"), ("/api/students/2", "/students/2")] {
        let (status, headers, body) = get(&portal, api, &as_teacher).await;
        assert_eq!(status, StatusCode::OK, "a teacher: {api}");
        assert_eq!((etag(&headers).to_owned(), body), from_grading(&backend, own).await, "a teacher: {api}");
    }

    let (status, headers, body) = get(&portal, "/api/students/1", &as_student).await;
    assert_eq!(status, StatusCode::OK, "their own record");
    assert_eq!((etag(&headers).to_owned(), body), from_grading(&backend, "/students/1").await);
    let held = [(student.0.clone(), student.1.as_str()), (header::IF_NONE_MATCH, etag(&headers))];
    assert_eq!(get(&portal, "/api/students/1", &held).await.0, StatusCode::NOT_MODIFIED);

    for path in ["/api/students", "/api/students/2"] {
        let (status, headers, body) = get(&portal, path, &as_student).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "a student: {path}");
        assert!(!String::from_utf8_lossy(&body).contains("Baggio"), "a student: {path}: another student's data");
        assert!(!error_of(path, &headers, &body).is_empty());
    }
    for path in ["/api/students", "/api/students/1"] {
        assert_eq!(get(&portal, path, &[]).await.0, StatusCode::UNAUTHORIZED, "nobody: {path}");
    }
}

#[tokio::test]
async fn an_unknown_student_is_a_404_with_the_portals_message() {
    let portal = portal(&start_backend(Stored::new()).await);

    let (status, headers, body) = get(&portal, "/api/students/99", &[]).await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_of("/api/students/99", &headers, &body), "There is no student with ID 99.");
}

#[tokio::test]
async fn a_broken_answer_from_grading_is_a_502_with_a_json_error_and_never_passed_on() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);
    for path in ["/api/students", "/api/students/1"] {
        assert_eq!(get(&portal, path, &[]).await.0, StatusCode::OK, "{path}: kept while grading was well");
    }

    let broken: [&[u8]; 5] = [
        b"<html>Internal error</html>",
        b"[{\"ID\":1,\"FirstName\":\"Nick\"",
        b"{\"error\":\"a 200 that is no student\"}",
        b"[{\"ID\":\"one\"}]",
        b"\xff\xfe not even UTF-8",
    ];
    for bytes in broken {
        *stored.broken.lock() = Some(bytes.to_vec());
        // Twice: a broken answer is not kept either.
        for path in ["/api/students", "/api/students/1", "/api/students"] {
            let (status, headers, body) = get(&portal, path, &[]).await;

            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path} answered with {shown:?}");
            assert!(error_of(path, &headers, &body).contains("grading service"), "{path}: {shown:?}");
            assert!(etag(&headers).is_empty(), "{path}: {shown:?}: no tag on an error");
        }
    }

    *stored.broken.lock() = None;
    let (status, _, body) = get(&portal, "/api/students", &[]).await;
    assert_eq!(status, StatusCode::OK, "well again");
    assert_eq!(body, from_grading(&backend, "/students").await.1);
}

#[tokio::test]
async fn an_untagged_answer_as_the_original_grading_gives_is_passed_on_and_checked_every_time() {
    let stored = Stored::new();
    stored.untagged.store(true, Ordering::SeqCst);
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);

    let (status, headers, body) = get(&portal, "/api/students", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(etag(&headers).is_empty(), "no tag of grading's to pass on");
    assert_eq!(body, from_grading(&backend, "/students").await.1);

    *stored.broken.lock() = Some(b"[{".to_vec());
    assert_eq!(get(&portal, "/api/students", &[]).await.0, StatusCode::BAD_GATEWAY);
}
