//! The portal's rules for people, through `server::router` with `oneshot`,
//! against a grading stand-in on a real socket that answers `/accounts/*`
//! the way grading does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gradebook_runtime::{Runtime, ServiceSpec};
use gradebook_shared::grading::{Grade, Student};
use gradebook_shared::names;
use gradebook_shared::registry::PatchEntry;
use leptos::prelude::LeptosOptions;
use parking_lot::Mutex;
use tower::ServiceExt;

use super::token::api_token_shaped;
use super::*;
use crate::backends::Backends;
use crate::people::{Account, OPEN_BANNER, Role};
use crate::server::router;
use crate::state::AppState;

const TOKEN: &str = "a-cluster-token-that-is-at-least-32-bytes-long";
const HOST: &str = "portal.test";
const ORIGIN: &str = "http://portal.test";
const EVIL: &str = "https://evil.example";

/// What the grading stand-in holds.
#[derive(Default)]
struct World {
    /// name → (password, account)
    accounts: HashMap<String, (String, Account)>,
    /// personal API token → account name
    api_tokens: HashMap<String, String>,
    grades: HashMap<i64, Vec<Grade>>,
    /// `/accounts/*` answers 503, as a grading that cannot reach its database.
    accounts_down: bool,
}

#[derive(Clone)]
struct FakeGrading {
    url: String,
    world: Arc<Mutex<World>>,
}

/// Personal API tokens shaped as `gradebook accounts token` prints them.
const TESS_TOKEN: &str = "gb_tess_TTTTTTTTTTTTTTTTTTTT12345678901234567890";
const SAM_TOKEN: &str = "gb_sam_SSSSSSSSSSSSSSSSSSSS09876543210987654321";

fn account(name: &str, role: Role, student: Option<i64>) -> Account {
    Account { name: name.into(), role, student, version: 1 }
}

impl FakeGrading {
    /// Teacher `tess`, students `sam` (student 1) and `sue` (student 2);
    /// API tokens `tess-token` and `sam-token`.
    async fn start() -> Self {
        let mut world = World::default();
        for (password, a) in [
            ("tess-password", account("tess", Role::Teacher, None)),
            ("sam-password", account("sam", Role::Student, Some(1))),
            ("sue-password", account("sue", Role::Student, Some(2))),
        ] {
            world.accounts.insert(a.name.clone(), (password.into(), a));
        }
        world.api_tokens.insert(TESS_TOKEN.into(), "tess".into());
        world.api_tokens.insert(SAM_TOKEN.into(), "sam".into());
        let world = Arc::new(Mutex::new(world));

        let refused = |error: &str| (StatusCode::UNAUTHORIZED, Json(serde_json::json!({ "error": error })));
        let w = world.clone();
        let verify = post(move |Json(body): Json<serde_json::Value>| {
            let w = w.clone();
            async move {
                let world = w.lock();
                let (name, password) = (body["name"].as_str().unwrap_or(""), body["password"].as_str().unwrap_or(""));
                match world.accounts.get(name) {
                    Some((right, a)) if right == password => Json(a.clone()).into_response(),
                    _ => refused("wrong name or password").into_response(),
                }
            }
        });
        let w = world.clone();
        let verify_token = post(move |Json(body): Json<serde_json::Value>| {
            let w = w.clone();
            async move {
                let world = w.lock();
                let name = world.api_tokens.get(body["token"].as_str().unwrap_or(""));
                match name.and_then(|n| world.accounts.get(n)) {
                    Some((_, a)) => Json(a.clone()).into_response(),
                    None => refused("invalid token").into_response(),
                }
            }
        });
        let w = world.clone();
        let one_account = get(move |Path(name): Path<String>| {
            let w = w.clone();
            async move {
                let world = w.lock();
                if world.accounts_down {
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                match world.accounts.get(&name) {
                    Some((_, a)) => Json(a.clone()).into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        });
        let w = world.clone();
        let student = get(move |Path(id): Path<i64>, headers: HeaderMap| {
            let w = w.clone();
            async move {
                let grades = w.lock().grades.get(&id).cloned().unwrap_or_default();
                // Tagged like grading: a new grade makes a new tag.
                let etag = format!("\"{id}-{}\"", grades.len());
                if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v == etag.as_str()) {
                    return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
                }
                let student = Student {
                    id,
                    first_name: format!("First{id}"),
                    last_name: format!("Last{id}"),
                    grades,
                    average: None,
                };
                ([(header::ETAG, etag)], Json(student)).into_response()
            }
        });
        let w = world.clone();
        let students = get(move || {
            let w = w.clone();
            async move {
                let world = w.lock();
                let list: Vec<Student> = [1, 2]
                    .map(|id| Student {
                        id,
                        first_name: format!("First{id}"),
                        last_name: format!("Last{id}"),
                        grades: world.grades.get(&id).cloned().unwrap_or_default(),
                        average: None,
                    })
                    .into();
                Json(list)
            }
        });
        let w = world.clone();
        let add_grade = post(move |Path(id): Path<i64>, Json(body): Json<serde_json::Value>| {
            let w = w.clone();
            async move {
                let mut world = w.lock();
                let grades = world.grades.entry(id).or_default();
                let grade = Grade {
                    id: grades.len() as i64 + 1,
                    title: body["Title"].as_str().unwrap_or("").into(),
                    kind: body["Type"].as_str().unwrap_or("").into(),
                    score: body["Score"].as_f64().unwrap_or(0.0),
                };
                grades.push(grade.clone());
                (StatusCode::CREATED, Json(grade))
            }
        });
        let app = Router::new()
            .route("/accounts/verify", verify)
            .route("/accounts/verify-token", verify_token)
            .route("/accounts/{name}", one_account)
            .route("/students", students)
            .route("/students/{id}", student)
            .route("/students/{id}/grades", add_grade);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, world }
    }

    /// As `gradebook accounts passwd` does: a new password, a new version.
    fn change_password(&self, name: &str, password: &str) {
        let mut world = self.world.lock();
        let (old, a) = world.accounts.get_mut(name).unwrap();
        *old = password.into();
        a.version += 1;
    }

    fn stored(&self, id: i64) -> usize {
        self.world.lock().grades.get(&id).map_or(0, Vec::len)
    }
}

fn portal_with(grading: &FakeGrading, security: Security) -> Router {
    let mut spec = ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9");
    spec.token = (!security.is_open()).then(|| TOKEN.to_owned());
    let runtime = Runtime::new(spec, "127.0.0.1:9".parse().unwrap());
    runtime.providers().merge(&[PatchEntry { name: names::GRADING.into(), url: grading.url.clone() }]);
    let backends = Backends::new(runtime, "http://127.0.0.1:9".into());
    router(LeptosOptions::builder().output_name("gradebook").build(), AppState::new(backends, security))
}

fn closed_portal(grading: &FakeGrading) -> Router {
    portal_with(grading, Security::closed(TOKEN, DEFAULT_IDLE).unwrap())
}

/// A request as a browser on the portal's own pages sends it.
fn request(method: &str, path: &str, session: Option<&str>) -> axum::http::request::Builder {
    let builder = Request::builder().method(method).uri(path).header(header::HOST, HOST);
    match session {
        Some(cookie) => builder.header(header::COOKIE, cookie),
        None => builder,
    }
}

fn form(method: &str, path: &str, session: Option<&str>, origin: Option<&str>, body: &str) -> Request {
    let builder = request(method, path, session).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let builder = match origin {
        Some(origin) => builder.header(header::ORIGIN, origin),
        None => builder,
    };
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn json_post(path: &str, session: Option<&str>, origin: Option<&str>, body: serde_json::Value) -> Request {
    let builder = request("POST", path, session).header(header::CONTENT_TYPE, "application/json");
    let builder = match origin {
        Some(origin) => builder.header(header::ORIGIN, origin),
        None => builder,
    };
    builder.body(Body::from(body.to_string())).unwrap()
}

fn get_as(path: &str, session: Option<&str>) -> Request {
    request("GET", path, session).body(Body::empty()).unwrap()
}

fn with_bearer(path: &str, token: &str) -> axum::http::request::Builder {
    Request::builder().uri(path).header(header::HOST, HOST).header(header::AUTHORIZATION, format!("Bearer {token}"))
}

async fn send(portal: &Router, request: Request) -> Response {
    portal.clone().oneshot(request).await.unwrap()
}

async fn text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn location(response: &Response) -> String {
    response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// The `name=value` of cookie `name` set by `response`.
fn set_cookie(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

const GRADE_FORM: &str = "Title=Quiz&Type=Quiz&Score=90";

/// Signs in from the portal's own sign-in page; the session cookie.
async fn sign_in(portal: &Router, name: &str, password: &str) -> String {
    let body = format!("name={name}&password={password}&next=%2F");
    let response = send(portal, form("POST", "/signin", None, Some(ORIGIN), &body)).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{name} signs in");
    set_cookie(&response, SESSION_COOKIE).expect("a session cookie")
}

/// The CSRF token in a page's forms.
fn csrf_in(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a form with a CSRF token") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_student_reading_another_student_gets_403_through_pages_and_api() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let sam = sign_in(&portal, "sam", "sam-password").await;

    let own = send(&portal, get_as("/students/1", Some(&sam))).await;
    assert_eq!(own.status(), StatusCode::OK, "their own page");
    let own_api = send(&portal, get_as("/api/students/1", Some(&sam))).await;
    assert_eq!(own_api.status(), StatusCode::OK, "their own record");

    for path in ["/students/2", "/students", "/logs", "/services"] {
        let response = send(&portal, get_as(path, Some(&sam))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{path}");
        let html = text(response).await;
        assert!(html.contains(r#"href="/students/1""#) && !html.contains(r#"href="/logs""#), "{path}: {html}");
    }
    for path in ["/api/students/2", "/api/students", "/api/logs", "/api/services"] {
        let response = send(&portal, get_as(path, Some(&sam))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_student_posting_a_grade_gets_403_and_nothing_is_stored() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let sam = sign_in(&portal, "sam", "sam-password").await;

    let page = text(send(&portal, get_as("/students/1", Some(&sam))).await).await;
    assert!(!page.contains("add-grade"), "a student is not shown the add-grade form");

    let by_form = send(&portal, form("POST", "/students/1/grades", Some(&sam), Some(ORIGIN), GRADE_FORM)).await;
    assert_eq!(by_form.status(), StatusCode::FORBIDDEN);
    let grade = serde_json::json!({"Title": "Quiz", "Type": "Quiz", "Score": 90});
    let by_api = send(&portal, json_post("/api/students/1/grades", Some(&sam), Some(ORIGIN), grade.clone())).await;
    assert_eq!(by_api.status(), StatusCode::FORBIDDEN);
    let by_token = send(
        &portal,
        with_bearer("/api/students/1/grades", SAM_TOKEN)
            .method("POST")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(grade.to_string()))
            .unwrap(),
    )
    .await;
    assert_eq!(by_token.status(), StatusCode::FORBIDDEN);
    assert_eq!(grading.stored(1), 0);
}

#[tokio::test]
async fn a_teacher_posting_a_grade_gets_201_and_sees_every_student() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let tess = sign_in(&portal, "tess", "tess-password").await;

    let grade = serde_json::json!({"Title": "Quiz", "Type": "Quiz", "Score": 90});
    let added = send(&portal, json_post("/api/students/1/grades", Some(&tess), Some(ORIGIN), grade)).await;
    assert_eq!(added.status(), StatusCode::CREATED);
    let by_form = send(&portal, form("POST", "/students/2/grades", Some(&tess), Some(ORIGIN), GRADE_FORM)).await;
    assert_eq!(by_form.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&by_form), "/students/2");
    assert_eq!((grading.stored(1), grading.stored(2)), (1, 1));

    for path in ["/students", "/students/1", "/students/2", "/api/students", "/api/students/2"] {
        assert_eq!(send(&portal, get_as(path, Some(&tess))).await.status(), StatusCode::OK, "{path}");
    }
    let page = text(send(&portal, get_as("/students/1", Some(&tess))).await).await;
    assert!(page.contains("add-grade") && page.contains("Sign out"), "{page}");
}

#[tokio::test]
async fn a_script_with_a_personal_api_token_is_held_to_its_accounts_role_without_csrf_checks() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let call = |path: &str, token: &str| with_bearer(path, token).body(Body::empty()).unwrap();

    assert_eq!(send(&portal, call("/api/students/1", SAM_TOKEN)).await.status(), StatusCode::OK);
    assert_eq!(send(&portal, call("/api/students/2", SAM_TOKEN)).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(send(&portal, call("/api/students", TESS_TOKEN)).await.status(), StatusCode::OK);
    let wrong = send(&portal, call("/api/students", "no-such-token")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // No cookie, no Origin: a script, not a browser a site could steer.
    let posted = with_bearer("/api/students/1/grades", TESS_TOKEN)
        .method("POST")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"Title":"Quiz","Type":"Quiz","Score":70}"#))
        .unwrap();
    assert_eq!(send(&portal, posted).await.status(), StatusCode::CREATED);
    assert_eq!(grading.stored(1), 1);
}

#[tokio::test]
async fn a_wrong_password_gets_one_generic_message_and_is_rate_limited_after_five_attempts() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let attempt = |name: &str, password: &str, from: Option<&str>| {
        let mut request =
            form("POST", "/signin", None, Some(ORIGIN), &format!("name={name}&password={password}&next=%2F"));
        if let Some(address) = from {
            request.extensions_mut().insert(ConnectInfo(address.parse::<SocketAddr>().unwrap()));
        }
        request
    };

    let unknown = text(send(&portal, attempt("nobody", "x", None)).await).await;
    for _ in 0..4 {
        let response = send(&portal, attempt("tess", "wrong", None)).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let page = text(response).await;
        assert!(page.contains(WRONG) && unknown.contains(WRONG), "one message whether or not the account exists");
    }
    assert_eq!(send(&portal, attempt("tess", "wrong", None)).await.status(), StatusCode::UNAUTHORIZED);
    let limited = send(&portal, attempt("tess", "tess-password", None)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "after five failures even the right password waits");
    assert!(set_cookie(&limited, SESSION_COOKIE).is_none());
    assert_eq!(send(&portal, attempt("sue", "sue-password", None)).await.status(), StatusCode::SEE_OTHER);

    // Successful sign-ins use up nothing: a class signing in at once is fine.
    for _ in 0..8 {
        let response = send(&portal, attempt("sue", "sue-password", Some("10.0.0.9:5555"))).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }

    // One address trying many names is limited too.
    for i in 0..5 {
        let response = send(&portal, attempt(&format!("guess{i}"), "x", Some("10.0.0.7:5555"))).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let from_there = send(&portal, attempt("sam", "sam-password", Some("10.0.0.7:6666"))).await;
    assert_eq!(from_there.status(), StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = send(&portal, attempt("sam", "sam-password", Some("10.0.0.8:5555"))).await;
    assert_eq!(elsewhere.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_session_stops_working_after_its_password_changes() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let sam = sign_in(&portal, "sam", "sam-password").await;
    assert_eq!(send(&portal, get_as("/students/1", Some(&sam))).await.status(), StatusCode::OK);

    grading.change_password("sam", "new-password");
    tokio::time::sleep(ACCOUNT_TTL + Duration::from_millis(200)).await;

    let page = send(&portal, get_as("/students/1", Some(&sam))).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert!(location(&page).starts_with("/signin"), "{}", location(&page));
    assert_eq!(send(&portal, get_as("/api/students/1", Some(&sam))).await.status(), StatusCode::UNAUTHORIZED);
    let again = sign_in(&portal, "sam", "new-password").await;
    assert_eq!(send(&portal, get_as("/students/1", Some(&again))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_session_works_on_every_portal_instance_sharing_the_cluster_token() {
    let grading = FakeGrading::start().await;
    let sam = sign_in(&closed_portal(&grading), "sam", "sam-password").await;

    let another = closed_portal(&grading);
    assert_eq!(send(&another, get_as("/students/1", Some(&sam))).await.status(), StatusCode::OK);

    let other_token = "another-cluster-token-that-is-32-bytes-or-more";
    let other_cluster = portal_with(&grading, Security::closed(other_token, DEFAULT_IDLE).unwrap());
    let refused = send(&other_cluster, get_as("/students/1", Some(&sam))).await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER, "a key derived from another token reads no session");
}

#[tokio::test]
async fn while_grading_cannot_check_accounts_a_known_session_goes_on_and_an_unknown_one_gets_503() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let sam = sign_in(&portal, "sam", "sam-password").await;
    grading.world.lock().accounts_down = true;
    tokio::time::sleep(ACCOUNT_TTL + Duration::from_millis(200)).await;

    assert_eq!(send(&portal, get_as("/students/1", Some(&sam))).await.status(), StatusCode::OK);
    assert_eq!(send(&portal, get_as("/students/2", Some(&sam))).await.status(), StatusCode::FORBIDDEN);
    let fresh_instance = closed_portal(&grading);
    let unknown = send(&fresh_instance, get_as("/students/1", Some(&sam))).await;
    assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE, "never let in unchecked");
}

#[tokio::test]
async fn a_session_ends_after_the_idle_period_and_at_sign_out() {
    let grading = FakeGrading::start().await;
    let portal = portal_with(&grading, Security::closed(TOKEN, Duration::from_millis(300)).unwrap());
    let sam = sign_in(&portal, "sam", "sam-password").await;
    assert_eq!(send(&portal, get_as("/students/1", Some(&sam))).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send(&portal, get_as("/students/1", Some(&sam))).await.status(), StatusCode::SEE_OTHER);

    let portal = closed_portal(&grading);
    let sam = sign_in(&portal, "sam", "sam-password").await;
    let signed_out = send(&portal, form("POST", "/signout", Some(&sam), Some(ORIGIN), "")).await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_out), "/signin");
    assert_eq!(set_cookie(&signed_out, SESSION_COOKIE).as_deref(), Some("gradebook_session="), "the cookie is cleared");
}

#[tokio::test]
async fn a_cross_site_form_post_gets_403_and_stores_nothing() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let tess = sign_in(&portal, "tess", "tess-password").await;

    let evil = send(&portal, form("POST", "/students/1/grades", Some(&tess), Some(EVIL), GRADE_FORM)).await;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    let mut fetch_site = form("POST", "/students/1/grades", Some(&tess), None, GRADE_FORM);
    fetch_site.headers_mut().insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
    assert_eq!(send(&portal, fetch_site).await.status(), StatusCode::FORBIDDEN);
    let unmarked = send(&portal, form("POST", "/students/1/grades", Some(&tess), None, GRADE_FORM)).await;
    assert_eq!(unmarked.status(), StatusCode::FORBIDDEN, "no Origin and no token is refused too");
    let grade = serde_json::json!({"Title": "Quiz", "Type": "Quiz", "Score": 90});
    let json = send(&portal, json_post("/api/students/1/grades", Some(&tess), Some(EVIL), grade)).await;
    assert_eq!(json.status(), StatusCode::FORBIDDEN);
    let signout = send(&portal, form("POST", "/signout", Some(&tess), Some(EVIL), "")).await;
    assert_eq!(signout.status(), StatusCode::FORBIDDEN);
    let signin = send(&portal, form("POST", "/signin", None, Some(EVIL), "name=tess&password=tess-password")).await;
    assert_eq!(signin.status(), StatusCode::FORBIDDEN);
    assert_eq!(grading.stored(1), 0);

    // The form's own token lets a post through from a browser that sends
    // neither Origin nor Sec-Fetch-Site.
    let page = text(send(&portal, get_as("/students/1", Some(&tess))).await).await;
    let token = csrf_in(&page);
    let with_token = form("POST", "/students/1/grades", Some(&tess), None, &format!("{GRADE_FORM}&csrf={token}"));
    assert_eq!(send(&portal, with_token).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(grading.stored(1), 1);
}

#[tokio::test]
async fn a_page_rendered_for_a_teacher_is_not_served_to_a_student() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let tess = sign_in(&portal, "tess", "tess-password").await;
    let sam = sign_in(&portal, "sam", "sam-password").await;

    let teachers = text(send(&portal, get_as("/students/1", Some(&tess))).await).await;
    assert!(teachers.contains("add-grade") && teachers.contains(">tess<"), "{teachers}");
    let students = text(send(&portal, get_as("/students/1", Some(&sam))).await).await;
    assert!(!students.contains("add-grade") && !students.contains(">tess<"), "{students}");
    assert!(students.contains(">sam<") && students.contains("First1"), "{students}");
    // And the teacher's is still the teacher's.
    let again = text(send(&portal, get_as("/students/1", Some(&tess))).await).await;
    assert_eq!(again, teachers);
}

#[tokio::test]
async fn an_anonymous_page_visit_is_sent_to_sign_in_and_an_anonymous_api_call_gets_401() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);

    let page = send(&portal, get_as("/students/1?page=2", None)).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/signin?next=%2Fstudents%2F1%3Fpage%3D2");
    for path in ["/", "/students", "/logs", "/nope"] {
        assert_eq!(send(&portal, get_as(path, None)).await.status(), StatusCode::SEE_OTHER, "{path}");
    }
    let api = send(&portal, get_as("/api/students", None)).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = serde_json::from_str(&text(api).await).unwrap();
    assert!(body["error"].is_string(), "{body}");
    let posted = send(&portal, form("POST", "/students/1/grades", None, Some(ORIGIN), GRADE_FORM)).await;
    assert_eq!(posted.status(), StatusCode::SEE_OTHER);
    assert_eq!(grading.stored(1), 0);

    // The sign-in page itself, a plain form, needs nobody.
    let signin = send(&portal, get_as("/signin?next=%2Fstudents%2F1", None)).await;
    assert_eq!(signin.status(), StatusCode::OK);
    let cookie = set_cookie(&signin, SIGNIN_COOKIE).expect("the sign-in form's token cookie");
    let html = text(signin).await;
    assert!(html.contains(r#"action="/signin""#) && html.contains(r#"value="/students/1""#), "{html}");
    // Posted back with its token (no Origin): in, and to the page asked for.
    let body = format!("name=tess&password=tess-password&next=%2Fstudents%2F1&csrf={}", csrf_in(&html));
    let signed_in = send(&portal, form("POST", "/signin", Some(&cookie), None, &body)).await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), "/students/1");
    let session = set_cookie(&signed_in, SESSION_COOKIE).unwrap();
    let set = signed_in.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned());
    let set = set.filter(|v| v.starts_with(SESSION_COOKIE)).collect::<Vec<_>>().join(" ");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Lax") && !set.contains("Secure"), "{set}");
    assert_eq!(send(&portal, get_as("/students/1", Some(&session))).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn sign_in_goes_back_only_to_a_path_on_this_site() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    for (next, expected) in [
        ("%2F%2Fevil.example%2F", "/students"),
        ("%2F%5Cevil.example", "/students"),
        ("https%3A%2F%2Fevil.example", "/students"),
        ("%2Flogs", "/logs"),
    ] {
        let body = format!("name=tess&password=tess-password&next={next}");
        let response = send(&portal, form("POST", "/signin", None, Some(ORIGIN), &body)).await;
        assert_eq!(location(&response), expected, "next={next}");
    }
    let body = "name=sam&password=sam-password&next=";
    let student = send(&portal, form("POST", "/signin", None, Some(ORIGIN), body)).await;
    assert_eq!(location(&student), "/students/1", "a student starts on their own page");
}

#[tokio::test]
async fn a_session_cookie_is_secure_when_the_portal_is_reached_over_https() {
    let grading = FakeGrading::start().await;
    let portal = closed_portal(&grading);
    let mut request = form("POST", "/signin", None, Some("https://portal.test"), "name=tess&password=tess-password");
    request.headers_mut().insert("x-forwarded-proto", HeaderValue::from_static("https"));

    let response = send(&portal, request).await;

    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set = response.headers().get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned());
    let session = set.filter(|v| v.starts_with(SESSION_COOKIE)).collect::<String>();
    assert!(session.contains("Secure") && session.contains("HttpOnly"), "{session}");
}

#[tokio::test]
async fn an_open_portal_shows_the_banner_on_every_page_and_needs_no_sign_in() {
    let grading = FakeGrading::start().await;
    let portal = portal_with(&grading, Security::open());

    for path in ["/students", "/students/1", "/nope"] {
        let html = text(send(&portal, get_as(path, None)).await).await;
        assert!(html.contains(OPEN_BANNER), "{path}: {html}");
    }
    let added = send(&portal, form("POST", "/students/1/grades", None, None, GRADE_FORM)).await;
    assert_eq!(added.status(), StatusCode::SEE_OTHER, "as before: no sign-in");
    let evil = send(&portal, form("POST", "/students/1/grades", None, Some(EVIL), GRADE_FORM)).await;
    assert_eq!(evil.status(), StatusCode::FORBIDDEN, "but another site cannot make a browser post");
    assert_eq!(grading.stored(1), 1);
}

#[test]
fn a_closed_portal_refuses_a_cluster_token_shorter_than_32_bytes() {
    let refused = Security::closed("s3cret", DEFAULT_IDLE).err().expect("refused");
    assert!(refused.contains("32"), "{refused}");
    assert!(Security::new(Some(TOKEN), DEFAULT_IDLE).is_ok_and(|s| !s.is_open()));
    assert!(Security::new(None, DEFAULT_IDLE).is_ok_and(|s| s.is_open()));
}

#[test]
fn a_sign_in_for_a_name_or_an_address_already_being_checked_waits_its_turn() {
    let security = Security::closed(&"k".repeat(32), Duration::from_secs(60)).unwrap();
    let address: Option<std::net::IpAddr> = Some("10.0.0.1".parse().unwrap());

    let first = security.may_try("tess", address);

    assert!(first.is_some());
    assert!(security.may_try("tess", None).is_none(), "the same name, concurrently");
    assert!(security.may_try("sam", address).is_none(), "the same address, concurrently");
    assert!(security.may_try("sam", None).is_some(), "another name from elsewhere");
    drop(first);
    assert!(security.may_try("tess", address).is_some(), "its turn once the first is checked");
}

#[test]
fn only_tokens_shaped_like_personal_api_tokens_are_asked_about() {
    assert!(api_token_shaped(TESS_TOKEN) && api_token_shaped(SAM_TOKEN));
    for token in ["", "gb_tess", "gb__0123456789012345678901234567890123456789", "tess-token", &"x".repeat(16_000)] {
        assert!(!api_token_shaped(token), "{token:.40}");
    }
}
