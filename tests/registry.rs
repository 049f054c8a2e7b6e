//! The registry and the runtime together, on real sockets: registration,
//! pushed discovery, health checks, crash and recovery, restarts, auth and
//! bad input.

use std::time::Duration;

use gradebook::registry::{Config, Policy};
use gradebook_shared::registry::HealthState;
use gradebook_tests::plain::{Heartbeat, PlainService};
use gradebook_tests::process::{Proc, wait_listening};
use gradebook_tests::{TestRegistry, TestService, eventually, eventually_async, free_port, spec};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(5);

/// Probing so slow that within a test only sessions can detect a crash.
fn probes_off() -> Config {
    Config { policy: Policy { interval: Duration::from_secs(3600), ..Policy::default() }, ..Config::default() }
}

#[tokio::test]
async fn a_plain_client_registers_is_discovered_and_receives_patches() {
    let registry = TestRegistry::spawn(Config::default());
    let dependent = PlainService::start("Dependent").await;
    assert_eq!(dependent.register(&registry.url, json!(["LogService"])).await, 200);

    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "the plain dependent is told about the log service", || {
        dependent.providers("LogService") == vec![log.url.clone()]
    })
    .await;
    let listed: Vec<serde_json::Value> =
        reqwest::get(format!("{}/services/LogService", registry.url)).await.unwrap().json().await.unwrap();
    assert_eq!(listed, vec![json!({"Name": "LogService", "URL": log.url})]);

    log.stop();
    eventually(LIMIT, "the plain dependent is told the log service left", || {
        dependent.providers("LogService").is_empty()
    })
    .await;
}

#[tokio::test]
async fn the_registry_lists_itself_as_a_passing_service() {
    let registry = TestRegistry::spawn(Config::default());

    eventually(LIMIT, "the registry's own entry is probed and passing", || {
        registry.registry.statuses().iter().any(|s| {
            s.service_name == "Registry"
                && s.service_url == registry.url
                && s.state == HealthState::Passing
                && s.last_probe.is_some()
        })
    })
    .await;
}

#[tokio::test]
async fn a_registration_is_answered_only_after_its_first_patch_arrived() {
    let registry = TestRegistry::spawn(Config::default());
    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "log registered", || registry.provider_urls("LogService").len() == 1).await;

    let dependent = PlainService::start("Dependent").await;
    assert_eq!(dependent.register(&registry.url, json!(["LogService"])).await, 200);

    // No waiting: clients of the original look providers up right away.
    assert_eq!(dependent.providers("LogService"), vec![log.url.clone()]);
}

#[tokio::test]
async fn a_runtime_service_learns_its_providers_and_their_changes() {
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log_a = TestService::spawn(spec(&registry, "LogService", &[]));
    let log_b = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "both log providers known", || grading.providers("LogService").len() == 2).await;
    assert!([log_a.url.clone(), log_b.url.clone()].contains(&grading.runtime.providers().pick("LogService").unwrap()));

    log_a.stop();
    eventually(LIMIT, "the stopped one is dropped", || grading.providers("LogService") == vec![log_b.url.clone()])
        .await;
}

#[tokio::test]
async fn registering_the_same_url_again_replaces_instead_of_duplicating() {
    let registry = TestRegistry::spawn(Config::default());
    let dependent = PlainService::start("Dependent").await;
    dependent.register(&registry.url, json!(["Provider"])).await;
    let provider = PlainService::start("Provider").await;
    for _ in 0..3 {
        assert_eq!(provider.register(&registry.url, json!(null)).await, 200);
    }
    eventually(LIMIT, "the dependent knows the provider", || !dependent.providers("Provider").is_empty()).await;

    assert_eq!(registry.statuses().len(), 2);
    assert_eq!(registry.provider_urls("Provider"), vec![provider.url.clone()]);
    assert_eq!(dependent.providers("Provider"), vec![provider.url.clone()], "told once, not three times");
}

#[tokio::test]
async fn a_crashed_service_is_noticed_through_its_session_alone() {
    let registry = TestRegistry::spawn(probes_off());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "grading knows log", || grading.providers("LogService").len() == 1).await;
    eventually(LIMIT, "log holds a session", || registry.statuses().iter().all(|s| s.session)).await;

    log.crash();

    eventually(LIMIT, "grading is told log is gone", || grading.providers("LogService").is_empty()).await;
    let status = registry.statuses().into_iter().find(|s| s.service_name == "LogService").unwrap();
    assert_eq!(status.state, HealthState::Critical);
}

#[tokio::test]
async fn a_crash_is_noticed_by_probes_alone_when_there_is_no_session() {
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let mut log_spec = spec(&registry, "LogService", &[]);
    log_spec.session = false;
    let log = TestService::spawn(log_spec);
    eventually(LIMIT, "grading knows log", || grading.providers("LogService").len() == 1).await;

    log.crash();

    eventually(LIMIT, "grading is told log is gone", || grading.providers("LogService").is_empty()).await;
}

#[tokio::test]
async fn a_dropped_session_whose_service_still_answers_keeps_it() {
    let registry = TestRegistry::spawn(probes_off());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "grading knows log", || grading.providers("LogService").len() == 1).await;
    let probed = || registry.statuses().into_iter().find(|s| s.service_name == "LogService").unwrap().last_probe;
    assert_eq!(probed(), None, "with probes off, nothing has probed log yet");

    // A session for log's URL that drops while log itself is fine (as when a
    // proxy between them restarts).
    let url = format!("{}/sessions?url={}", registry.url, log.url);
    let _ = reqwest::Client::new().post(&url).timeout(Duration::from_millis(50)).body("").send().await;

    eventually(LIMIT, "the drop triggers a confirming probe", || probed().is_some()).await;
    assert_eq!(registry.provider_urls("LogService"), vec![log.url.clone()]);
    assert_eq!(grading.providers("LogService"), vec![log.url.clone()]);
}

#[tokio::test]
async fn a_recovered_service_is_added_again_and_dependents_are_told() {
    let registry = TestRegistry::spawn(Config::default());
    let dependent = PlainService::start("Dependent").await;
    dependent.register(&registry.url, json!(["Provider"])).await;
    let provider = PlainService::start("Provider").await;
    provider.register(&registry.url, json!([])).await;
    eventually(LIMIT, "known", || dependent.providers("Provider").len() == 1).await;

    provider.set_heartbeat(Heartbeat::Failing);
    eventually(LIMIT, "removed", || dependent.providers("Provider").is_empty()).await;
    assert_eq!(registry.statuses().iter().filter(|s| s.state == HealthState::Critical).count(), 1);

    provider.set_heartbeat(Heartbeat::Healthy);
    eventually(LIMIT, "re-added", || dependent.providers("Provider") == vec![provider.url.clone()]).await;
}

#[tokio::test]
async fn a_hung_service_is_removed_without_delaying_other_probes() {
    let registry = TestRegistry::spawn(Config::default());
    let dependent = PlainService::start("Dependent").await;
    dependent.register(&registry.url, json!(["Hung", "Failing"])).await;
    let hung = PlainService::start("Hung").await;
    hung.register(&registry.url, json!([])).await;
    let failing = PlainService::start("Failing").await;
    failing.register(&registry.url, json!([])).await;
    eventually(LIMIT, "both known", || dependent.providers("Hung").len() + dependent.providers("Failing").len() == 2)
        .await;

    hung.set_heartbeat(Heartbeat::Hang);
    failing.set_heartbeat(Heartbeat::Failing);

    // The failing one goes first: its probes do not wait behind the hung one's.
    eventually(LIMIT, "failing removed", || dependent.providers("Failing").is_empty()).await;
    assert_eq!(dependent.providers("Hung").len(), 1, "the hung one needs its probe timeouts to expire first");
    eventually(LIMIT, "hung removed", || dependent.providers("Hung").is_empty()).await;
}

#[tokio::test]
async fn quick_restarts_at_the_same_url_leave_exactly_one_live_provider() {
    let registry = TestRegistry::spawn(Config::default());
    let dependent = PlainService::start("Dependent").await;
    dependent.register(&registry.url, json!(["LogService"])).await;
    let mut log = TestService::spawn(spec(&registry, "LogService", &[]));
    let addr = log.addr;
    for _ in 0..5 {
        eventually(LIMIT, "registered", || registry.provider_urls("LogService").len() == 1).await;
        log.crash();
        log = TestService::spawn_at(addr, spec(&registry, "LogService", &[]), axum::Router::new());
    }
    eventually(LIMIT, "settled on the live one", || {
        registry.provider_urls("LogService") == vec![log.url.clone()]
            && dependent.providers("LogService") == vec![log.url.clone()]
    })
    .await;
    // Every patch made sense when applied in order: nothing was added twice
    // without a removal between.
    let mut held = 0i32;
    for p in dependent.patches() {
        held += p.added.len() as i32 - p.removed.len() as i32;
        assert!((0..=1).contains(&held), "patches out of order: {:?}", dependent.patches());
    }
}

#[tokio::test]
async fn after_a_registry_crash_everyone_registers_again_and_caches_stay_warm() {
    let registry = TestRegistry::spawn(Config::default());
    let addr = registry.addr;
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    let doomed = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "grading knows both", || grading.providers("LogService").len() == 2).await;

    registry.crash();
    doomed.crash();
    // While the registry is away, dependents keep what they knew.
    assert_eq!(grading.providers("LogService").len(), 2);

    let registry = TestRegistry::spawn_at(addr, Config::default());
    eventually(Duration::from_secs(3), "every live service registered again", || registry.statuses().len() == 2).await;
    assert!(!grading.providers("LogService").is_empty(), "never emptied by the warm-up");
    eventually(Duration::from_secs(3) + Policy::default().warmup, "the dead provider is dropped", || {
        grading.providers("LogService") == vec![log.url.clone()]
    })
    .await;
}

#[tokio::test]
async fn a_graceful_stop_deregisters_and_tells_dependents() {
    let registry = TestRegistry::spawn(probes_off());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "known", || grading.providers("LogService").len() == 1).await;

    log.stop();

    // Gone from the registry entirely (not merely critical), and dependents told.
    assert!(registry.statuses().iter().all(|s| s.service_name != "LogService"));
    eventually(LIMIT, "grading told", || grading.providers("LogService").is_empty()).await;
}

#[tokio::test]
async fn a_service_started_before_the_registry_registers_once_it_appears() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = TestService::spawn(gradebook_runtime::ServiceSpec::new("LogService", format!("http://{addr}")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let registry = TestRegistry::spawn_at(addr, Config::default());
    eventually(LIMIT, "registered", || registry.provider_urls("LogService") == vec![log.url.clone()]).await;
}

#[tokio::test]
async fn with_a_token_only_authorized_registrations_are_taken() {
    let config = Config { token: Some("s3cret".into()), ..Config::default() };
    let registry = TestRegistry::spawn(config);
    let plain = PlainService::start("Plain").await;
    assert_eq!(plain.register(&registry.url, json!([])).await, 401);
    let delete =
        reqwest::Client::new().delete(format!("{}/services", registry.url)).body(plain.url.clone()).send().await;
    assert_eq!(delete.unwrap().status(), 401);

    let mut with_token = spec(&registry, "LogService", &[]);
    with_token.token = Some("s3cret".into());
    let log = TestService::spawn(with_token);
    eventually(LIMIT, "the runtime sends the token", || registry.provider_urls("LogService") == vec![log.url.clone()])
        .await;
    assert_eq!(registry.statuses().len(), 1);
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error() {
    let registry = TestRegistry::spawn(Config::default());
    let client = reqwest::Client::new();
    let services = format!("{}/services", registry.url);
    let valid =
        json!({"ServiceName": "X", "ServiceURL": "http://127.0.0.1:9", "HeartbeatURL": "http://127.0.0.1:9/hb"});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = valid.clone();
        b[k] = v;
        b.to_string()
    };
    let cases: Vec<(&str, reqwest::Method, &str, String, &str, u16)> = vec![
        ("malformed JSON", reqwest::Method::POST, "/services", "{nope".into(), "application/json", 400),
        (
            "missing ServiceURL",
            reqwest::Method::POST,
            "/services",
            json!({"ServiceName": "X", "HeartbeatURL": "http://a/"}).to_string(),
            "application/json",
            400,
        ),
        ("empty name", reqwest::Method::POST, "/services", with("ServiceName", json!(" ")), "application/json", 400),
        ("relative URL", reqwest::Method::POST, "/services", with("ServiceURL", json!("/x")), "application/json", 400),
        (
            "ftp URL",
            reqwest::Method::POST,
            "/services",
            with("ServiceURL", json!("ftp://127.0.0.1:9")),
            "application/json",
            400,
        ),
        (
            "foreign heartbeat",
            reqwest::Method::POST,
            "/services",
            with("HeartbeatURL", json!("http://10.0.0.1:9/hb")),
            "application/json",
            400,
        ),
        (
            "requires without update URL",
            reqwest::Method::POST,
            "/services",
            with("RequiredServices", json!(["Y"])),
            "application/json",
            400,
        ),
        ("wrong content type", reqwest::Method::POST, "/services", valid.to_string(), "text/plain", 415),
        (
            "oversized body",
            reqwest::Method::POST,
            "/services",
            format!("{{\"pad\": \"{}\"}}", "x".repeat(100_000)),
            "application/json",
            413,
        ),
        ("unknown URL on delete", reqwest::Method::DELETE, "/services", "http://127.0.0.1:9".into(), "text/plain", 404),
        ("wrong method", reqwest::Method::PUT, "/services", String::new(), "text/plain", 405),
        ("unknown path", reqwest::Method::GET, "/nope", String::new(), "text/plain", 404),
        (
            "session of a stranger",
            reqwest::Method::POST,
            "/sessions?url=http://127.0.0.1:9",
            String::new(),
            "text/plain",
            404,
        ),
    ];
    for (what, method, path, body, content_type, status) in cases {
        let response = client
            .request(method, format!("{}{path}", registry.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{what}");
        let body: serde_json::Value = response.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert!(body["error"].as_str().is_some_and(|s| !s.is_empty()), "{what}: {body}");
    }
    assert!(registry.statuses().is_empty(), "nothing invalid was registered");
    let _ = services;
}

#[tokio::test]
async fn a_killed_service_process_is_removed_and_its_dependents_told() {
    let port = free_port();
    let registry_addr = format!("127.0.0.1:{port}");
    let _registry = Proc::start(&["registry", "--addr", &registry_addr], false);
    wait_listening(&registry_addr, LIMIT).await;
    let registry_url = format!("http://{registry_addr}");
    let grading = TestService::spawn(
        gradebook_runtime::ServiceSpec::new("GradingService", registry_url.clone()).requires(&["LogService"]),
    );
    let mut log = Proc::start(&["stub", "--name", "LogService", "--registry-url", &registry_url], true);
    eventually(LIMIT, "grading knows the log process", || grading.providers("LogService") == vec![log.url.clone()])
        .await;

    log.kill9();

    eventually(LIMIT, "grading told", || grading.providers("LogService").is_empty()).await;
    eventually_async(LIMIT, "the registry lists it as critical", || async {
        let list: Vec<serde_json::Value> =
            reqwest::get(format!("{registry_url}/services")).await.unwrap().json().await.unwrap();
        list.iter().any(|s| s["ServiceName"] == "LogService" && s["State"] == "critical")
    })
    .await;
}

#[tokio::test]
async fn sigterm_deregisters_the_process_and_it_exits_cleanly() {
    let registry = TestRegistry::spawn(probes_off());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let mut log = Proc::start(&["stub", "--name", "LogService", "--registry-url", &registry.url], true);
    eventually(LIMIT, "known", || grading.providers("LogService").len() == 1).await;

    log.signal("TERM");

    let status = log.wait_exit(LIMIT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(registry.statuses().iter().all(|s| s.service_name != "LogService"), "deregistered, not merely critical");
    eventually(LIMIT, "grading told", || grading.providers("LogService").is_empty()).await;
}
