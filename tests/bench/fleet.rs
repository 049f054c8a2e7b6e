//! A registry with a large fleet: thousands of services in names of several
//! instances each, every name requiring the next. One server in this process
//! plays the whole fleet (each service answers its heartbeat and takes its
//! patches at its own path), so the registry's side is measured alone:
//! registering, steady probing, and how fast one change reaches its
//! dependents.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use futures::StreamExt;
use gradebook_tests::free_port;
use gradebook_tests::process::{Proc, wait_listening};
use serde_json::json;

use crate::{Row, cpu_seconds, percentiles, row, rss_mb};

/// How many registrations are in flight at once while the fleet registers.
const CONCURRENCY: usize = 64;
/// Changes timed after the fleet settles (one addition and one removal each).
const CHANGES: usize = 100;

pub async fn run() -> Vec<Row> {
    let mut rows = vec![];
    // BENCH_FLEET=1000x10 (or 1000x10+sessions) runs that shape only, to
    // profile it, say.
    let shapes = match std::env::var("BENCH_FLEET").ok().and_then(|s| shape(&s)) {
        Some(one) => vec![one],
        None => vec![(100, 10, false), (1000, 10, false), (1000, 10, true), (100, 100, false)],
    };
    for (names, instances, sessions) in shapes {
        rows.extend(fleet(names, instances, sessions).await);
    }
    rows
}

/// `NAMESxINSTANCES`, with `+sessions` when every service holds one.
fn shape(s: &str) -> Option<(usize, usize, bool)> {
    let (size, sessions) = s.strip_suffix("+sessions").map_or((s, false), |size| (size, true));
    let (names, instances) = size.split_once('x')?;
    Some((names.parse().ok()?, instances.parse().ok()?, sessions))
}

/// What the fleet's server saw.
#[derive(Default)]
struct Seen {
    patches: AtomicU64,
    /// While a change is timed: the URL it is about, and when each
    /// dependent (by service index) heard of it.
    watching: Mutex<Option<(String, Arrivals)>>,
}

type Arrivals = Vec<(usize, Instant)>;

async fn patch(State(seen): State<Arc<Seen>>, Path(i): Path<usize>, body: Bytes) -> &'static str {
    seen.patches.fetch_add(1, Ordering::Relaxed);
    let mut watching = seen.watching.lock().unwrap();
    if let Some((marker, arrivals)) = watching.as_mut() {
        let needle = format!("\"{marker}\"");
        if body.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            arrivals.push((i, Instant::now()));
        }
    }
    "ok"
}

fn registration(base: &str, i: usize, names: usize, instances: usize) -> serde_json::Value {
    let name = i / instances;
    json!({
        "ServiceName": format!("Name{name}"),
        "ServiceURL": format!("{base}/svc/{i}"),
        "RequiredServices": [format!("Name{}", (name + 1) % names)],
        "ServiceUpdateURL": format!("{base}/svc/{i}/update"),
        "HeartbeatURL": format!("{base}/svc/{i}/heartbeat"),
    })
}

/// Opens a session for every service, as services on our runtime do
/// (upgraded off HTTP). They start over ten seconds, as a fleet starting up
/// would, not all in the same millisecond. Returns the tasks holding them.
async fn hold_sessions(registry: &str, base: &str, services: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::new();
    let mut held = Vec::with_capacity(services);
    for batch in (0..services).collect::<Vec<_>>().chunks(services.div_ceil(1000)) {
        for &i in batch {
            let session = client
                .post(format!("{registry}/sessions"))
                .query(&[("url", format!("{base}/svc/{i}"))])
                .header("connection", "upgrade")
                .header("upgrade", "gradebook-session");
            held.push(tokio::spawn(async move {
                let response = match session.send().await {
                    Ok(r) => r,
                    Err(e) => return eprintln!("session {i}: {e:?}"),
                };
                let status = response.status();
                if status != 101 {
                    return eprintln!("session {i}: {status} {}", response.text().await.unwrap_or_default());
                }
                let Ok(mut io) = response.upgrade().await else { return };
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut io, &mut vec![]).await;
            }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    held
}

async fn fleet(names: usize, instances: usize, sessions: bool) -> Vec<Row> {
    let services = names * instances;
    let with = if sessions { ", each holding a session" } else { "" };
    let label = format!("{services} services ({names} names × {instances}{with})");
    let addr = format!("127.0.0.1:{}", free_port());
    let cap = (services + 100).to_string();
    let registry = Proc::start(
        &["registry", "--addr", &addr, "--probe-interval", "1s", "--max-registrations", &cap, "--warmup", "0s"],
        false,
    );
    wait_listening(&addr, Duration::from_secs(10)).await;
    let url = format!("http://{addr}");
    let pid = registry.child.id();

    let seen = Arc::new(Seen::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/svc/{i}/heartbeat", get(|| async { "ok" }))
        .route("/svc/{i}/update", post(patch))
        .with_state(seen.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
    let started = Instant::now();
    let failed = futures::stream::iter(0..services)
        .map(|i| {
            let (client, body, url) = (client.clone(), registration(&base, i, names, instances), url.clone());
            async move {
                let r = client.post(format!("{url}/services")).json(&body).send().await;
                !r.is_ok_and(|r| r.status().is_success())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let took = started.elapsed();
    assert_eq!(failed, 0, "every registration is accepted");
    let cpu_registering = cpu_seconds(pid);
    let held = if sessions { hold_sessions(&url, &base, services).await } else { vec![] };
    let statuses = || async {
        let list: Vec<serde_json::Value> =
            client.get(format!("{url}/services")).send().await.unwrap().json().await.unwrap();
        let passing = list.iter().filter(|s| s["State"] == "passing").count();
        let holding = list.iter().filter(|s| s["Session"] == true).count();
        (passing, holding)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while sessions && statuses().await.1 < services {
        if Instant::now() > deadline {
            let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
            let lines: Vec<&str> = metrics.lines().filter(|l| l.starts_with("gradebook_registry")).collect();
            panic!("not every session is held within 30 s: {:?}\n{}", statuses().await, lines.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Settle (patches still in flight land), then measure the steady state.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let patches = seen.patches.load(Ordering::Relaxed);
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let share = (cpu_seconds(pid) - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = rss_mb(pid);
    let (passing, holding) = statuses().await;
    assert_eq!(holding, if sessions { services } else { 0 }, "sessions held");
    assert_eq!(passing, services + 1, "every service (and the registry) is passing");

    // One change at a time: a new instance of a random name, then its
    // removal, each timed until every dependent has been patched.
    let mut samples = vec![];
    for trial in 0..CHANGES {
        let name = (trial * 7919) % names;
        let extra = format!("{base}/extra/{trial}");
        let dependents = instances; // the instances of the name before it
        let body = json!({
            "ServiceName": format!("Name{name}"),
            "ServiceURL": extra,
            "HeartbeatURL": format!("{base}/svc/0/heartbeat"),
        });
        for add in [true, false] {
            *seen.watching.lock().unwrap() = Some((extra.clone(), vec![]));
            let sent = Instant::now();
            let r = if add {
                client.post(format!("{url}/services")).json(&body).send().await
            } else {
                client.delete(format!("{url}/services")).body(extra.clone()).send().await
            };
            assert!(r.is_ok_and(|r| r.status().is_success()));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let last = {
                    let watching = seen.watching.lock().unwrap();
                    let arrivals = &watching.as_ref().unwrap().1;
                    let mut heard: Vec<usize> = arrivals.iter().map(|(i, _)| *i).collect();
                    heard.sort_unstable();
                    heard.dedup();
                    (heard.len() >= dependents).then(|| arrivals.iter().map(|(_, t)| *t).max().unwrap())
                };
                if let Some(last) = last {
                    samples.push(last.duration_since(sent));
                    break;
                }
                if Instant::now() >= deadline {
                    let heard: std::collections::BTreeSet<usize> =
                        seen.watching.lock().unwrap().as_ref().unwrap().1.iter().map(|(i, _)| *i).collect();
                    let metrics = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
                    let failures: Vec<&str> = metrics.lines().filter(|l| l.contains("outcome=\"failed\"")).collect();
                    panic!("change {trial} (add: {add}): only {heard:?} heard of it within 10 s; {failures:?}");
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }
    *seen.watching.lock().unwrap() = None;
    held.iter().for_each(|h| h.abort());
    server.abort();
    drop(registry);
    vec![
        row(
            format!("registry, {label}: registering"),
            format!(
                "{:.1} s ({CONCURRENCY} at a time), {:.1} CPU s, {patches} patches sent",
                took.as_secs_f64(),
                cpu_registering
            ),
        ),
        row(
            format!("registry, {label}: probed every {}", if sessions { "2 s (session holders)" } else { "1 s" }),
            format!("{share:.1} % of one core, RSS {rss:.0} MB ({passing} passing)"),
        ),
        row(format!("registry, {label}: one change → all {instances} dependents patched"), percentiles(&mut samples)),
    ]
}
