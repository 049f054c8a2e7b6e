//! Least privilege inside the cluster (issue 19): what the registry's probes
//! carry, and what a credential opens, tried on real sockets.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use gradebook::registry::Config;
use gradebook_runtime::credential::{Credential, PROBE_HEADER, REGISTRY, unix_now};
use gradebook_tests::{TestRegistry, eventually, serve_app};
use std::sync::Mutex;

const K: &str = "trust-test-master-secret";
const LIMIT: Duration = Duration::from_secs(10);

/// A heartbeat that records the headers of every probe it gets.
async fn recording_heartbeat() -> (String, Arc<Mutex<Vec<axum::http::HeaderMap>>>) {
    let seen: Arc<Mutex<Vec<axum::http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().route(
        "/heartbeat",
        get(move |headers: axum::http::HeaderMap| {
            record.lock().unwrap().push(headers);
            async { "ok" }
        }),
    );
    (serve_app(app).await, seen)
}

/// Findings 5 and 8c: a probe carries no `Authorization` (so it counts as no
/// bad credential anywhere), and its proof opens nothing: not the registry,
/// not another service, and not the probed service for long.
#[tokio::test]
async fn a_probe_carries_nothing_that_works_elsewhere() {
    let registry = TestRegistry::spawn(Config { token: Some(K.into()), ..Config::default() });
    let (url, seen) = recording_heartbeat().await;
    let fake = Credential::derive(K, "Fake", &[]);
    let registration = serde_json::json!({
        "ServiceName": "Fake", "ServiceURL": url, "HeartbeatURL": format!("{url}/heartbeat"),
        "ServiceUpdateURL": format!("{url}/registry/update"),
    });
    let registered = reqwest::Client::new()
        .post(format!("{}/services", registry.url))
        .bearer_auth(fake.bearer_to(REGISTRY).expect("every service may call the registry"))
        .json(&registration)
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(registered.status(), 200);

    eventually(LIMIT, "the registry probes the heartbeat", || !seen.lock().unwrap().is_empty()).await;
    let probe = seen.lock().unwrap()[0].clone();

    assert!(probe.get("authorization").is_none(), "a probe carries a credential: {probe:?}");
    let proof = probe.get(PROBE_HEADER).expect("a probe proves it is the registry's").as_bytes().to_vec();
    assert!(fake.accepts_probe(&proof, unix_now()), "the probed service can check the proof");
    assert!(!fake.accepts_probe(&proof, unix_now() + 60), "the proof is short-lived");
    let grading = Credential::derive(K, "GradingService", &[]);
    assert!(!grading.accepts_probe(&proof, unix_now()), "the proof works toward no other service");
    let replayed = reqwest::Client::new()
        .get(format!("{}/services", registry.url))
        .bearer_auth(String::from_utf8_lossy(&proof))
        .send()
        .await
        .expect("the registry answers");
    assert_eq!(replayed.status(), 401, "the proof opens the registry");
}

/// A credential derived under another master secret, or for another name,
/// registers nothing; a service registers under its own name only.
#[tokio::test]
async fn the_registry_lets_a_caller_register_only_under_its_own_name() {
    let registry = TestRegistry::spawn(Config { token: Some(K.into()), ..Config::default() });
    let (url, _seen) = recording_heartbeat().await;
    let register = |name: &str, bearer: String| {
        let body = serde_json::json!({
            "ServiceName": name, "ServiceURL": url, "HeartbeatURL": format!("{url}/heartbeat"),
        });
        reqwest::Client::new().post(format!("{}/services", registry.url)).bearer_auth(bearer).json(&body).send()
    };
    let log = Credential::derive(K, "LogService", &[]).bearer_to(REGISTRY).expect("a key for the registry");
    let foreign = Credential::derive("another-cluster", "GradingService", &[]).bearer_to(REGISTRY).expect("a key");

    let posing = register("GradingService", log.clone()).await.expect("the registry answers");
    let from_elsewhere = register("GradingService", foreign).await.expect("the registry answers");
    let own = register("LogService", log).await.expect("the registry answers");

    assert_eq!(posing.status(), 403);
    let error: serde_json::Value = posing.json().await.expect("a JSON error");
    assert_eq!(error["field"], "ServiceName", "{error}");
    assert_eq!(from_elsewhere.status(), 401);
    assert_eq!(own.status(), 200);
    assert!(registry.provider_urls("GradingService").is_empty(), "nobody registered as grading");
}

/// `gradebook credential` prints what `up` would hand that service: its
/// own keys, and not the master secret.
#[test]
fn the_credential_command_prints_a_services_own_credential_without_the_master_secret() {
    let out = std::process::Command::new(gradebook_tests::process::binary())
        .args(["credential", "GradingService", "--calls", "LogService"])
        .env("GRADEBOOK_TOKEN", K)
        .output()
        .expect("gradebook runs");
    let text = String::from_utf8_lossy(&out.stdout);

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(K), "the master secret was printed");
    let printed = Credential::parse(text.trim()).expect("a credential");
    assert!(printed == Credential::derive(K, "GradingService", &["LogService"]));
    assert!(printed.bearer_to("Portal").is_none(), "a key for a service it may not call");
}
