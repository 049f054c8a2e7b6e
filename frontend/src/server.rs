//! The portal server: renders pages (leptos_axum), answers the JSON API by
//! forwarding to the services it discovers through the registry (pooled
//! connections, deadlines, failover), takes the no-JavaScript form post, and
//! registers as `Portal`.

use std::sync::{Arc, OnceLock};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{any, get, post};
use axum::{Form, Json, Router};
use gradebook_runtime::Runtime;
use gradebook_runtime::http::ApiJson;
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::NewGrade;
use gradebook_shared::log::LogRecord;
use gradebook_shared::registry::ServiceStatus;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{encode, student_id};
use crate::app::{App, shell};
use crate::auth::{self, Security};
use crate::backends::Backends;
use crate::error::ApiError;
use crate::page_cache::{self, PageCache};
use crate::people::{OPEN_BANNER, Viewer};

// ---- JSON API ---------------------------------------------------------------

// `GET /api/students` and `/api/students/{id}` pass grading's bytes on:
// see `page_cache::api_students`.

/// Checked by grading's own rules before it is forwarded, typed.
async fn api_add_grade(
    State(b): State<Backends>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let grade = NewGrade::validate(&body).map_err(ApiError::invalid)?;
    Ok((StatusCode::CREATED, Json(b.add_grade(id, &grade).await?)))
}

async fn api_services(State(b): State<Backends>) -> Result<Json<Vec<ServiceStatus>>, ApiError> {
    Ok(Json(b.services().await?))
}

async fn api_logs(State(b): State<Backends>, RawQuery(q): RawQuery) -> Result<Json<Vec<LogRecord>>, ApiError> {
    Ok(Json(b.logs(q.as_deref().unwrap_or("")).await?))
}

/// Relays the log service's live tail.
async fn api_log_stream(State(b): State<Backends>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let upstream = b.log_stream(q.unwrap_or_default()).await?;
    let mut response = axum::body::Body::from_stream(upstream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

pub(crate) fn parse_id(id: &str) -> Result<i64, ApiError> {
    student_id(id).ok_or_else(|| ApiError::new(404, format!("There is no student with ID {id:?}.")))
}

/// The add-grade form posted without JavaScript: forwarded as JSON, then a
/// 303 back to the student page — carrying the service's message (and what
/// was typed) when it refused the grade, instead of hiding the error.
async fn form_add_grade(
    State(b): State<Backends>,
    Path(id): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let Some(sid) = student_id(&id) else { return ApiError::new(404, "There is no such student.").into_response() };
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let added = match NewGrade::from_form(&field("Title"), &field("Type"), &field("Score")) {
        Ok(grade) => b.add_grade(sid, &grade).await,
        Err(refused) => Err(ApiError::invalid(refused)),
    };
    match added {
        Ok(_) => Redirect::to(&format!("/students/{sid}")).into_response(),
        Err(e) if e.status == 404 => e.into_response(),
        Err(e) => Redirect::to(&format!(
            "/students/{sid}?error={}&title={}&type={}&score={}",
            encode(&e.error),
            encode(&field("Title")),
            encode(&field("Type")),
            encode(&field("Score"))
        ))
        .into_response(),
    }
}

/// The app's routes, generated once per process. Generating renders the app
/// with resource loading switched off by a process-wide flag (leptos#4773):
/// any page whose data starts loading meanwhile would wait forever. Once per
/// process, before the first router exists, no page can be rendering yet.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// `/` is the grade book. The app's own `<Redirect>` can only answer a 200
/// with a `Location` header (a page without JavaScript stays blank), so the
/// server answers it with a real redirect; the app's route stays for the
/// client-only build.
async fn root(viewer: Option<axum::Extension<Viewer>>) -> Redirect {
    // A student has one page to see: their own.
    match viewer.and_then(|axum::Extension(v)| v.own_student()) {
        Some(id) => Redirect::to(&format!("/students/{id}")),
        None => Redirect::to("/students"),
    }
}

/// Error answers of the pages (a wrong method, a refused form post) come as
/// an HTML page saying what went wrong, not an empty body or JSON: a browser
/// shows them to a person. The API and `/healthz` keep their JSON errors.
async fn html_errors(State(options): State<Arc<LeptosOptions>>, request: Request, next: Next) -> Response {
    // Kept as they came (a copy of a URI shares its bytes): most answers
    // are not errors, and need neither.
    let (uri, method) = (request.uri().clone(), request.method().clone());
    let path = uri.path();
    let is_api = path == "/api" || path.starts_with("/api/") || path == "/healthz" || path == "/metrics";
    let response = next.run(request).await;
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_html || is_api {
        return response;
    }
    // Set by `auth::authenticate`, inside this layer.
    let viewer = response.extensions().get::<Viewer>().cloned();
    let (parts, body) = response.into_parts();
    // Error bodies are short; one that is not says nothing a reader needs.
    let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(said) if status != StatusCode::METHOD_NOT_ALLOWED => said.error,
        _ if status == StatusCode::METHOD_NOT_ALLOWED => format!("The page {path} does not take {method} requests."),
        _ => status.canonical_reason().unwrap_or("The request could not be answered.").to_owned(),
    };
    let mut page = (status, Html(error_page(&options, status, &message, viewer.as_ref()))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().insert(name.clone(), value.clone());
        }
    }
    page
}

/// A page with the portal's look for an error no app page renders.
fn error_page(options: &LeptosOptions, status: StatusCode, message: &str, viewer: Option<&Viewer>) -> String {
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable",
        s if s.is_client_error() => "Not possible",
        _ => "Something went wrong",
    };
    let message = escape(message);
    // Nobody signed in (a 401 page): no links they could not follow.
    let (nav, home) = match viewer {
        None => (String::new(), "/signin".to_owned()),
        Some(viewer) => match viewer.own_student() {
            Some(id) => (format!(r#"<a href="/students/{id}">My grades</a>"#), format!("/students/{id}")),
            None => (
                r#"<a href="/students">Students</a><a href="/services">Services</a><a href="/logs">Logs</a>"#
                    .to_owned(),
                "/students".to_owned(),
            ),
        },
    };
    let main = format!(
        r#"<section class="problem" role="alert"><h2>{title}</h2><p>{message}</p><p><a href="{home}">Back to the grade book</a></p></section>"#
    );
    let banner = match viewer {
        Some(Viewer::Open) => format!(r#"<p class="open-banner" role="alert">{}</p>"#, escape(OPEN_BANNER)),
        _ => String::new(),
    };
    document(options, title, &nav, &format!("{banner}{main}"))
}

/// A whole HTML page with the portal's look, for what the app does not
/// render (error pages, the sign-in form): `nav` and `main` are HTML.
pub(crate) fn document(options: &LeptosOptions, title: &str, nav: &str, main: &str) -> String {
    let css = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{title} · Grade Book</title><link rel="stylesheet" href="{css}"/><link rel="icon" href="data:,"/></head>
<body><header class="top"><a href="/students" class="brand">Gradebook</a><nav>{nav}</nav></header>
<main>{main}</main>
</body></html>
"#,
        title = escape(title),
        css = escape(&css),
    )
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// The whole portal: API, form handler, pages and the site's static files.
pub fn router(options: LeptosOptions, backends: Backends) -> Router {
    // Pages and grading's answers through the API, within one budget.
    let cache = PageCache::default();
    let from_grading = Router::new()
        .route("/api/students", get(page_cache::api_students))
        .route("/api/students/{id}", get(page_cache::api_student))
        .with_state(std::sync::Arc::new((backends.clone(), cache.clone())));
    let api = Router::new()
        .route("/api/students/{id}/grades", post(api_add_grade))
        .route("/api/services", get(api_services))
        .route("/api/logs", get(api_logs))
        .route("/api/logs/stream", get(api_log_stream))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/{*rest}", any(|| async { ApiError::new(404, "no such endpoint") }))
        .with_state(backends.clone())
        .merge(from_grading);
    let gate =
        Arc::new(auth::Gate { backends: backends.clone(), static_prefix: format!("/{}/", options.site_pkg_dir) });
    // `/` is answered by `root`, not by the app.
    let routes = route_list().into_iter().filter(|r| r.path() != "/").collect::<Vec<_>>();
    let pages = Router::new()
        .route("/", get(root))
        .leptos_routes_with_context(
            &options,
            routes,
            {
                let backends = backends.clone();
                move || provide_context(backends.clone())
            },
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options.clone())
        .layer(axum::middleware::from_fn_with_state((backends.clone(), cache), page_cache::serve_cached));
    // `auth` runs inside `html_errors`, so its refusals of pages become
    // HTML pages and its viewer reaches the error pages. The API's errors
    // stay JSON: it is not behind `html_errors` at all.
    let api = gradebook_runtime::http::finish_api(api, 64 * 1024)
        .layer(axum::middleware::from_fn_with_state(gate.clone(), auth::authenticate));
    // The form post without JavaScript answers a person: HTML errors too.
    let form = Router::new().route("/students/{id}/grades", post(form_add_grade)).with_state(backends.clone());
    let form = gradebook_runtime::http::finish_api(form, 64 * 1024);
    let pages = pages
        .merge(form)
        .merge(auth::routes(backends, options.clone()))
        .layer(axum::middleware::from_fn_with_state(gate, auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(Arc::new(options), html_errors));
    api.merge(pages)
}

/// Serves the portal, registered as `Portal`, until `shutdown`; open or
/// closed to people as `security` says.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    options: LeptosOptions,
    registry_url: String,
    security: Security,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let backends = Backends::new(runtime.clone(), registry_url).with_shutdown(shutdown.clone()).with_security(security);
    backends.follow_changes();
    gradebook_runtime::serve(listener, runtime, router(options, backends), shutdown).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use gradebook_shared::grading::Student;
    use gradebook_shared::names;
    use gradebook_shared::registry::PatchEntry;
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
        router(options, backends)
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
                    let last = name.lock().unwrap().clone();
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

        *grading.last_name.lock().unwrap() = "Baggio".into();
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
        stand_in(
            Router::new().route(
                "/students/{id}",
                get(move || {
                    let body = body.clone();
                    async move {
                        ([(header::ETAG, "\"many\""), (header::CONTENT_TYPE, "application/json")], (*body).clone())
                    }
                }),
            ),
        )
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
        let log =
            stand_in(Router::new().route("/log", get(move || std::future::ready(Json(vec![record.clone()]))))).await;
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
            let first =
                futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(ONE_EVENT.as_bytes()))]);
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
        let backends =
            backends_knowing(&[entry(names::LOG, &log)]).with_stream_idle_timeout(Duration::from_millis(300));

        let response = tokio::time::timeout(
            Duration::from_secs(5),
            portal_on(backends).oneshot(request("GET", "/api/logs/stream")),
        )
        .await
        .expect("the portal stops waiting for a log service that never answers")
        .unwrap();

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
        assert!(body["error"].as_str().is_some_and(|e| e.contains("log service")), "{body}");
    }
}
