//! Our runtime and services against stand-ins that answer as the original
//! Go program does (each answer below was measured against it; the real
//! program is exercised by `tests/browser/interop.test.mjs`): a registry
//! that answers a registration with an empty 200 and has no `/sessions`, a
//! log service that takes only text, and a portal that sends no `Accept`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use gradebook::registry::Config;
use gradebook_runtime::ServiceSpec;
use gradebook_runtime::logship::{Destination, LogBuffer};
use gradebook_shared::log::{Level, NewLogRecord};
use gradebook_tests::{TempDir, TestGrading, TestRegistry, TestService, eventually, serve_app};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(5);

/// The original registry's answers: `POST /services` → 200 with no body,
/// and a plain-text 404 for anything it has no route for (`/sessions`).
async fn original_registry(registrations: Arc<Mutex<u32>>) -> String {
    let app = Router::new().route(
        "/services",
        post(move || async move {
            *registrations.lock().unwrap() += 1;
            StatusCode::OK
        })
        .delete(|| async { StatusCode::OK }),
    );
    serve_app(app.fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })).await
}

#[tokio::test]
async fn a_service_registers_once_with_a_registry_of_the_original_and_falls_back_to_its_probes() {
    let registrations = Arc::new(Mutex::new(0));
    let registry = original_registry(registrations.clone()).await;

    let service = TestService::spawn(ServiceSpec::new("GradingService", registry));
    eventually(LIMIT, "registered", || *registrations.lock().unwrap() >= 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(
        *registrations.lock().unwrap(),
        1,
        "an empty 200 is a registration, and a 404 session no reason to repeat it"
    );
    service.stop();
}

#[tokio::test]
async fn a_registry_that_holds_a_session_request_unanswered_as_go_1_19_does_gets_one_registration() {
    let registrations = Arc::new(Mutex::new(0));
    let counted = registrations.clone();
    let app = Router::new()
        .route(
            "/services",
            post(move || async move {
                *counted.lock().unwrap() += 1;
                StatusCode::OK
            }),
        )
        // Go 1.19 reads no body for an unknown route and answers nothing
        // while the body streams on.
        .route("/sessions", post(std::future::pending::<StatusCode>));
    let registry = serve_app(app).await;
    let mut spec = ServiceSpec::new("GradingService", registry);
    spec.reregister_after = Duration::from_millis(300);

    let service = TestService::spawn(spec);
    eventually(LIMIT, "registered", || *registrations.lock().unwrap() >= 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(*registrations.lock().unwrap(), 1, "a silent registry of the original is no reason to register again");
    service.stop();
}

#[tokio::test]
async fn logs_reach_a_log_service_of_the_original_as_its_own_text_lines() {
    let lines = Arc::new(Mutex::new(Vec::<(Option<String>, String)>::new()));
    let stored = lines.clone();
    let app = Router::new().route(
        "/log",
        post(move |headers: axum::http::HeaderMap, body: String| async move {
            let kind = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            stored.lock().unwrap().push((kind, body));
            StatusCode::OK
        }),
    );
    let url = serve_app(app).await;
    let buffer = LogBuffer::new("Worker", Level::Info, 100);
    let destination: Destination = Arc::new(move || vec![url.clone()]);
    let cancel = CancellationToken::new();
    let shipper = tokio::spawn(buffer.clone().ship(destination, reqwest::Client::new(), cancel.clone()));

    for message in ["first", "second"] {
        buffer.push(NewLogRecord {
            service: "Worker".into(),
            level: Level::Info,
            message: message.into(),
            timestamp: None,
            fields: None,
        });
    }
    eventually(LIMIT, "both lines stored", || lines.lock().unwrap().len() == 2).await;
    cancel.cancel();
    shipper.await.unwrap();

    let lines = lines.lock().unwrap().clone();
    assert_eq!(
        lines,
        vec![
            (Some("text/plain".into()), "[Worker] - first".into()),
            (Some("text/plain".into()), "[Worker] - second".into())
        ]
    );
}

#[tokio::test]
async fn an_unknown_student_is_a_bodiless_404_for_a_client_of_the_original_and_json_for_others() {
    let dir = TempDir::new("original-404");
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestGrading::spawn(&registry.url, &format!("sqlite://{}", dir.path().join("g.db").display()));

    // Go's http.Get sends no Accept header (reqwest always does): by hand.
    let mut stream = tokio::net::TcpStream::connect(grading.addr).await.unwrap();
    let request =
        "GET /students/99 HTTP/1.1\r\nHost: grading\r\nUser-Agent: Go-http-client/1.1\r\nConnection: close\r\n\r\n";
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer).await.unwrap();
    let ours = reqwest::get(format!("{}/students/99", grading.url)).await.unwrap();

    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("content-length: 0"), "the original's 404 has no body: {answer}");
    assert_eq!(ours.status(), StatusCode::NOT_FOUND);
    let error: serde_json::Value = ours.json().await.unwrap();
    assert_eq!(error["error"], "no student with ID 99");
    grading.stop();
}

#[tokio::test]
async fn a_score_given_as_a_string_is_refused_as_the_original_refuses_it() {
    let dir = TempDir::new("original-score");
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestGrading::spawn(&registry.url, &format!("sqlite://{}", dir.path().join("g.db").display()));

    let refused = reqwest::Client::new()
        .post(format!("{}/students/1/grades", grading.url))
        .json(&serde_json::json!({"Title": "Quiz", "Type": "Quiz", "Score": "50"}))
        .send()
        .await
        .unwrap();

    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["field"], "Score");
    let nick: serde_json::Value =
        reqwest::get(format!("{}/students/1", grading.url)).await.unwrap().json().await.unwrap();
    assert_eq!(nick["Grades"].as_array().unwrap().len(), 3, "nothing stored");
    grading.stop();
}
