//! Log figures: ingestion of single text lines and of JSON batches, beside the
//! original design (open, append, close the file for every line) and a bare
//! hello-world, and the observed ack-to-fsync delay.

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use gradebook_tests::TempDir;
use gradebook_tests::process::{Proc, wait_listening};

use crate::load::{hello_world, sampled_halfway, wrk};
use crate::{Row, row};

pub async fn run() -> Vec<Row> {
    let mut rows = vec![];
    let hello = hello_world().await;
    let limit = wrk(&hello, Some(("text/plain", "hello")));
    rows.push(row("hello-world POST (machine limit)", limit.to_string()));

    let original_dir = TempDir::new("bench-original-log");
    let original = original_design(original_dir.path().join("distributed.log")).await;
    let line = "[GradingService] - Student 3 got 87 on Quiz 4";
    let baseline = wrk(&original, Some(("text/plain", line)));
    rows.push(row("original design: POST one text line (open/append/close)", baseline.to_string()));

    let dir = TempDir::new("bench-log");
    let addr = format!("127.0.0.1:{}", gradebook_tests::free_port());
    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let _log = Proc::start(
        &["log", "--addr", &addr, "--dir", &dir_arg, "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"],
        false,
    );
    wait_listening(&addr, Duration::from_secs(10)).await;
    let pid = _log.child.id();
    let idle_rss = crate::rss_mb(pid);
    let url = format!("http://{addr}/log");
    let (single, loaded_rss) = sampled_halfway(|| wrk(&url, Some(("text/plain", line))), || crate::rss_mb(pid));
    rows.push(row("log service RSS idle / under single-line load", format!("{idle_rss:.0} / {loaded_rss:.0} MB")));
    rows.push(row(
        "log service: POST one text line (durable)",
        format!("{single}, {:.2}× the original", single.rps / baseline.rps),
    ));
    rows.push(row("log service: longest ack→fsync delay, single lines", sync_delay(&addr).await));
    let batch: Vec<serde_json::Value> = (0..100)
        .map(|i| serde_json::json!({"service": "Bench", "level": "info", "message": format!("record {i} of a batch")}))
        .collect();
    let batched = wrk(&url, Some(("application/json", &serde_json::to_string(&batch).unwrap())));
    rows.push(row(
        "log service: POST JSON batches of 100",
        format!("{batched} = {:.0} records/s", batched.rps * 100.0),
    ));
    rows.push(row("log service: longest ack→fsync delay, after the batches too", sync_delay(&addr).await));
    rows
}

async fn sync_delay(addr: &str) -> String {
    let stats: serde_json::Value =
        reqwest::get(format!("http://{addr}/log/stats")).await.unwrap().json().await.unwrap();
    format!("{} ms over {} fsyncs", stats["max_sync_delay_ms"], stats["syncs"])
}

/// The original design's log endpoint: every line opens the file, appends
/// and closes it (and, like the original, never fsyncs).
async fn original_design(path: std::path::PathBuf) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/log", listener.local_addr().unwrap());
    let app = Router::new().route(
        "/log",
        post(move |body: String| {
            let path = path.clone();
            async move {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
                f.write_all(body.as_bytes()).unwrap();
                f.write_all(b"\n").unwrap();
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
