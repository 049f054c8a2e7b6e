//! Failure drills across real processes: what a distributed system exists to
//! survive. Each drill asserts the outcome (who is removed, re-added, told);
//! how fast is measured by `make bench`.

use std::time::Duration;

use gradebook_tests::process::{Proc, Signal};
use gradebook_tests::{TempDir, TestService, eventually, eventually_async, postgres_database, skip};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

/// A registry process on a free port.
async fn registry() -> (Proc, String, String) {
    let (proc, addr) = Proc::start_listening(|addr| vec!["registry".into(), "--addr".into(), addr.into()]).await;
    (proc, addr.clone(), format!("http://{addr}"))
}

/// The registry's list (empty while it is unreachable).
async fn list(registry_url: &str) -> Vec<Value> {
    match reqwest::get(format!("{registry_url}/services")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => vec![],
    }
}

async fn state_of(registry_url: &str, url: &str) -> Option<String> {
    list(registry_url).await.iter().find(|s| s["ServiceURL"] == url).map(|s| s["State"].as_str().unwrap().to_owned())
}

/// A grading process on SQLite in `dir`, listening; returns it and its address.
async fn grading(dir: &TempDir, registry_url: &str) -> (Proc, String) {
    let db = format!("sqlite://{}/g.db", dir.path().display());
    Proc::start_listening(|addr| {
        ["grading", "--addr", addr, "--database-url", &db, "--registry-url", registry_url].map(str::to_owned).to_vec()
    })
    .await
}

fn dependent(registry_url: &str, requires: &[&str]) -> TestService {
    TestService::spawn(gradebook_runtime::ServiceSpec::new("Dependent", registry_url).requires(requires))
}

#[tokio::test]
async fn every_service_serves_prometheus_metrics_of_what_it_did() {
    let dir = TempDir::new("metrics");
    let (_registry, _, registry_url) = registry().await;
    let log_dir = dir.path().join("log").display().to_string();
    let (_log, log_addr) = Proc::start_listening(|addr| {
        ["log", "--addr", addr, "--dir", &log_dir, "--registry-url", &registry_url].map(str::to_owned).to_vec()
    })
    .await;
    let (_grading, grading_addr) = grading(&dir, &registry_url).await;
    let mut stub = Proc::start(&["stub", "--name", "Doomed", "--registry-url", &registry_url], true);
    eventually_async(LIMIT, "the stub is registered", || async { state_of(&registry_url, &stub.url).await.is_some() })
        .await;

    let r = reqwest::Client::new()
        .post(format!("http://{grading_addr}/students/1/grades"))
        .json(&json!({"Title": "Metered", "Type": "Quiz", "Score": 50}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    stub.kill9();
    eventually_async(LIMIT, "the stub is removed", || async {
        state_of(&registry_url, &stub.url).await.as_deref() == Some("critical")
    })
    .await;

    let metrics =
        |base: String| async move { reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap() };
    for name in [
        "gradebook_registry_services{state=\"passing\"}",
        "gradebook_registry_detection_seconds_bucket",
        "gradebook_registry_probe_duration_seconds_bucket",
        "gradebook_registry_patches_total{outcome=\"delivered\"}",
        "http_requests_total{method=\"POST\",route=\"/services\",status=\"200\"}",
    ] {
        // Probes run on their own schedule: the first may still be due.
        eventually_async(LIMIT, &format!("the registry reports {name}"), || async {
            metrics(registry_url.clone()).await.contains(name)
        })
        .await;
    }
    // One crash, one removal: the whole line, so 10 or 11 would not do.
    let removals = "gradebook_registry_removals_total{via=\"session\"} 1";
    eventually_async(LIMIT, &format!("the registry reports {removals}"), || async {
        metrics(registry_url.clone()).await.lines().any(|l| l == removals)
    })
    .await;
    let grading_metrics = metrics(format!("http://{grading_addr}")).await;
    assert!(grading_metrics.contains("gradebook_grades_written_total 1"), "{grading_metrics}");
    assert!(grading_metrics.contains(
        "http_request_duration_seconds_bucket{method=\"POST\",route=\"/students/{id}/grades\",status=\"201\""
    ));
    eventually_async(LIMIT, "the log service counts what it ingested", || async {
        metrics(format!("http://{log_addr}")).await.lines().any(|l| {
            l.starts_with("gradebook_log_records_ingested_total ")
                && l.split(' ').nth(1).and_then(|n| n.parse::<f64>().ok()).is_some_and(|n| n > 0.0)
        })
    })
    .await;
}

#[tokio::test]
async fn a_stopped_service_is_removed_while_another_failure_is_still_detected_and_comes_back_on_cont() {
    let (_registry, _, registry_url) = registry().await;
    let watcher = dependent(&registry_url, &["Frozen", "Crashed"]);
    let frozen = Proc::start(&["stub", "--name", "Frozen", "--registry-url", &registry_url, "--no-session"], true);
    let mut crashed =
        Proc::start(&["stub", "--name", "Crashed", "--registry-url", &registry_url, "--no-session"], true);
    eventually(LIMIT, "both known", || watcher.providers("Frozen").len() + watcher.providers("Crashed").len() == 2)
        .await;

    frozen.signal(Signal::SIGSTOP);
    crashed.kill9();

    eventually(LIMIT, "the crash is detected though a probe hangs", || watcher.providers("Crashed").is_empty()).await;
    eventually(LIMIT, "the frozen one is removed", || watcher.providers("Frozen").is_empty()).await;
    frozen.signal(Signal::SIGCONT);
    eventually(LIMIT, "it is re-added once it answers again", || {
        watcher.providers("Frozen") == vec![frozen.url.clone()]
    })
    .await;
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_tells_dependents() {
    let (_registry, _, registry_url) = registry().await;
    let watcher = dependent(&registry_url, &["Worker"]);
    let mut worker = Proc::start(&["stub", "--name", "Worker", "--registry-url", &registry_url], true);
    eventually(LIMIT, "known", || watcher.providers("Worker").len() == 1).await;
    let slow = tokio::spawn(reqwest::get(format!("{}/slow?ms=700", worker.url)));
    tokio::time::sleep(Duration::from_millis(100)).await; // the request is in flight

    worker.signal(Signal::SIGTERM);

    eventually(LIMIT, "dependents told at once", || watcher.providers("Worker").is_empty()).await;
    let answer = slow.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(answer.text().await.unwrap(), "done");
    let status = worker.wait_exit(LIMIT).expect("exits once drained");
    assert!(status.success());
    assert!(state_of(&registry_url, &worker.url).await.is_none(), "deregistered");
}

#[tokio::test]
async fn the_registry_killed_and_restarted_under_load_gets_everyone_back() {
    let (mut registry, registry_addr, registry_url) = registry().await;
    let watcher = dependent(&registry_url, &["Worker"]);
    let worker = Proc::start(&["stub", "--name", "Worker", "--registry-url", &registry_url], true);
    eventually(LIMIT, "known", || watcher.providers("Worker").len() == 1).await;
    // Load on the worker through discovery while the registry is away.
    let stop = tokio_util::sync::CancellationToken::new();
    let load = {
        let (rt, stop) = (watcher.runtime.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, 0);
            while !stop.is_cancelled() {
                match rt.call("Worker", |c, base| c.get(format!("{base}/providers"))).await {
                    Ok(r) if r.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };

    registry.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _registry = Proc::start(&["registry", "--addr", &registry_addr], false);

    eventually_async(Duration::from_secs(3) + LIMIT, "every service registered again", || async {
        let names: Vec<String> =
            list(&registry_url).await.iter().map(|s| s["ServiceName"].as_str().unwrap().to_owned()).collect();
        names.contains(&"Worker".to_owned()) && names.contains(&"Dependent".to_owned())
    })
    .await;
    stop.cancel();
    let (ok, failed) = load.await.unwrap();
    assert!(ok > 0 && failed == 0, "calls kept working throughout: {ok} ok, {failed} failed");
    assert_eq!(watcher.providers("Worker"), vec![worker.url.clone()]);
}

#[tokio::test]
async fn a_log_service_down_for_ten_seconds_loses_nothing_and_keeps_order() {
    let dir = TempDir::new("drill-log");
    let (_registry, _, registry_url) = registry().await;
    let log_dir = dir.path().join("log").display().to_string();
    let log_args = |addr: &str| {
        ["log", "--addr", addr, "--dir", &log_dir, "--registry-url", &registry_url].map(str::to_owned).to_vec()
    };
    let (mut log, log_addr) = Proc::start_listening(log_args).await;
    let (_grading, grading_addr) = grading(&dir, &registry_url).await;
    let client = reqwest::Client::new();
    let post = |i: usize| {
        let client = client.clone();
        let url = format!("http://{grading_addr}/students/2/grades");
        async move {
            let r = client
                .post(url)
                .json(&json!({"Title": format!("Drill {i}"), "Type": "Quiz", "Score": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    let log_url = format!("http://{log_addr}");
    let drill_lines = || async {
        let url = format!("{log_url}/log?service=GradingService&contains=grade%20added&limit=1000");
        let found: Vec<Value> = match reqwest::get(url).await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => vec![], // restarting
        };
        found.iter().filter_map(|r| r["fields"]["title"].as_str().map(str::to_owned)).collect::<Vec<_>>()
    };
    post(0).await;
    eventually_async(LIMIT, "grading's logs flow", || async { drill_lines().await.len() == 1 }).await;

    log.signal(Signal::SIGTERM);
    log.wait_exit(LIMIT).expect("the log service stops");
    let outage = tokio::time::Instant::now();
    let mut i = 1;
    while outage.elapsed() < Duration::from_secs(10) {
        post(i).await;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _log = Proc::start(&log_args(&log_addr).iter().map(String::as_str).collect::<Vec<_>>(), false);

    let expected: Vec<String> = (0..i).map(|n| format!("Drill {n}")).collect();
    eventually_async(Duration::from_secs(15), "every line arrives", || async {
        drill_lines().await.len() == expected.len()
    })
    .await;
    assert_eq!(drill_lines().await, expected, "nothing lost, order kept");
}

#[tokio::test]
async fn killing_one_of_two_grading_instances_under_load_fails_no_page_after_detection() {
    let Some(db) = postgres_database("drill").await else { return };
    let (_registry, _, registry_url) = registry().await;
    let grading = |addr: &str| {
        ["grading", "--addr", addr, "--database-url", &db, "--registry-url", &registry_url].map(str::to_owned).to_vec()
    };
    let (mut a, _) = Proc::start_listening(grading).await;
    let (_b, b_addr) = Proc::start_listening(grading).await;
    let portal = dependent(&registry_url, &["GradingService"]);
    eventually(LIMIT, "both instances known", || portal.providers("GradingService").len() == 2).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let killed_at = std::sync::Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (rt, stop, killed_at) = (portal.runtime.clone(), stop.clone(), killed_at.clone());
            tokio::spawn(async move {
                let (mut total, mut failed, mut failed_late) = (0u32, 0u32, 0u32);
                while !stop.is_cancelled() {
                    let ok = rt
                        .call("GradingService", |c, base| c.get(format!("{base}/students")))
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    total += 1;
                    if !ok {
                        failed += 1;
                        // Well after the kill the registry has told us.
                        if killed_at.get().is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
                            failed_late += 1;
                        }
                    }
                }
                (total, failed, failed_late)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.kill9();
    let _ = killed_at.set(tokio::time::Instant::now());
    eventually(LIMIT, "the portal is told", || portal.providers("GradingService") == vec![format!("http://{b_addr}")])
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let (mut total, mut failed, mut late) = (0, 0, 0);
    for w in workers {
        let (t, f, l) = w.await.unwrap();
        (total, failed, late) = (total + t, failed + f, late + l);
    }
    assert!(total > 100, "the load ran: {total}");
    assert!((failed as f64) < total as f64 * 0.01, "{failed} of {total} failed");
    assert_eq!(late, 0, "no failure after detection");
}

/// Two hosts joined by a veth pair: network namespaces of our own, with
/// addresses only they use; removed on drop.
struct Hosts {
    a: String,
    b: String,
    a_ip: String,
    b_ip: String,
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip").args(args).stderr(std::process::Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Hosts {
    /// None where namespaces cannot be made (not root, no `ip`).
    fn new() -> Option<Self> {
        let id = std::process::id() % 200 + 20;
        let (a, b) = (format!("gb-a-{id}"), format!("gb-b-{id}"));
        let (va, vb) = (format!("gbva{id}"), format!("gbvb{id}"));
        let (a_ip, b_ip) = (format!("10.231.{id}.1"), format!("10.231.{id}.2"));
        // Left over by an interrupted run with the same id.
        ip(&["netns", "del", &a]);
        ip(&["netns", "del", &b]);
        if !ip(&["netns", "add", &a]) {
            return None;
        }
        let hosts = Hosts { a: a.clone(), b: b.clone(), a_ip: a_ip.clone(), b_ip: b_ip.clone() };
        let ok = ip(&["netns", "add", &b])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", &a])
            && ip(&["link", "set", &vb, "netns", &b])
            && ip(&["-n", &a, "addr", "add", &format!("{a_ip}/24"), "dev", &va])
            && ip(&["-n", &b, "addr", "add", &format!("{b_ip}/24"), "dev", &vb])
            && ["lo", va.as_str()].iter().all(|d| ip(&["-n", &a, "link", "set", d, "up"]))
            && ["lo", vb.as_str()].iter().all(|d| ip(&["-n", &b, "link", "set", d, "up"]));
        ok.then_some(hosts)
    }

    /// Takes host b's end of the link down (or up again).
    fn link_b(&self, up: bool) {
        let dev = format!("gbvb{}", self.b.trim_start_matches("gb-b-"));
        assert!(ip(&["-n", &self.b, "link", "set", &dev, if up { "up" } else { "down" }]));
    }

    /// `GET url` from inside host a.
    fn get_from_a(&self, url: &str) -> Option<Value> {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.a, "curl", "-s", "--max-time", "2", url])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.a]);
        ip(&["netns", "del", &self.b]);
    }
}

#[tokio::test]
async fn across_hosts_a_cut_link_is_detected_like_a_crash_and_restoring_it_heals() {
    let Some(hosts) = Hosts::new() else {
        skip("cannot create network namespaces here (needs root and iproute2)");
        return;
    };
    let registry_url = format!("http://{}:3000", hosts.a_ip);
    let _registry = Proc::start_in(&hosts.a, &["registry", "--addr", &format!("{}:3000", hosts.a_ip)], false);
    let any_port = |ip: &str| format!("{ip}:0");
    let watcher = Proc::start_in(
        &hosts.a,
        &[
            "stub",
            "--name",
            "Watcher",
            "--requires",
            "Worker",
            "--registry-url",
            &registry_url,
            "--addr",
            &any_port(&hosts.a_ip),
        ],
        true,
    );
    let worker = Proc::start_in(
        &hosts.b,
        &["stub", "--name", "Worker", "--registry-url", &registry_url, "--addr", &any_port(&hosts.b_ip)],
        true,
    );
    assert!(worker.url.starts_with(&format!("http://{}:", hosts.b_ip)), "registered by its own host's address");
    let watched = || {
        hosts
            .get_from_a(&format!("{}/providers", watcher.url))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|p| p["Name"] == "Worker")
            .filter_map(|p| p["URL"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    eventually(LIMIT, "the watcher on host a knows the worker on host b", || watched() == vec![worker.url.clone()])
        .await;

    hosts.link_b(false);
    eventually(LIMIT, "the cut is detected and the watcher told", || watched().is_empty()).await;

    hosts.link_b(true);
    eventually(LIMIT, "the worker is re-added once reachable", || watched() == vec![worker.url.clone()]).await;
}
