//! Robustness, tried the way bad luck or a hostile user would: a service
//! paused past the registry's retention or deregistered by a stranger, a
//! URL hijacked under another name, SIGTERM with a live tail held open, a
//! full disk, register and deregister racing, heartbeats that never end or
//! redirect elsewhere. (`kill -9` at the instant of an acknowledgement is
//! tried 1,000 times in `tests/log.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use gradebook::registry::{Config, Policy};
use gradebook_shared::registry::HealthState;
use gradebook_tests::plain::PlainService;
use gradebook_tests::process::{Proc, Signal};
use gradebook_tests::{TempDir, TestRegistry, TestService, eventually, eventually_async, in_ci, spec};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(5);

fn passing(registry: &TestRegistry, url: &str) -> bool {
    registry.statuses().iter().any(|s| s.service_url == url && s.state == HealthState::Passing)
}

async fn listed(registry: &str, name: &str, url: &str) -> bool {
    let Ok(r) = reqwest::get(format!("{registry}/services/{name}")).await else { return false };
    let providers: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
    providers.iter().any(|p| p["URL"] == url)
}

#[tokio::test]
async fn a_service_paused_past_the_retention_is_listed_again_once_it_answers() {
    // Real processes: only a real SIGSTOP freezes a process's sockets too.
    let dir = TempDir::new("paused");
    let (_registry, registry_addr) = Proc::start_listening(|addr| {
        ["registry", "--addr", addr, "--probe-interval", "100ms", "--retention", "1s"].map(str::to_owned).to_vec()
    })
    .await;
    let registry = format!("http://{registry_addr}");
    let (dependent, _) = Proc::start_listening(|addr| {
        ["stub", "--addr", addr, "--name", "Dependent", "--requires", "Worker", "--registry-url", &registry]
            .map(str::to_owned)
            .to_vec()
    })
    .await;
    let _ = dependent;
    let (worker, worker_addr) = Proc::start_listening(|addr| {
        ["stub", "--addr", addr, "--name", "Worker", "--registry-url", &registry].map(str::to_owned).to_vec()
    })
    .await;
    let worker_url = format!("http://{worker_addr}");
    eventually_async(LIMIT, "the worker is listed", || listed(&registry, "Worker", &worker_url)).await;

    worker.signal(Signal::SIGSTOP);
    eventually_async(LIMIT, "the paused worker is removed", || async {
        !listed(&registry, "Worker", &worker_url).await
    })
    .await;
    // Past the retention: the registry forgets it altogether.
    eventually_async(LIMIT, "the paused worker is forgotten", || async {
        let all: Vec<serde_json::Value> =
            reqwest::get(format!("{registry}/services")).await.unwrap().json().await.unwrap();
        !all.iter().any(|s| s["ServiceURL"] == worker_url)
    })
    .await;
    worker.signal(Signal::SIGCONT);

    eventually_async(Duration::from_secs(3), "the worker is listed again within 3 s", || {
        listed(&registry, "Worker", &worker_url)
    })
    .await;
    drop(dir);
}

/// The registry's count of removals noticed through `via` (session or probes).
async fn removals_via(registry: &str, via: &str) -> u64 {
    let metrics = reqwest::get(format!("{registry}/metrics")).await.unwrap().text().await.unwrap();
    let series = format!("gradebook_registry_removals_total{{via=\"{via}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn a_crash_after_registering_again_is_still_noticed_through_the_new_session() {
    // Paused until removed, the worker comes back: its old session was ended
    // and it registers again over its own entry. Its next crash must be
    // reported by its new session, not left to the probes (the old session
    // used to stay counted, so the new one's drop meant nothing).
    let (_registry, registry_addr) = Proc::start_listening(|addr| {
        ["registry", "--addr", addr, "--probe-interval", "100ms"].map(str::to_owned).to_vec()
    })
    .await;
    let registry = format!("http://{registry_addr}");
    let (mut worker, worker_addr) = Proc::start_listening(|addr| {
        ["stub", "--addr", addr, "--name", "Worker", "--registry-url", &registry].map(str::to_owned).to_vec()
    })
    .await;
    let worker_url = format!("http://{worker_addr}");
    let holds_session = || async {
        let all: Vec<serde_json::Value> =
            reqwest::get(format!("{registry}/services")).await.unwrap().json().await.unwrap();
        all.iter().any(|s| s["ServiceURL"] == worker_url && s["State"] == "passing" && s["Session"] == true)
    };
    eventually_async(LIMIT, "the worker holds a session", holds_session).await;
    worker.signal(Signal::SIGSTOP);
    eventually_async(LIMIT, "the paused worker is removed", || async {
        !listed(&registry, "Worker", &worker_url).await
    })
    .await;
    worker.signal(Signal::SIGCONT);
    eventually_async(LIMIT, "the worker is back with a new session", holds_session).await;

    worker.kill9();

    eventually_async(LIMIT, "the crash is noticed", || async { !listed(&registry, "Worker", &worker_url).await }).await;
    assert_eq!(removals_via(&registry, "session").await, 1, "the new session reported the crash");
}

#[tokio::test]
async fn a_service_deregistered_by_a_stranger_registers_again_at_once() {
    let registry = TestRegistry::spawn(Config::default());
    let worker = TestService::spawn(spec(&registry, "Worker", &[]));
    eventually(LIMIT, "listed", || passing(&registry, &worker.url)).await;

    let removed = reqwest::Client::new()
        .delete(format!("{}/services", registry.url))
        .header("content-type", "text/plain")
        .body(worker.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);

    eventually(Duration::from_secs(3), "listed again", || passing(&registry, &worker.url)).await;
    worker.stop();
}

#[tokio::test]
async fn a_url_registered_under_one_name_cannot_be_taken_by_another() {
    let registry = TestRegistry::spawn(Config::default());
    let worker = TestService::spawn(spec(&registry, "Worker", &[]));
    eventually(LIMIT, "listed", || passing(&registry, &worker.url)).await;

    let hijack = reqwest::Client::new()
        .post(format!("{}/services", registry.url))
        .json(&json!({
            "ServiceName": "Impostor",
            "ServiceURL": worker.url,
            "RequiredServices": [],
            "ServiceUpdateURL": format!("{}/registry/update", worker.url),
            "HeartbeatURL": format!("{}/heartbeat", worker.url),
        }))
        .send()
        .await
        .unwrap();

    assert_eq!(hijack.status(), StatusCode::CONFLICT);
    let error: serde_json::Value = hijack.json().await.unwrap();
    assert_eq!(error["field"], "ServiceURL");
    assert_eq!(registry.provider_urls("Worker"), vec![worker.url.clone()]);
    assert!(registry.provider_urls("Impostor").is_empty());
    worker.stop();
}

#[tokio::test]
async fn sigterm_with_a_live_tail_open_exits_within_the_drain_deadline_with_every_acknowledged_record_on_disk() {
    let dir = TempDir::new("drain");
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let (mut log, addr) = Proc::start_listening(|addr| {
        ["log", "--addr", addr, "--dir", &dir_arg, "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"]
            .into_iter()
            .map(str::to_owned)
            .chain(["--drain-timeout".into(), "2s".into()])
            .collect()
    })
    .await;
    // A reader that holds the tail open and never reads it.
    let tail = reqwest::Client::new().get(format!("http://{addr}/log/stream")).send().await.unwrap();
    assert_eq!(tail.status(), StatusCode::OK);
    let client = reqwest::Client::new();
    for i in 0..50 {
        let r = client.post(format!("http://{addr}/log")).body(format!("[Drained] - line {i}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    log.signal(Signal::SIGTERM);
    let exited = log.wait_exit(Duration::from_secs(6));

    assert!(exited.is_some(), "still running 6 s after SIGTERM with a 2 s drain deadline");
    drop(tail);
    let file = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    for i in 0..50 {
        assert!(file.contains(&format!("\"line {i}\"")), "line {i} acknowledged but not on disk");
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_full_disk_gets_503_acknowledges_only_what_was_written_and_keeps_memory_flat() {
    // A 256 KiB tmpfs of its own, in a user and mount namespace.
    let dir = TempDir::new("full-disk");
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let binary = gradebook_tests::process::binary();
    let port = gradebook_tests::free_port();
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs {dir_arg} && exec {} log --addr 127.0.0.1:{port} --dir {dir_arg} \
         --registry-url http://127.0.0.1:9 --ship-level off",
        binary.display()
    );
    let child = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .stdout(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        assert!(!in_ci(), "unshare is needed for the full-disk test");
        return;
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually_async(LIMIT, "the log service on its small disk", || async {
        client.get(format!("{base}/healthz")).send().await.is_ok()
    })
    .await;
    let pid = child.id() as i32;

    // Fill it: 1 KiB records until the disk refuses.
    let filler = "x".repeat(1000);
    let mut acknowledged = vec![];
    let mut refused = 0;
    for i in 0..600 {
        let r = client.post(format!("{base}/log")).body(format!("[Filler] - {i} {filler}")).send().await.unwrap();
        match r.status() {
            StatusCode::OK => acknowledged.push(i),
            StatusCode::SERVICE_UNAVAILABLE => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains("could not be written"), "{body}");
                refused += 1;
            }
            other => panic!("record {i}: {other}"),
        }
    }
    let rss_full = rss_kib(pid);
    for i in 600..2600 {
        let r = client.post(format!("{base}/log")).body(format!("[Filler] - {i} {filler}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let rss_after = rss_kib(pid);

    assert!(refused > 0 && !acknowledged.is_empty(), "{} acknowledged, {refused} refused", acknowledged.len());
    assert!(rss_after < rss_full + 4096, "memory grew from {rss_full} KiB to {rss_after} KiB on a full disk");
    let file = std::fs::read_to_string(format!("/proc/{pid}/root{dir_arg}/log.jsonl")).unwrap();
    for line in file.lines() {
        assert!(serde_json::from_str::<serde_json::Value>(line).is_ok(), "a torn line: {line:.80}");
    }
    assert_eq!(file.lines().count(), acknowledged.len(), "exactly what was acknowledged is in the file");
    let kept: Vec<serde_json::Value> =
        client.get(format!("{base}/log?service=Filler&limit=1000")).send().await.unwrap().json().await.unwrap();
    assert_eq!(kept.len(), acknowledged.len(), "queries show only what was written");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn registrations_and_deregistrations_racing_on_the_same_urls_leave_every_listed_entry_probed() {
    let interval = Duration::from_millis(100);
    let registry =
        TestRegistry::spawn(Config { policy: Policy { interval, ..Policy::default() }, ..Config::default() });
    let mut services = vec![];
    for i in 0..8 {
        services.push(Arc::new(PlainService::start(&format!("Racer{i}")).await));
    }
    let client = reqwest::Client::new();

    let racers = (0..4).map(|task| {
        let (services, client, url) = (services.clone(), client.clone(), registry.url.clone());
        tokio::spawn(async move {
            for round in 0..100 {
                let s = &services[(task * 7 + round) % services.len()];
                if (task + round) % 2 == 0 {
                    s.register(&url, json!([])).await;
                } else {
                    let _ = client
                        .delete(format!("{url}/services"))
                        .header("content-type", "text/plain")
                        .body(s.url.clone())
                        .send()
                        .await;
                }
            }
        })
    });
    futures::future::join_all(racers).await;
    for s in &services {
        s.register(&registry.url, json!([])).await;
    }

    // Every entry listed now is probed, again and again.
    tokio::time::sleep(interval * 5).await;
    let statuses = registry.statuses();
    assert_eq!(statuses.len(), services.len());
    for s in statuses {
        let age = s.last_probe_age_ms.unwrap_or(u64::MAX);
        assert!(age < 2 * interval.as_millis() as u64, "{} last probed {age} ms ago", s.service_url);
    }
}

#[tokio::test]
async fn a_heartbeat_that_never_ends_is_read_only_so_far_and_still_counts() {
    let registry = TestRegistry::spawn(Config::default());
    // 200, then a body that never ends.
    let endless = Router::new().route(
        "/heartbeat",
        get(|| async {
            let chunks = futures::stream::repeat_with(|| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 8192])));
            axum::body::Body::from_stream(chunks)
        }),
    );
    let url = gradebook_tests::serve_app(endless).await;
    let register = json!({"ServiceName": "Endless", "ServiceURL": url, "HeartbeatURL": format!("{url}/heartbeat")});
    let r = reqwest::Client::new().post(format!("{}/services", registry.url)).json(&register).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Several probe rounds (500 ms apart, 500 ms deadline each).
    tokio::time::sleep(Duration::from_secs(3)).await;

    let status = registry.statuses().into_iter().find(|s| s.service_url == url).unwrap();
    assert_eq!(status.state, HealthState::Passing, "a probe that reads the endless body times out");
    assert!(status.last_probe.is_some());
}

#[tokio::test]
async fn a_heartbeat_that_redirects_is_not_followed_and_counts_as_failed() {
    let registry = TestRegistry::spawn(Config::default());
    let hits = Arc::new(AtomicUsize::new(0));
    let elsewhere = {
        let hits = hits.clone();
        Router::new().route(
            "/target",
            get(move || async move {
                hits.fetch_add(1, Ordering::SeqCst);
                "ok"
            }),
        )
    };
    let target = format!("{}/target", gradebook_tests::serve_app(elsewhere).await);
    let redirecting = Router::new().route(
        "/heartbeat",
        get(move || {
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
        }),
    );
    let url = gradebook_tests::serve_app(redirecting).await;
    let register = json!({"ServiceName": "Redirector", "ServiceURL": url, "HeartbeatURL": format!("{url}/heartbeat")});
    reqwest::Client::new().post(format!("{}/services", registry.url)).json(&register).send().await.unwrap();

    eventually(LIMIT, "the redirecting service is removed", || {
        registry.statuses().iter().any(|s| s.service_url == url && s.state == HealthState::Critical)
    })
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the registry followed a redirect");
}

#[tokio::test]
async fn text_scans_of_a_full_window_never_hold_up_ingestion_or_healthz() {
    let dir = TempDir::new("scans");
    let registry = TestRegistry::spawn(Config::default());
    let log = log_in(&dir, &registry);
    let client = reqwest::Client::new();
    // A full window: 50,000 records whose messages each cost a scan.
    let batch: Vec<serde_json::Value> =
        (0..1000).map(|i| json!({"service": "Filler", "message": format!("record {i} {}", "y".repeat(200))})).collect();
    for _ in 0..50 {
        let r = client.post(format!("{}/log", log.url)).json(&batch).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    // Eight readers scanning the whole window for text that is not there.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scanners: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, stop) = (client.clone(), log.url.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = client.get(format!("{url}/log?contains=absent&limit=1000")).send().await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile every probe within the registry's deadline and every write answer.
    let probe = reqwest::Client::builder().timeout(Duration::from_millis(500)).build().unwrap();
    for i in 0..20 {
        let health = probe.get(format!("{}/healthz", log.url)).send().await;
        assert!(health.is_ok_and(|h| h.status() == StatusCode::OK), "healthz {i} missed the probe deadline");
        let written = probe.post(format!("{}/log", log.url)).body(format!("[Writer] - during scans {i}")).send().await;
        assert!(written.is_ok_and(|w| w.status() == StatusCode::OK), "write {i} missed the deadline");
    }
    stop.store(true, Ordering::Relaxed);
    for s in scanners {
        let _ = s.await;
    }
    log.stop();
}

#[tokio::test]
async fn live_tails_beyond_the_cap_are_refused_with_a_json_503() {
    let dir = TempDir::new("tails");
    let registry = TestRegistry::spawn(Config::default());
    let log = log_in(&dir, &registry);
    let client = reqwest::Client::new();
    let mut open = vec![];
    for i in 0..gradebook::log::MAX_TAILS {
        let tail = client.get(format!("{}/log/stream", log.url)).send().await.unwrap();
        assert_eq!(tail.status(), StatusCode::OK, "tail {i}");
        open.push(tail);
    }

    let one_more = client.get(format!("{}/log/stream", log.url)).send().await.unwrap();

    assert_eq!(one_more.status(), StatusCode::SERVICE_UNAVAILABLE);
    let error: serde_json::Value = one_more.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("too many live tails"), "{error}");
    // A tail that closes makes room again.
    open.pop();
    eventually_async(LIMIT, "room for a new tail", || async {
        client.get(format!("{}/log/stream", log.url)).send().await.is_ok_and(|t| t.status() == StatusCode::OK)
    })
    .await;
    drop(open);
    log.stop();
}

#[tokio::test]
async fn a_service_whose_registry_stops_probing_it_while_the_session_looks_alive_registers_again() {
    // A registry that answers as ours does, holds the session, and never
    // probes: it has lost the service without the session saying so.
    let registrations = Arc::new(AtomicUsize::new(0));
    let counted = registrations.clone();
    let app = Router::new()
        .route(
            "/services",
            axum::routing::post(move || async move {
                counted.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"Added": [], "Removed": []}))
            }),
        )
        .route("/sessions", axum::routing::post(std::future::pending::<StatusCode>));
    let registry = gradebook_tests::serve_app(app).await;
    let mut spec = gradebook_runtime::ServiceSpec::new("Worker", registry);
    spec.reregister_after = Duration::from_millis(300);

    let worker = TestService::spawn(spec);

    eventually(LIMIT, "registered again after the silence", || registrations.load(Ordering::SeqCst) >= 2).await;
    worker.stop();
}

/// A log service storing in `dir`, registered with `registry`.
fn log_in(dir: &TempDir, registry: &TestRegistry) -> gradebook_tests::TestLog {
    let config =
        gradebook::log::StoreConfig { dir: dir.path().to_path_buf(), ..gradebook::log::StoreConfig::default() };
    gradebook_tests::TestLog::spawn(&registry.url, config)
}
