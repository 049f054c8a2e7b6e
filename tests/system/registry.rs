//! The registry and the runtime together, on real sockets: registration,
//! pushed discovery, health checks, crash and recovery, restarts, auth and
//! bad input.

use std::time::Duration;

use gradebook::registry::{Config, Policy};
use gradebook_shared::registry::HealthState;
use gradebook_tests::plain::{Heartbeat, PlainService, Updates};
use gradebook_tests::process::{Proc, Signal};
use gradebook_tests::{Reserved, TestRegistry, TestService, eventually, eventually_async, spec};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(5);

/// Probing so slow that within a test only sessions can detect a crash.
fn probes_off() -> Config {
    Config { policy: Policy { interval: Duration::from_secs(3600), ..Policy::default() }, ..Config::default() }
}

fn sorted(mut urls: Vec<String>) -> Vec<String> {
    urls.sort();
    urls
}

/// `url` as a query value: what our runtime sends as `?url=`.
fn query_value(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

/// Opens a session for `url` on a raw connection, as our runtime holds one:
/// a request whose body never ends. Dropping the connection drops the session.
async fn open_session(registry: &TestRegistry, url: &str, token: Option<&str>) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(registry.addr).await.unwrap();
    let auth = token.map(|t| format!("authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /sessions?url={} HTTP/1.1\r\nhost: {}\r\ntransfer-encoding: chunked\r\n{auth}\r\n",
        query_value(url),
        registry.addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn
}

/// The status the registry answered on `conn` within a second, if any (a
/// session it holds gets no answer).
async fn answer_status(conn: &mut tokio::net::TcpStream) -> Option<u16> {
    let mut head = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut head)).await.ok()?.ok()?;
    let head = String::from_utf8_lossy(&head[..n]);
    head.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
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
    // A provider holding no session of its own: the one below is its only one.
    let log = PlainService::start("LogService").await;
    assert_eq!(log.register(&registry.url, json!([])).await, 200);
    eventually(LIMIT, "grading knows log", || grading.providers("LogService") == vec![log.url.clone()]).await;
    let status = || registry.statuses().into_iter().find(|s| s.service_name == "LogService").unwrap();
    assert_eq!(status().last_probe, None, "with probes off, nothing has probed log yet");
    // Its session, held through a proxy...
    let session = open_session(&registry, &log.url, None).await;
    eventually(LIMIT, "the session is held", || status().session).await;

    // ...drops while log itself is fine (the proxy restarts): no session is
    // left, so log is suspect until a probe answers.
    drop(session);

    eventually(LIMIT, "the drop triggers a confirming probe", || status().last_probe.is_some()).await;
    let after = status();
    assert!(!after.session, "the registry saw the session end");
    assert_eq!(after.state, HealthState::Passing, "the probe answered: {after:?}");
    assert_eq!(registry.provider_urls("LogService"), vec![log.url.clone()]);
    assert_eq!(grading.providers("LogService"), vec![log.url.clone()]);
}

/// Opens a session for `url` as our runtime does: upgraded off HTTP. Returns
/// the connection once the registry has switched protocols.
async fn open_upgraded_session(registry: &TestRegistry, url: &str) -> tokio::net::TcpStream {
    let mut conn = tokio::net::TcpStream::connect(registry.addr).await.unwrap();
    let head = format!(
        "POST /sessions?url={} HTTP/1.1\r\nhost: {}\r\nconnection: upgrade\r\nupgrade: gradebook-session\r\ncontent-length: 0\r\n\r\n",
        query_value(url),
        registry.addr
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // Read exactly the answer's head: what follows belongs to the session.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(conn.read(&mut byte).await.unwrap(), 1, "the registry answers the upgrade");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "switching protocols: {head}");
    assert!(head.contains("upgrade: gradebook-session"), "{head}");
    conn
}

#[tokio::test]
async fn an_upgraded_session_is_held_off_http_told_when_the_registration_goes_and_its_drop_is_noticed() {
    let registry = TestRegistry::spawn(probes_off());
    let log = PlainService::start("LogService").await;
    assert_eq!(log.register(&registry.url, json!([])).await, 200);
    let status = || registry.statuses().into_iter().find(|s| s.service_name == "LogService");

    // Held, then dropped while log is fine: probed at once, kept.
    let session = open_upgraded_session(&registry, &log.url).await;
    eventually(LIMIT, "the session is held", || status().is_some_and(|s| s.session)).await;
    drop(session);
    eventually(LIMIT, "the drop triggers a probe", || status().is_some_and(|s| s.last_probe.is_some())).await;
    assert!(status().is_some_and(|s| !s.session && s.state == HealthState::Passing));

    // Held again, then a stranger deregisters log: the session says so and closes.
    let mut session = open_upgraded_session(&registry, &log.url).await;
    eventually(LIMIT, "the session is held", || status().is_some_and(|s| s.session)).await;
    let removed = reqwest::Client::new().delete(format!("{}/services", registry.url)).body(log.url.clone()).send();
    assert_eq!(removed.await.unwrap().status(), 200);
    let mut told = Vec::new();
    tokio::time::timeout(LIMIT, session.read_to_end(&mut told)).await.expect("closed").unwrap();
    assert_eq!(told, b"ended\n");
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
async fn after_a_registry_crash_a_dependent_keeps_its_providers_through_the_outage_and_the_warm_up() {
    let registry = TestRegistry::spawn(Config::default());
    let addr = registry.addr;
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    // A provider of the original protocol: it registers again only when this
    // test says so, after grading.
    let log = PlainService::start("LogService").await;
    assert_eq!(log.register(&registry.url, json!([])).await, 200);
    let doomed = TestService::spawn(spec(&registry, "LogService", &[]));
    let both = sorted(vec![log.url.clone(), doomed.url.clone()]);
    eventually(LIMIT, "grading knows both", || sorted(grading.providers("LogService")) == both).await;

    registry.crash();
    doomed.crash();
    // A stand-in holds the address and hangs up on everyone until grading
    // has noticed its session is gone, asked the registry again, been hung
    // up on and asked once more.
    let stand_in = tokio::net::TcpListener::bind(addr).await.unwrap();
    let asked_twice = async {
        let mut asked = 0;
        while asked < 2 {
            let (mut conn, _) = stand_in.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let n = conn.read(&mut head).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&head[..n]);
            if head.contains(&query_value(&grading.url)) || head.contains(&grading.url) {
                asked += 1;
            }
        }
    };
    tokio::time::timeout(LIMIT, asked_twice).await.expect("grading notices the registry is gone and keeps asking");
    assert_eq!(sorted(grading.providers("LogService")), both, "while the registry is away, grading keeps what it knew");

    // The registry is back, with an empty table, on the stand-in's socket.
    let registry = TestRegistry::spawn_on(stand_in, Config::default());
    let warmup = Policy::default().warmup;
    eventually(warmup, "grading registers again by itself, within the warm-up", || {
        registry.statuses().iter().any(|s| s.service_name == "GradingService" && s.session)
    })
    .await;
    // Neither provider is back yet; its registration has been answered.
    assert_eq!(sorted(grading.providers("LogService")), both, "never emptied by the warm-up");
    assert_eq!(log.register(&registry.url, json!([])).await, 200);
    eventually(warmup + LIMIT, "once the warm-up is over, the dead provider is dropped", || {
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
    // Bound but not listening: refused like an absent registry, and no one
    // else can take the port.
    let reserved = Reserved::new();
    let registry_url = format!("http://{}", reserved.addr);
    let log = TestService::spawn(gradebook_runtime::ServiceSpec::new("LogService", registry_url));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let registry = TestRegistry::spawn_on(reserved, Config::default());
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
async fn with_a_token_a_wrong_one_is_refused_everywhere_and_the_right_one_also_holds_sessions() {
    let config = Config { token: Some("s3cret".into()), ..Config::default() };
    let registry = TestRegistry::spawn(config);
    let plain = PlainService::start("Plain").await;
    let refused = |r: reqwest::StatusCode, what: &str| assert_eq!(r, 401, "{what}");

    let wrong = plain.register_with(&registry.url, json!([]), Some("s3creT")).await;
    refused(wrong.status(), "a registration with a wrong token");
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "a JSON error: {body}");
    assert!(registry.statuses().is_empty(), "nothing registered with a wrong token");
    let right = plain.register_with(&registry.url, json!([]), Some("s3cret")).await;
    assert_eq!(right.status(), 200, "the right token registers");
    let delete = |token: &'static str| {
        reqwest::Client::new()
            .delete(format!("{}/services", registry.url))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body(plain.url.clone())
            .send()
    };
    refused(delete("wrong").await.unwrap().status(), "a deregistration with a wrong token");
    assert_eq!(registry.provider_urls("Plain"), vec![plain.url.clone()], "still listed");

    for token in [None, Some("wrong"), Some("S3CRET"), Some("s3cret2")] {
        let mut session = open_session(&registry, &plain.url, token).await;
        assert_eq!(answer_status(&mut session).await, Some(401), "a session with token {token:?}");
    }
    let status = || registry.statuses().into_iter().find(|s| s.service_url == plain.url).unwrap();
    assert!(!status().session, "no refused session counts");
    let _session = open_session(&registry, &plain.url, Some("s3cret")).await;
    eventually(LIMIT, "a session with the right token is held", || status().session).await;

    // The runtime sends the token with its registration and its session.
    let mut with_token = spec(&registry, "LogService", &[]);
    with_token.token = Some("s3cret".into());
    let log = TestService::spawn(with_token);
    eventually(LIMIT, "the runtime registers and holds a session", || {
        registry.statuses().iter().any(|s| s.service_url == log.url && s.session)
    })
    .await;
    assert_eq!(delete("s3cret").await.unwrap().status(), 200, "the right token deregisters");
}

#[tokio::test]
async fn a_registration_is_answered_with_its_providers_in_the_original_json() {
    let registry = TestRegistry::spawn(Config::default());
    let log = PlainService::start("LogService").await;
    let answer = log.register_with(&registry.url, json!([]), None).await;
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(body, json!({"Added": [], "Removed": []}), "requiring nothing");

    let dependent = PlainService::start("Dependent").await;
    let answer = dependent.register_with(&registry.url, json!(["LogService"]), None).await;

    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    let expected = json!({"Added": [{"Name": "LogService", "URL": log.url}], "Removed": []});
    assert_eq!(body, expected, "the answer");
    // The patch POSTed before the answer carries the same lists (and may
    // carry more: the original's clients ignore what they do not know).
    let patches: Vec<serde_json::Value> = dependent
        .patch_bodies()
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap())
        .map(|p| json!({"Added": p["Added"], "Removed": p["Removed"]}))
        .collect();
    assert_eq!(patches, vec![expected], "the patch POSTed before the answer");
}

#[tokio::test]
async fn patches_refused_by_a_failing_dependent_are_retried_and_once_it_recovers_tell_it_exactly_what_changed() {
    // Retries back off to at most 200 ms, so recovery is noticed quickly.
    let config = Config { max_patch_backoff: Duration::from_millis(200), ..Config::default() };
    let registry = TestRegistry::spawn(config);
    let provider = || PlainService::start("Provider");
    let (a, b, c, d) = (provider().await, provider().await, provider().await, provider().await);
    assert_eq!(a.register(&registry.url, json!([])).await, 200);
    let dependent = PlainService::start("Dependent").await;
    assert_eq!(dependent.register(&registry.url, json!(["Provider"])).await, 200);
    assert_eq!(dependent.providers("Provider"), vec![a.url.clone()]);

    dependent.set_updates(Updates::Refuse);
    assert_eq!(b.register(&registry.url, json!([])).await, 200);
    assert_eq!(c.register(&registry.url, json!([])).await, 200);
    assert_eq!(c.deregister(&registry.url).await, 200);
    // Nothing changes from here on: beyond a send still under way, every
    // patch that arrives is a retry.
    let refused = dependent.refused();
    eventually(LIMIT, "the refused patch is sent again and again", || dependent.refused() >= refused + 3).await;
    dependent.set_updates(Updates::Accept);
    let distinct = || {
        let mut urls = sorted(dependent.providers("Provider"));
        urls.dedup();
        urls
    };
    eventually(LIMIT, "the recovered dependent is brought up to date", || {
        distinct() == sorted(vec![a.url.clone(), b.url.clone()])
    })
    .await;
    // One more change: patches go out in order, so once it is told about d,
    // anything still due from the outage has arrived before.
    assert_eq!(d.register(&registry.url, json!([])).await, 200);
    eventually(LIMIT, "the next change arrives", || dependent.providers("Provider").contains(&d.url)).await;

    // Applied in order as the original client does (it keeps duplicates),
    // every patch adds only what it lacks and removes only what it holds.
    let patches = dependent.patches();
    let mut held: Vec<String> = vec![];
    for p in &patches {
        for added in &p.added {
            assert!(!held.contains(&added.url), "{} added twice: {patches:?}", added.url);
            held.push(added.url.clone());
        }
        for removed in &p.removed {
            let i = held.iter().position(|u| u == &removed.url);
            let i = i.unwrap_or_else(|| panic!("{} removed but never added: {patches:?}", removed.url));
            held.remove(i);
        }
    }
    assert_eq!(held, vec![a.url.clone(), b.url.clone(), d.url.clone()], "exactly the live providers: {patches:?}");
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
    let (_registry, registry_addr) =
        Proc::start_listening(|addr| vec!["registry".into(), "--addr".into(), addr.into()]).await;
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

    log.signal(Signal::SIGTERM);

    let status = log.wait_exit(LIMIT).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(registry.statuses().iter().all(|s| s.service_name != "LogService"), "deregistered, not merely critical");
    eventually(LIMIT, "grading told", || grading.providers("LogService").is_empty()).await;
}

#[tokio::test]
async fn a_second_spelling_of_a_registered_url_cannot_take_it_over_under_another_name() {
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestService::spawn(spec(&registry, "GradingService", &[]));
    eventually(LIMIT, "grading is listed", || registry.provider_urls("GradingService") == vec![grading.url.clone()])
        .await;
    let http = reqwest::Client::new();
    let upper = grading.url.replacen("http://", "HTTP://", 1);
    for spelling in [format!("{}/", grading.url), upper, format!("{}/x/..", grading.url)] {
        let r = http
            .post(format!("{}/services", registry.url))
            .json(&json!({"ServiceName": "LogService", "ServiceURL": spelling,
                "HeartbeatURL": format!("{}/heartbeat", grading.url)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{spelling} taken over");
    }
    assert!(registry.provider_urls("LogService").is_empty());
    assert_eq!(registry.provider_urls("GradingService"), vec![grading.url.clone()]);
}

#[tokio::test]
async fn a_patch_numbered_past_any_registry_is_refused_and_does_not_freeze_the_provider_list() {
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestService::spawn(spec(&registry, "GradingService", &["LogService"]));
    let log_a = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "grading knows the log", || grading.providers("LogService") == vec![log_a.url.clone()]).await;

    let r = reqwest::Client::new()
        .post(format!("{}/registry/update", grading.url))
        .json(&json!({"Added": [], "Removed": [], "Seq": u64::MAX}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["field"], "Seq");

    let log_b = TestService::spawn(spec(&registry, "LogService", &[]));
    eventually(LIMIT, "later real patches still apply", || grading.providers("LogService").len() == 2).await;
    log_a.stop();
    eventually(LIMIT, "and removals too", || grading.providers("LogService") == vec![log_b.url.clone()]).await;
}

#[tokio::test]
async fn a_service_url_on_another_address_than_the_callers_is_refused() {
    let registry = TestRegistry::spawn(Config::default());
    let http = reqwest::Client::new();
    for target in ["http://10.255.255.1:5432", "http://192.0.2.1:80/students/999"] {
        let r = http
            .post(format!("{}/services", registry.url))
            .json(&json!({"ServiceName": "Scan", "ServiceURL": target, "HeartbeatURL": format!("{target}/heartbeat")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{target}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["field"], "ServiceURL");
    }
    assert!(registry.statuses().iter().all(|s| s.service_name != "Scan"), "nothing is probed");

    let open = TestRegistry::spawn(Config { allow_foreign_urls: true, ..Config::default() });
    let r = http
        .post(format!("{}/services", open.url))
        .json(&json!({"ServiceName": "Elsewhere", "ServiceURL": "http://192.0.2.1:80", "HeartbeatURL": "http://192.0.2.1:80/heartbeat"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "--allow-foreign-urls lets it through");
}
