//! The portal server: renders pages (leptos_axum), answers the JSON API by
//! forwarding to the services it discovers through the registry (pooled
//! connections, deadlines, failover), takes the no-JavaScript form post, and
//! registers as `Portal`.

use std::sync::OnceLock;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use gradebook_runtime::Runtime;
use gradebook_runtime::http::ApiJson;
use gradebook_shared::grading::{NewGrade, Student};
use gradebook_shared::log::LogRecord;
use gradebook_shared::registry::ServiceStatus;
use leptos::prelude::*;
use leptos_axum::{AxumRouteListing, LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::encode;
use crate::app::{App, shell};
use crate::backends::Backends;
use crate::error::ApiError;
use crate::page_cache::{self, PageCache};

// ---- JSON API ---------------------------------------------------------------

async fn api_students(State(b): State<Backends>) -> Result<Json<Vec<Student>>, ApiError> {
    Ok(Json(b.students().await?))
}

async fn api_student(State(b): State<Backends>, Path(id): Path<String>) -> Result<Json<Student>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Json(b.student(id).await?))
}

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
    let mut response = axum::body::Body::from_stream(upstream.bytes_stream()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse().map_err(|_| ApiError::new(404, format!("There is no student with ID {id:?}.")))
}

/// The add-grade form posted without JavaScript: forwarded as JSON, then a
/// 303 back to the student page — carrying the service's message (and what
/// was typed) when it refused the grade, instead of hiding the error.
async fn form_add_grade(
    State(b): State<Backends>,
    Path(id): Path<String>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    let Ok(sid) = id.parse::<i64>() else { return ApiError::new(404, "There is no such student.").into_response() };
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

/// The whole portal: API, form handler, pages and the site's static files.
pub fn router(options: LeptosOptions, backends: Backends) -> Router {
    let api = Router::new()
        .route("/api/students", get(api_students))
        .route("/api/students/{id}", get(api_student))
        .route("/api/students/{id}/grades", post(api_add_grade))
        .route("/api/services", get(api_services))
        .route("/api/logs", get(api_logs))
        .route("/api/logs/stream", get(api_log_stream))
        .route("/students/{id}/grades", post(form_add_grade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(backends.clone());
    let pages = Router::new()
        .leptos_routes_with_context(
            &options,
            route_list(),
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
        .with_state(options)
        .layer(axum::middleware::from_fn_with_state((backends, PageCache::default()), page_cache::serve_cached));
    gradebook_runtime::http::finish_api(api, 64 * 1024).merge(pages)
}

/// Serves the portal, registered as `Portal`, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    options: LeptosOptions,
    registry_url: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let backends = Backends::new(runtime.clone(), registry_url);
    gradebook_runtime::serve(listener, runtime, router(options, backends), shutdown).await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use gradebook_shared::names;
    use gradebook_shared::registry::PatchEntry;
    use tower::ServiceExt;

    use super::*;

    /// A portal whose registry is unreachable, knowing only `providers`.
    fn portal_knowing(providers: &[PatchEntry]) -> Router {
        let spec = gradebook_runtime::ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9");
        let runtime = Runtime::new(spec, "127.0.0.1:5005".parse().unwrap());
        runtime.providers().merge(providers);
        let options = LeptosOptions::builder().output_name("gradebook").build();
        router(options, Backends::new(runtime, "http://127.0.0.1:9".into()))
    }

    /// A portal that knows no provider of anything.
    fn portal() -> Router {
        portal_knowing(&[])
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
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
}
