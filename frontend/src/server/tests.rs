//! The portal through `server::router` with `oneshot`: pages, the JSON
//! API, the form post and the live log tail, against stand-ins for the
//! services on real sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery};
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gradebook_shared::grading::Student;
use gradebook_shared::log::LogRecord;
use gradebook_shared::names;
use gradebook_shared::registry::PatchEntry;
use parking_lot::Mutex;
use tower::ServiceExt;

use super::*;

/// The backends of a portal whose registry is unreachable, knowing only
/// `providers`.
fn backends_knowing(providers: &[PatchEntry]) -> Backends {
    let spec = gradebook_runtime::ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9");
    let runtime = Runtime::new(spec, "127.0.0.1:5005".parse().unwrap());
    runtime.providers().merge(providers);
    Backends::new(runtime, "http://127.0.0.1:9".into())
}

fn portal_on(backends: Backends) -> Router {
    let options = LeptosOptions::builder().output_name("gradebook").build();
    router(options, AppState::new(backends, Security::open()))
}

/// A portal whose registry is unreachable, knowing only `providers`.
fn portal_knowing(providers: &[PatchEntry]) -> Router {
    portal_on(backends_knowing(providers))
}

/// A portal that knows no provider of anything.
fn portal() -> Router {
    portal_knowing(&[])
}

async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn the_api_says_503_with_a_json_message_when_grading_is_unavailable() {
    let response = portal().oneshot(Request::get("/api/students").body(Body::empty()).unwrap()).await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert!(body["error"].as_str().unwrap().contains("grading service is unavailable"));
}

#[tokio::test]
async fn the_student_list_page_renders_a_503_page_when_grading_is_unavailable() {
    let response = portal().oneshot(Request::get("/students").body(Body::empty()).unwrap()).await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = body_text(response).await;
    assert!(html.contains("Service unavailable") && html.contains("grading service is unavailable"), "{html}");
}

#[tokio::test]
async fn a_non_numeric_student_id_is_a_404_not_a_server_error() {
    let response = portal().oneshot(Request::get("/api/students/abc").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_plain_form_post_that_fails_redirects_back_with_the_message() {
    let request = Request::post("/students/1/grades")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("Title=Quiz&Type=Quiz&Score=10"))
        .unwrap();

    let response = portal().oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("/students/1?error=") && location.contains("title=Quiz"), "{location}");
}

/// A grading stand-in on a real socket that answers `GET /students`
/// with `If-None-Match` the way grading does, and counts its full answers.
struct FakeGrading {
    url: String,
    last_name: Arc<Mutex<String>>,
    full_answers: Arc<AtomicUsize>,
    questions: Arc<AtomicUsize>,
}

impl FakeGrading {
    async fn start() -> Self {
        let last_name = Arc::new(Mutex::new("Carter".to_owned()));
        let (full_answers, questions) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (name, count, asked) = (last_name.clone(), full_answers.clone(), questions.clone());
        let app = Router::new().route(
            "/students",
            get(move |headers: axum::http::HeaderMap| async move {
                asked.fetch_add(1, Ordering::SeqCst);
                // Long enough for concurrent page loads to meet here.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let last = name.lock().clone();
                let etag = format!("\"{last}\"");
                if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == etag.as_str()) {
                    return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
                }
                count.fetch_add(1, Ordering::SeqCst);
                let student =
                    Student { id: 1, first_name: "Nick".into(), last_name: last, grades: vec![], average: None };
                ([(header::ETAG, etag)], Json(vec![student])).into_response()
            }),
        );
        // Like grading, takes any ID that parses as a number.
        let asked = questions.clone();
        let app = app.route(
            "/students/{id}",
            get(move |Path(id): Path<String>| async move {
                asked.fetch_add(1, Ordering::SeqCst);
                let Ok(id) = id.parse::<i64>() else { return StatusCode::NOT_FOUND.into_response() };
                let student = Student {
                    id,
                    first_name: "Nick".into(),
                    last_name: "Carter".into(),
                    grades: vec![],
                    average: None,
                };
                ([(header::ETAG, "\"1\"")], Json(student)).into_response()
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, last_name, full_answers, questions }
    }

    fn full_answers(&self) -> usize {
        self.full_answers.load(Ordering::SeqCst)
    }

    fn questions(&self) -> usize {
        self.questions.load(Ordering::SeqCst)
    }
}

fn portal_with_grading(grading: &FakeGrading) -> Router {
    portal_knowing(&[PatchEntry { name: names::GRADING.into(), url: grading.url.clone() }])
}

async fn page(portal: &Router, path: &str) -> String {
    let response = portal.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    body_text(response).await
}

#[tokio::test]
async fn an_unchanged_page_is_served_without_new_data_and_a_changed_one_is_rendered_again() {
    let grading = FakeGrading::start().await;
    let portal = portal_with_grading(&grading);

    let first = page(&portal, "/students").await;
    let second = page(&portal, "/students").await;
    assert!(first.contains("Carter"), "{first}");
    assert_eq!(second, first);
    assert_eq!(grading.full_answers(), 1, "the second load was answered 304 and served as kept");

    *grading.last_name.lock() = "Baggio".into();
    let third = page(&portal, "/students").await;
    assert!(third.contains("Baggio") && !third.contains("Carter"), "{third}");
    assert_eq!(grading.full_answers(), 2, "the changed data was fetched once and rendered from");
}

#[tokio::test]
async fn page_loads_that_arrive_together_share_the_question_to_grading() {
    let grading = FakeGrading::start().await;
    let portal = portal_with_grading(&grading);
    let first = page(&portal, "/students").await;
    let asked_before = grading.questions();

    let loads = (0..20).map(|_| {
        let portal = portal.clone();
        tokio::spawn(async move { page(&portal, "/students").await })
    });
    let pages = futures::future::join_all(loads).await;

    assert!(pages.into_iter().all(|p| p.unwrap() == first));
    let asked = grading.questions() - asked_before;
    assert!((1..=3).contains(&asked), "20 concurrent loads asked grading {asked} times");
}

#[tokio::test]
async fn unknown_pages_are_404() {
    let response = portal().oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Serves `app` on a free loopback port as a stand-in for a service.
async fn stand_in(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn entry(name: &str, url: &str) -> PatchEntry {
    PatchEntry { name: name.into(), url: url.into() }
}

fn request(method: &str, path: &str) -> Request<Body> {
    Request::builder().method(method).uri(path).body(Body::empty()).unwrap()
}

fn content_type(response: &Response) -> String {
    response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn the_root_is_a_303_redirect_to_the_student_list_without_javascript() {
    let response = portal().oneshot(request("GET", "/")).await.unwrap();

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/students");
}

#[tokio::test]
async fn a_page_asked_with_a_wrong_method_gets_an_html_error_page() {
    for (method, path) in
        [("POST", "/students"), ("PUT", "/logs"), ("DELETE", "/students/1"), ("GET", "/students/1/grades")]
    {
        let response = portal().oneshot(request(method, path)).await.unwrap();

        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(content_type(&response).starts_with("text/html"), "{method} {path}: {}", content_type(&response));
        let html = body_text(response).await;
        assert!(html.contains("<html") && html.contains("Method not allowed"), "{method} {path}: {html}");
    }
}

#[tokio::test]
async fn a_form_post_for_a_student_that_does_not_exist_gets_an_html_error_page() {
    let request = Request::post("/students/01/grades")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("Title=Quiz&Type=Quiz&Score=10"))
        .unwrap();

    let response = portal().oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(content_type(&response).starts_with("text/html"), "{}", content_type(&response));
    assert!(body_text(response).await.contains("no such student"));
}

#[tokio::test]
async fn the_api_answers_a_wrong_method_or_an_unknown_route_with_a_json_error() {
    for (method, path, status) in [
        ("POST", "/api/students", 405),
        ("PUT", "/api/students/1", 405),
        ("DELETE", "/api/logs", 405),
        ("GET", "/api/students/1/grades", 405),
        ("GET", "/api/nope", 404),
        ("POST", "/api/nope", 404),
        ("POST", "/healthz", 405),
    ] {
        let response = portal().oneshot(request(method, path)).await.unwrap();

        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        let text = body_text(response).await;
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}"));
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {text}");
    }
}

#[tokio::test]
async fn student_ids_with_leading_zeros_are_404_for_pages_and_api_alike_without_asking_grading() {
    let grading = FakeGrading::start().await;
    let portal = portal_with_grading(&grading);
    page(&portal, "/students/1").await;
    let asked = grading.questions();

    for path in ["/students/01", "/students/001", "/students/+1", "/api/students/01", "/api/students/001"] {
        let response = portal.clone().oneshot(request("GET", path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(grading.questions(), asked, "a non-canonical ID is refused before grading is asked");
}

/// A grading stand-in whose student 1 has `n` grades, "Quiz 1" to "Quiz n".
async fn grading_with_grades(n: i64) -> String {
    let grades: Vec<_> = (1..=n)
        .map(|i| gradebook_shared::grading::Grade {
            id: i,
            title: format!("Quiz {i}"),
            kind: "Quiz".into(),
            score: 50.0,
        })
        .collect();
    let student = Student { id: 1, first_name: "Many".into(), last_name: "Grades".into(), grades, average: None };
    let body = Arc::new(serde_json::to_vec(&student).unwrap());
    stand_in(Router::new().route(
        "/students/{id}",
        get(move || {
            let body = body.clone();
            async move { ([(header::ETAG, "\"many\""), (header::CONTENT_TYPE, "application/json")], (*body).clone()) }
        }),
    ))
    .await
}

#[tokio::test]
async fn a_student_with_20000_grades_is_shown_a_page_of_grades_at_a_time() {
    let grading = grading_with_grades(20_000).await;
    let portal = portal_knowing(&[entry(names::GRADING, &grading)]);

    let latest = page(&portal, "/students/1").await;
    assert!(latest.len() < 256 * 1024, "the page is {} bytes", latest.len());
    assert!(latest.contains(">Quiz 20000<") && latest.contains(">Quiz 19901<"), "the latest grades come first");
    assert!(!latest.contains(">Quiz 19900<"));
    assert!(latest.contains("of 20000") && latest.contains("page=199"), "says where it is and links back");
    assert!(latest.contains("50.0 %"), "the average is over every grade");

    let first = page(&portal, "/students/1?page=1").await;
    assert!(first.contains(">Quiz 1<") && first.contains(">Quiz 100<") && !first.contains(">Quiz 101<"));
    assert!(first.contains("page=2"));
}

#[tokio::test]
async fn the_logs_page_shows_each_records_fields_and_says_in_which_order_they_are() {
    let record: LogRecord = serde_json::from_value(serde_json::json!({
        "seq": 1, "service": "Registry", "level": "info", "message": "registered",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "fields": {"service": "GradingService", "url": "http://127.0.0.1:6001", "providers": 2},
    }))
    .unwrap();
    let log = stand_in(Router::new().route("/log", get(move || std::future::ready(Json(vec![record.clone()]))))).await;
    let portal = portal_knowing(&[entry(names::LOG, &log)]);

    let html = page(&portal, "/logs").await;

    assert!(html.contains("registered"), "{html}");
    assert!(
        html.contains("service=GradingService")
            && html.contains("url=http://127.0.0.1:6001")
            && html.contains("providers=2"),
        "{html}"
    );
    assert!(html.contains("in the order the log service received them"), "{html}");
}

#[tokio::test]
async fn an_oversized_answer_from_the_log_service_is_refused_with_a_clear_error_not_buffered() {
    let record = |seq| LogRecord {
        seq,
        service: "Flood".into(),
        level: gradebook_shared::log::Level::Info,
        message: "x".repeat(1000),
        timestamp: "2026-01-01T00:00:00Z".into(),
        fields: None,
    };
    // 9,000 records of 1 KB: more than the portal reads of one answer.
    let body = bytes::Bytes::from(serde_json::to_vec(&(0..9_000).map(record).collect::<Vec<_>>()).unwrap());
    let log = stand_in(Router::new().route(
        "/log",
        get(move |RawQuery(q): RawQuery| {
            let body = body.clone();
            async move {
                let json = [(header::CONTENT_TYPE, "application/json")];
                if q.as_deref() == Some("chunked=1") {
                    // No Content-Length: the cap must hold while reading.
                    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
                        body.chunks(64 * 1024).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
                    (json, Body::from_stream(futures::stream::iter(chunks))).into_response()
                } else {
                    (json, body).into_response()
                }
            }
        }),
    ))
    .await;
    let portal = portal_knowing(&[entry(names::LOG, &log)]);

    for path in ["/api/logs", "/api/logs?chunked=1"] {
        let response = portal.clone().oneshot(request("GET", path)).await.unwrap();

        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{path}");
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert!(body["error"].as_str().is_some_and(|e| e.contains("larger than")), "{path}: {body}");
    }
}

/// A log service stand-in whose `/log/stream` answers with `events`.
async fn log_streaming(events: impl Fn() -> Body + Clone + Send + Sync + 'static) -> Backends {
    let log = stand_in(Router::new().route(
        "/log/stream",
        get(move || {
            let events = events.clone();
            async move { ([(header::CONTENT_TYPE, "text/event-stream")], events()) }
        }),
    ))
    .await;
    backends_knowing(&[entry(names::LOG, &log)])
}

const ONE_EVENT: &str = "event: log\ndata: {}\n\n";

#[tokio::test]
async fn the_log_stream_relay_ends_when_the_log_service_goes_quiet() {
    // One event, then nothing, ever: a hung log service.
    let backends = log_streaming(|| {
        let first = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(ONE_EVENT.as_bytes()))]);
        Body::from_stream(futures::StreamExt::chain(first, futures::stream::pending()))
    })
    .await
    .with_stream_idle_timeout(Duration::from_millis(300));

    let response = portal_on(backends).oneshot(request("GET", "/api/logs/stream")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let relayed = tokio::time::timeout(Duration::from_secs(5), body_text(response))
        .await
        .expect("the relay ends once the log service has been quiet for the idle timeout");
    assert_eq!(relayed, ONE_EVENT);
}

#[tokio::test]
async fn the_log_stream_relay_ends_when_the_portal_shuts_down() {
    // A healthy log service: a keep-alive every 50 ms, forever.
    let backends = log_streaming(|| {
        Body::from_stream(futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b": keep-alive\n\n")), ()))
        }))
    })
    .await;
    let shutdown = CancellationToken::new();
    let portal = portal_on(backends.with_shutdown(shutdown.clone()));

    let response = portal.oneshot(request("GET", "/api/logs/stream")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut body)).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "the keep-alives are relayed");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), async {
        while futures::StreamExt::next(&mut body).await.is_some() {}
    })
    .await
    .expect("the relay ends when the portal shuts down");
}

#[tokio::test]
async fn the_portal_exits_on_shutdown_while_a_client_holds_the_live_log_tail_open() {
    let log = stand_in(Router::new().route(
        "/log/stream",
        get(|| async {
            let keep_alives = futures::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b": keep-alive\n\n")), ()))
            });
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(keep_alives))
        }),
    ))
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The registry is unreachable: registering keeps retrying, which
    // shutdown ends, and deregistering fails at once.
    let runtime = Runtime::new(gradebook_runtime::ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9"), addr);
    runtime.providers().merge(&[entry(names::LOG, &log)]);
    let options = LeptosOptions::builder().output_name("gradebook").build();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn(serve(
        listener,
        runtime,
        options,
        "http://127.0.0.1:9".into(),
        Security::open(),
        shutdown.clone(),
    ));

    let mut tail = reqwest::get(format!("http://{addr}/api/logs/stream")).await.unwrap();
    assert_eq!(tail.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(5), tail.chunk()).await;
    assert!(matches!(first, Ok(Ok(Some(_)))), "the tail is open and flowing");

    shutdown.cancel();
    let exited = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the portal exits although a client still holds the live tail open");
    assert!(matches!(exited, Ok(Ok(()))), "{exited:?}");
}

#[tokio::test]
async fn a_log_service_that_never_answers_the_stream_is_a_503_after_the_idle_timeout() {
    let log = stand_in(Router::new().route("/log/stream", get(futures::future::pending::<()>))).await;
    let backends = backends_knowing(&[entry(names::LOG, &log)]).with_stream_idle_timeout(Duration::from_millis(300));

    let response =
        tokio::time::timeout(Duration::from_secs(5), portal_on(backends).oneshot(request("GET", "/api/logs/stream")))
            .await
            .expect("the portal stops waiting for a log service that never answers")
            .unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert!(body["error"].as_str().is_some_and(|e| e.contains("log service")), "{body}");
}
