//! Registry figures: crash → every dependent updated (with sessions, and by
//! probes alone), registration → patch latency, and the cost of probing
//! 1,000 services every second.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use gradebook_runtime::ServiceSpec;
use gradebook_tests::plain::PlainService;
use gradebook_tests::process::{Proc, Signal, wait_listening};
use gradebook_tests::{TestService, eventually, free_port};
use serde_json::json;

use crate::{Row, cpu_seconds, percentiles, row, rss_mb};

const DEPENDENTS: usize = 5;
const TRIALS: usize = 30;

pub async fn run() -> Vec<Row> {
    let mut rows = vec![];
    let addr = format!("127.0.0.1:{}", free_port());
    let registry = Proc::start(&["registry", "--addr", &addr], false);
    wait_listening(&addr, Duration::from_secs(10)).await;
    let url = format!("http://{addr}");

    let dependents: Vec<TestService> = (0..DEPENDENTS)
        .map(|_| TestService::spawn(ServiceSpec::new("Dependent", url.clone()).requires(&["Target"])))
        .collect();
    for session in [true, false] {
        let mut samples = vec![];
        for _ in 0..TRIALS {
            let mut args = vec!["stub", "--name", "Target", "--registry-url", &url];
            if !session {
                args.push("--no-session");
            }
            let mut target = Proc::start(&args, true);
            eventually(Duration::from_secs(5), "every dependent knows the target", || {
                dependents.iter().all(|d| d.providers("Target") == vec![target.url.clone()])
            })
            .await;
            // Let the trial start anywhere within the probe cycle.
            tokio::time::sleep(Duration::from_millis(rand_ms(500))).await;
            let killed = Instant::now();
            target.kill9();
            while dependents.iter().any(|d| !d.providers("Target").is_empty()) {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.push(killed.elapsed());
        }
        let how = if session { "runtime service (session + probes)" } else { "original protocol (probes alone)" };
        rows.push(row(format!("kill -9 → all {DEPENDENTS} dependents updated, {how}"), percentiles(&mut samples)));
    }

    // A hung service (SIGSTOP: accepts connections, never answers) and a
    // graceful stop (SIGTERM: deregisters), each until every dependent knows.
    for (signal, what, trials) in [
        (Signal::SIGSTOP, "SIGSTOP (hung) → all dependents updated", 6),
        (Signal::SIGTERM, "SIGTERM → all dependents updated", TRIALS),
    ] {
        let mut samples = vec![];
        for _ in 0..trials {
            let target = Proc::start(&["stub", "--name", "Target", "--registry-url", &url], true);
            eventually(Duration::from_secs(5), "every dependent knows the target", || {
                dependents.iter().all(|d| d.providers("Target") == vec![target.url.clone()])
            })
            .await;
            tokio::time::sleep(Duration::from_millis(rand_ms(500))).await;
            let sent = Instant::now();
            target.signal(signal);
            while dependents.iter().any(|d| !d.providers("Target").is_empty()) {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            samples.push(sent.elapsed());
            if signal == Signal::SIGSTOP {
                target.signal(Signal::SIGCONT);
            }
        }
        rows.push(row(what, percentiles(&mut samples)));
    }

    // Registration → patch at a dependent.
    let dependent = PlainService::start("Watcher").await;
    dependent.register(&url, json!(["Fresh"])).await;
    let provider = PlainService::start("Fresh").await;
    let client = reqwest::Client::new();
    let mut samples = vec![];
    for i in 0..TRIALS {
        let before = dependent.timed_patches().len();
        let body = json!({
            "ServiceName": "Fresh",
            "ServiceURL": format!("{}/{i}", provider.url),
            "HeartbeatURL": format!("{}/heartbeat", provider.url),
        });
        let sent = Instant::now();
        client.post(format!("{url}/services")).json(&body).send().await.unwrap();
        loop {
            let patches = dependent.timed_patches();
            if patches.len() > before {
                samples.push(patches[before].0.duration_since(sent));
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    rows.push(row("registration → dependent patched", percentiles(&mut samples)));
    drop(registry);

    rows.push(probing_cost().await);
    rows
}

fn rand_ms(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() % max
}

/// A registry probing 1,000 services every second: its CPU share and RSS.
async fn probing_cost() -> Row {
    const SERVICES: usize = 1000;
    let addr = format!("127.0.0.1:{}", free_port());
    let registry = Proc::start(&["registry", "--addr", &addr, "--probe-interval", "1s"], false);
    wait_listening(&addr, Duration::from_secs(10)).await;
    let url = format!("http://{addr}");
    // One server answers every service's heartbeat at its own path.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/svc/{i}/heartbeat", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    for i in 0..SERVICES {
        let body = json!({
            "ServiceName": format!("Service{}", i % 50),
            "ServiceURL": format!("{base}/svc/{i}"),
            "HeartbeatURL": format!("{base}/svc/{i}/heartbeat"),
        });
        let r = client.post(format!("{url}/services")).json(&body).send().await.unwrap();
        assert!(r.status().is_success());
    }
    // Settle, then measure over a window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = registry.child.id();
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_mb(pid);
    let list: Vec<serde_json::Value> =
        client.get(format!("{url}/services")).send().await.unwrap().json().await.unwrap();
    let passing = list.iter().filter(|s| s["State"] == "passing").count();
    row(
        format!("registry with {SERVICES} services probed every 1 s"),
        format!("{share:.1} % of one core, RSS {rss:.1} MB ({passing} passing)"),
    )
}
