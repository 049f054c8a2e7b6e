//! The central log service and log shipping, on real sockets and processes.

use std::time::Duration;

use futures::StreamExt;
use gradebook::log::{StoreConfig, SyncMode};
use gradebook::registry::Config;
use gradebook_runtime::logship::{Destination, LogBuffer};
use gradebook_shared::log::{Level, NewLogRecord};
use gradebook_tests::process::Proc;
use gradebook_tests::{TempDir, TestLog, TestRegistry, eventually_async};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(10);

fn store(dir: &TempDir) -> StoreConfig {
    StoreConfig { dir: dir.path().to_path_buf(), ..StoreConfig::default() }
}

fn record(service: &str, message: &str) -> NewLogRecord {
    NewLogRecord { service: service.into(), level: Level::Info, message: message.into(), timestamp: None, fields: None }
}

async fn post_text(url: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/log"))
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn lines_from_the_registry_and_a_service_reach_the_log_file_and_queries() {
    let dir = TempDir::new("log-e2e");
    let (_registry, registry_addr) =
        Proc::start_listening(|addr| vec!["registry".into(), "--addr".into(), addr.into()]).await;
    let registry_url = format!("http://{registry_addr}");
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let (_log, log_addr) = Proc::start_listening(|addr| {
        ["log", "--addr", addr, "--dir", &dir_arg, "--registry-url", &registry_url].map(str::to_owned).to_vec()
    })
    .await;
    let log = format!("http://{log_addr}");
    let mut stub = Proc::start(&["stub", "--name", "Worker", "--registry-url", &registry_url], true);

    eventually_async(LIMIT, "the registry's and the worker's lines are queryable", || async {
        let q = |s: &str| reqwest::get(format!("{log}/log?service={s}"));
        let registry: Vec<serde_json::Value> = q("Registry").await.unwrap().json().await.unwrap();
        let worker: Vec<serde_json::Value> = q("Worker").await.unwrap().json().await.unwrap();
        registry.iter().any(|r| r["message"] == "registered" && r["fields"]["service"] == "Worker")
            && worker.iter().any(|r| r["message"] == "registered with the registry")
    })
    .await;

    // A crash shows up in the registry's lines, with its cause.
    stub.kill9();
    eventually_async(LIMIT, "the removal and its cause are logged", || async {
        let found: Vec<serde_json::Value> =
            reqwest::get(format!("{log}/log?service=Registry&level=warn&contains=removed"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        found
            .iter()
            .any(|r| r["fields"]["service"] == "Worker" && r["fields"]["cause"].as_str().is_some_and(|c| !c.is_empty()))
    })
    .await;
    let file = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    assert!(file.lines().any(|l| l.contains("\"Worker\"")), "the lines are in the file too");
}

#[tokio::test]
async fn records_shipped_while_the_log_service_is_down_arrive_in_order_later() {
    let dir = TempDir::new("log-outage");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, store(&dir));
    let addr = log.addr;
    let url = log.url.clone();

    let buffer = LogBuffer::new("Shipper", Level::Info, 10_000);
    let destination: Destination = {
        let url = url.clone();
        std::sync::Arc::new(move || vec![url.clone()])
    };
    let cancel = CancellationToken::new();
    let shipper = tokio::spawn(buffer.clone().ship(destination, reqwest::Client::new(), cancel.clone()));
    for i in 0..100 {
        buffer.push(record("Shipper", &format!("line {i}")));
    }
    eventually_async(LIMIT, "the first lines arrive", || async { log_lines(&url).await.len() == 100 }).await;

    log.stop();
    for i in 100..300 {
        buffer.push(record("Shipper", &format!("line {i}")));
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the shipper fails and backs off meanwhile
    assert!(buffer.len() >= 200, "held while the log service is down");

    let _log = TestLog::spawn_at(addr, &registry.url, store(&dir));
    eventually_async(LIMIT, "everything arrives", || async { log_lines(&url).await.len() == 300 }).await;
    let messages = log_lines(&url).await;
    let expected: Vec<String> = (0..300).map(|i| format!("line {i}")).collect();
    assert_eq!(messages, expected, "nothing lost, order kept");
    cancel.cancel();
    shipper.await.unwrap();
}

async fn log_lines(url: &str) -> Vec<String> {
    let records: Vec<serde_json::Value> =
        reqwest::get(format!("{url}/log?service=Shipper&limit=1000")).await.unwrap().json().await.unwrap();
    records.iter().map(|r| r["message"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_line_acknowledged_survives_a_kill_9_sent_the_moment_its_200_arrives() {
    // Each try is one process: POST one line, SIGKILL as soon as the 200 is
    // in. A store that answers before the line is written loses it. (1,000
    // tries take about 20 s; a query answers at most 1,000 records.)
    const TRIES: usize = 1000;
    let dir = TempDir::new("log-kill");
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let args = |addr: &str| {
        ["log", "--addr", addr, "--dir", &dir_arg, "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"]
            .map(str::to_owned)
            .to_vec()
    };
    let client = reqwest::Client::new();
    let mut acknowledged = vec![];
    for i in 0..TRIES {
        let (mut log, addr) = Proc::start_listening(args).await;
        let line = format!("entry {i}");
        let answer = client
            .post(format!("http://{addr}/log"))
            .header("content-type", "text/plain")
            .body(format!("[Acked] - {line}"))
            .send()
            .await
            .unwrap();

        log.kill9();

        assert_eq!(answer.status(), 200, "try {i}");
        acknowledged.push(line);
    }

    let (_log, addr) = Proc::start_listening(args).await;
    let records: Vec<serde_json::Value> =
        reqwest::get(format!("http://{addr}/log?service=Acked&limit=1000")).await.unwrap().json().await.unwrap();
    let kept: Vec<&str> = records.iter().filter_map(|r| r["message"].as_str()).collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|a| !kept.contains(&a.as_str())).collect();
    assert!(lost.is_empty(), "{} of {TRIES} acknowledged lines lost: {lost:?}", lost.len());
    assert_eq!(kept, acknowledged, "each kept once, in order");
}

#[tokio::test]
async fn a_message_with_newlines_cannot_forge_another_entry() {
    let dir = TempDir::new("log-inject");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, store(&dir));
    let forged =
        r#"{"seq":999,"service":"Registry","level":"error","message":"forged","timestamp":"2026-01-01T00:00:00Z"}"#;
    let body = format!("[Evil] - innocent\n{forged}\n");

    assert_eq!(post_text(&log.url, &body).await.status(), 200);

    let evil = log.query("service=Evil").await;
    assert_eq!(evil.len(), 1);
    assert!(evil[0].message.contains(forged), "kept as part of the one message");
    assert!(log.query("contains=forged&service=Registry").await.is_empty());
    log.stop();
    let file = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
    assert!(file.lines().all(|l| !l.starts_with(r#"{"seq":999"#)));
}

#[tokio::test]
async fn queries_filter_by_service_level_time_text_and_limit() {
    let dir = TempDir::new("log-query");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, store(&dir));
    let batch = json!([
        {"service": "A", "level": "debug", "message": "one", "timestamp": "2020-01-01T00:00:00Z"},
        {"service": "A", "level": "warn", "message": "Two apples"},
        {"service": "B", "level": "error", "message": "three apples", "fields": {"n": 3}},
        {"service": "A", "level": "info", "message": "four"},
    ]);
    let r = reqwest::Client::new().post(format!("{}/log", log.url)).json(&batch).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let messages =
        |records: Vec<gradebook_shared::log::LogRecord>| records.into_iter().map(|r| r.message).collect::<Vec<_>>();
    assert_eq!(messages(log.query("service=A").await), ["one", "Two apples", "four"], "newest last");
    assert_eq!(messages(log.query("level=warn").await), ["Two apples", "three apples"]);
    assert_eq!(messages(log.query("contains=APPLES").await), ["Two apples", "three apples"]);
    assert_eq!(messages(log.query("service=A&since=2021-01-01T00:00:00Z").await), ["Two apples", "four"]);
    assert_eq!(messages(log.query("service=A&limit=1").await), ["four"]);
    let all = log.query("").await;
    assert_eq!(messages(log.query(&format!("after={}", all[1].seq)).await), ["three apples", "four"]);
    assert_eq!(all[2].fields.as_ref().unwrap()["n"], 3);
}

#[tokio::test]
async fn bad_input_gets_a_clear_json_error_and_nothing_is_stored() {
    let dir = TempDir::new("log-bad");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, store(&dir));
    let client = reqwest::Client::new();
    let post = |ct: &'static str, body: String| {
        client.post(format!("{}/log", log.url)).header("content-type", ct).body(body).send()
    };
    let cases: Vec<(&str, &'static str, String, u16)> = vec![
        ("empty text", "text/plain", "  \n".into(), 400),
        ("malformed JSON", "application/json", "{oops".into(), 400),
        (
            "unknown level",
            "application/json",
            json!({"service": "A", "level": "loud", "message": "m"}).to_string(),
            400,
        ),
        ("missing message", "application/json", json!({"service": "A"}).to_string(), 400),
        (
            "bad timestamp",
            "application/json",
            json!({"service": "A", "message": "m", "timestamp": "yesterday"}).to_string(),
            400,
        ),
        ("empty batch", "application/json", "[]".into(), 400),
        (
            "one bad record in a batch",
            "application/json",
            json!([{"service": "A", "message": "ok"}, {"service": "A"}]).to_string(),
            400,
        ),
        // Just over the limit: small enough to be fully sent before the answer.
        ("oversized", "text/plain", "x".repeat(gradebook::log::BODY_LIMIT + 1024), 413),
        ("unsupported type", "image/png", "x".into(), 415),
    ];
    for (what, ct, body, status) in cases {
        let r = post(ct, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body: serde_json::Value = r.json().await.unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}");
    }
    for query in ["level=loud", "since=yesterday", "after=-1"] {
        let r = reqwest::get(format!("{}/log?{query}", log.url)).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
    }
    assert!(log.query("service=A").await.is_empty(), "nothing invalid was stored");
}

#[tokio::test]
async fn the_live_stream_delivers_new_matching_entries() {
    let dir = TempDir::new("log-sse");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, store(&dir));
    let response = reqwest::get(format!("{}/log/stream?service=Watched", log.url)).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();

    post_text(&log.url, "[Other] - not for us").await;
    post_text(&log.url, "[Watched] - hello live").await;

    let mut seen = String::new();
    let read = async {
        while !seen.contains("hello live") {
            let chunk = body.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(LIMIT, read).await.expect("the entry is streamed");
    assert!(seen.contains("event: log"));
    assert!(!seen.contains("not for us"));
}

#[tokio::test]
async fn files_rotate_by_size_and_history_survives_a_restart() {
    let dir = TempDir::new("log-rotate");
    let registry = TestRegistry::spawn(Config::default());
    let config = StoreConfig { max_file_bytes: 4096, keep_files: 2, ..store(&dir) };
    let log = TestLog::spawn(&registry.url, config.clone());
    for i in 0..200 {
        post_text(&log.url, &format!("[Rot] - entry number {i} with some padding to fill the file")).await;
    }
    log.stop();
    let mut files: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["log.1.jsonl", "log.2.jsonl", "log.jsonl"], "two rotated files kept");
    assert!(std::fs::metadata(dir.path().join("log.1.jsonl")).unwrap().len() <= 4096);

    let log = TestLog::spawn(&registry.url, config);
    let kept = log.query("service=Rot&limit=1000").await;
    assert!(!kept.is_empty() && kept.len() < 200, "older files were deleted");
    assert_eq!(kept.last().unwrap().message, "entry number 199 with some padding to fill the file");
    assert!(kept.windows(2).all(|w| w[0].seq < w[1].seq));
}

#[tokio::test]
async fn log_stats_shows_posted_lines_fsynced_in_batches_within_the_flush_interval() {
    // A long interval: the bound checked is the store's own, with room to
    // spare for a slow disk's fsync.
    let flush_interval = Duration::from_secs(2);
    let dir = TempDir::new("log-fsync");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, StoreConfig { sync: SyncMode::Interval, flush_interval, ..store(&dir) });
    const LINES: u64 = 20;
    for i in 0..LINES {
        assert_eq!(post_text(&log.url, &format!("[Synced] - line {i}")).await.status(), 200);
    }

    let stats = || async {
        let r = reqwest::get(format!("{}/log/stats", log.url)).await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()
    };
    eventually_async(flush_interval + LIMIT, "the lines are fsync'd", || async {
        stats().await["syncs"].as_u64().unwrap() >= 1
    })
    .await;
    let stats = stats().await;
    assert_eq!(stats["records_written"], LINES, "{stats}");
    assert!(stats["syncs"].as_u64().unwrap() < LINES, "one fsync covers many lines: {stats}");
    let delay = stats["max_sync_delay_ms"].as_f64().expect("max_sync_delay_ms is a number");
    assert!(delay > 0.0, "an fsync after a write waited some time: {stats}");
    assert!(delay <= flush_interval.as_secs_f64() * 1000.0, "fsync'd within the flush interval: {stats}");
}
