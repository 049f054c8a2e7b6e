//! Log figures: ingestion of single text lines and of JSON batches, beside the
//! original design (open, append, close the file for every line) and a bare
//! hello-world, fsync before the ack beside `--sync interval`, and reading
//! back a million records: the export beside `cat` of the files, a query by
//! `after=` into the middle beside the newest 100, and the export's memory.

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
        "log service: POST one text line (fsync before the ack)",
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

    let interval_dir = TempDir::new("bench-log-interval");
    let (_interval, interval_addr) = Proc::start_listening(|addr| {
        let dir = interval_dir.path().to_str().unwrap();
        ["log", "--addr", addr, "--dir", dir, "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"]
            .into_iter()
            .chain(["--sync", "interval"])
            .map(str::to_owned)
            .collect()
    })
    .await;
    let unsynced = wrk(&format!("http://{interval_addr}/log"), Some(("text/plain", line)));
    rows.push(row(
        "log service: POST one text line, --sync interval (ack before fsync)",
        format!("{unsynced}; fsync before the ack is {:.2}× of it", single.rps / unsynced.rps),
    ));
    rows.extend(read_back().await);
    rows
}

/// Records in the read-back figures.
const MILLION: u64 = 1_000_000;

/// Writes `MILLION` records as the store does into 4 files; their paths.
fn million_records(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let per_file = MILLION / 4;
    let names = ["log.3.jsonl", "log.2.jsonl", "log.1.jsonl", "log.jsonl"];
    names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let path = dir.join(name);
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for seq in n as u64 * per_file + 1..=(n as u64 + 1) * per_file {
                let record = gradebook_shared::log::LogRecord {
                    seq,
                    service: "Bench".into(),
                    level: gradebook_shared::log::Level::Info,
                    message: format!("record {seq} of a million, with a little padding"),
                    timestamp: "2026-01-01T00:00:00.000000Z".into(),
                    fields: None,
                };
                serde_json::to_writer(&mut out, &record).unwrap();
                out.write_all(b"\n").unwrap();
            }
            out.flush().unwrap();
            path
        })
        .collect()
}

/// A million records read back: the export against `cat`, its memory, and
/// a mid-log `after=` query against the newest 100.
async fn read_back() -> Vec<Row> {
    let mut rows = vec![];
    let dir = TempDir::new("bench-log-million");
    let files = million_records(dir.path());
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    let started = std::time::Instant::now();
    let cat = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cat {} > /dev/null", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")))
        .status()
        .unwrap();
    assert!(cat.success());
    let cat_time = started.elapsed();

    let dir_arg = dir.path().to_str().unwrap().to_owned();
    let (log, addr) = Proc::start_listening(|addr| {
        ["log", "--addr", addr, "--dir", &dir_arg, "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"]
            .into_iter()
            .chain(["--max-file-bytes", "1000000000", "--keep-files", "4", "--memory-records", "1000"])
            .map(str::to_owned)
            .collect()
    })
    .await;
    // The port opens before the store has read its files: the first answer
    // says it has.
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let pid = log.child.id();
    let before_rss = crate::rss_mb(pid);
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = std::thread::spawn({
        let sampling = sampling.clone();
        move || {
            let mut max = 0f64;
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                max = max.max(crate::rss_mb(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            max
        }
    });
    // curl to /dev/null, as cat is: the figure is the service's, not a
    // client's parsing.
    let started = std::time::Instant::now();
    let curl = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{size_download}"])
        .arg(format!("http://{addr}/log/export"))
        .output()
        .expect("curl is installed");
    let export_time = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let max_rss = sampler.join().unwrap();
    let exported: u64 = String::from_utf8_lossy(&curl.stdout).trim().parse().unwrap_or(0);
    assert_eq!(exported, bytes, "the export holds every record, as stored");
    let mb = bytes as f64 / 1e6;
    rows.push(row(
        "log export of 1,000,000 records vs cat of the files to /dev/null",
        format!(
            "{:.0} MB/s vs {:.0} MB/s = {:.2}× of cat (goal ≥ 0.25)",
            mb / export_time.as_secs_f64(),
            mb / cat_time.as_secs_f64(),
            cat_time.as_secs_f64() / export_time.as_secs_f64()
        ),
    ));
    rows.push(row(
        "log service RSS before / at most during the export",
        format!("{before_rss:.0} / {max_rss:.0} MB (goal < 64 MB)"),
    ));

    let client = reqwest::Client::new();
    let timed = |query: String| {
        let client = client.clone();
        let addr = addr.clone();
        async move {
            const ROUNDS: u32 = 200;
            let started = std::time::Instant::now();
            for _ in 0..ROUNDS {
                let r = client.get(format!("http://{addr}/log?{query}")).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.bytes().await.unwrap();
            }
            started.elapsed() / ROUNDS
        }
    };
    let newest = timed("limit=100".into()).await;
    let middle = timed(format!("after={}&limit=100", MILLION / 2 + 17)).await;
    rows.push(row(
        "log query after= the middle of 1,000,000 records vs the newest 100",
        format!(
            "{:.2} ms vs {:.2} ms = {:.2}× (goal ≤ 2)",
            middle.as_secs_f64() * 1e3,
            newest.as_secs_f64() * 1e3,
            middle.as_secs_f64() / newest.as_secs_f64()
        ),
    ));
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
