//! The finishing layer and the credential gate, through `oneshot`.

use super::*;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{get, post};

fn app() -> Router {
    let api = Router::new()
        .route("/items/{id}", get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { id.to_string() }))
        .route("/echo", post(|body: String| async move { body }));
    finish_router(api, 16)
}

/// Sends `method uri` with `body` (and the bearer token, when given):
/// status, `WWW-Authenticate`, body.
async fn send(
    router: &mut Router,
    method: &str,
    uri: &str,
    body: &str,
    bearer: Option<&str>,
) -> (StatusCode, bool, String) {
    let mut request = axum::http::Request::builder().method(method).uri(uri);
    if let Some(token) = bearer {
        request = request.header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.to_owned())).expect("a valid request");
    let Ok(response) = call(router, request).await;
    let status = response.status();
    let challenged = response.headers().contains_key(axum::http::header::WWW_AUTHENTICATE);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body arrives");
    (status, challenged, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn answers_pass_untouched_and_errors_get_json_bodies() {
    let mut app = app();
    assert_eq!(send(&mut app, "GET", "/items/7", "", None).await, (StatusCode::OK, false, "7".into()));
    assert_eq!(send(&mut app, "POST", "/echo", "short", None).await, (StatusCode::OK, false, "short".into()));
    for (method, uri, body, status) in [
        ("GET", "/items/x", "", StatusCode::BAD_REQUEST),
        ("POST", "/echo", "far more than sixteen bytes", StatusCode::PAYLOAD_TOO_LARGE),
        ("GET", "/nowhere", "", StatusCode::NOT_FOUND),
        ("DELETE", "/items/7", "", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let (answered, _, body) = send(&mut app, method, uri, body, None).await;
        assert_eq!(answered, status, "{method} {uri}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(error["error"].is_string(), "{method} {uri}: {body}");
    }
}

#[tokio::test]
async fn routed_requests_are_counted_by_method_route_and_status() {
    let mut app = app();
    send(&mut app, "GET", "/items/1", "", None).await;
    send(&mut app, "BREW", "/items/1", "", None).await;
    send(&mut app, "GET", "/unrouted", "", None).await;
    let (_, _, metrics) = send(&mut app, "GET", "/metrics", "", None).await;
    for series in [
        r#"http_requests_total{method="GET",route="/items/{id}",status="200"}"#,
        r#"http_request_duration_seconds_count{method="GET",route="/items/{id}",status="200"}"#,
        // Methods no route serves share one label.
        r#"http_requests_total{method="other",route="/items/{id}",status="405"}"#,
    ] {
        assert!(metrics.contains(series), "{series} missing from {metrics}");
    }
    assert!(!metrics.contains("/unrouted") && !metrics.contains("BREW"), "{metrics}");
}

#[tokio::test]
async fn a_closed_router_answers_only_verified_callers_its_policy_names() {
    use crate::credential::{Caller, Credential, operator_bearer};
    fn only_portal(caller: &Caller, _: &axum::http::Method, _: &str) -> bool {
        caller.0 == "Portal" || caller.is_operator()
    }
    let own = Credential::derive("K", "GradingService", &[]);
    let mut app = require_credential(app(), Some(own), only_portal, OPEN_PATHS);
    let portal = Credential::derive("K", "Portal", &["GradingService"]).bearer_to("GradingService").unwrap();
    let log = Credential::derive("K", "LogService", &["GradingService"]).bearer_to("GradingService").unwrap();
    let elsewhere = Credential::derive("other", "Portal", &["GradingService"]).bearer_to("GradingService").unwrap();
    for bearer in [None, Some("K"), Some("Portal:00"), Some(elsewhere.as_str())] {
        let (status, challenged, body) = send(&mut app, "GET", "/items/1", "", bearer).await;
        assert_eq!((status, challenged), (StatusCode::UNAUTHORIZED, true), "{bearer:?}");
        assert!(body.contains("credential"), "{body}");
    }
    assert_eq!(send(&mut app, "GET", "/nowhere", "", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(&mut app, "GET", "/items/1", "", Some(&portal)).await.0, StatusCode::OK);
    assert_eq!(
        send(&mut app, "GET", "/items/1", "", Some(&operator_bearer("K", "GradingService"))).await.0,
        StatusCode::OK
    );
    let (status, _, body) = send(&mut app, "GET", "/items/1", "", Some(&log)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("LogService may not call GET /items/1"), "{body}");
    assert_eq!(send(&mut app, "GET", "/heartbeat", "", None).await.0, StatusCode::NOT_FOUND);
}

/// Calls `service` once (the tests' client).
fn call<S: tower::Service<Request>>(service: &mut S, request: Request) -> S::Future {
    service.call(request)
}
