//! The log read back and kept safe: cursors that page forward and backward
//! through every retained file, the export, bad cursors, and a full disk on
//! a real small file system.

use std::collections::BTreeSet;

use gradebook::log::StoreConfig;
use gradebook::registry::Config;
use gradebook_shared::log::LogRecord;
use gradebook_tests::process::Proc;
use gradebook_tests::{TempDir, TestLog, TestRegistry};

const RECORDS: usize = 3000;
const WRITERS: usize = 16;

fn paged_store(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        dir: dir.path().to_path_buf(),
        memory_records: 500,
        max_file_bytes: 100 * 1024,
        keep_files: 20,
        ..StoreConfig::default()
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url).await.unwrap()
}

async fn page(log: &str, query: &str) -> Vec<LogRecord> {
    let r = get(&format!("{log}/log?{query}")).await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

/// Posts `RECORDS` lines from `WRITERS` clients at once; the acknowledged
/// seqs.
async fn post_concurrently(log: &str) -> BTreeSet<u64> {
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, log) = (client.clone(), log.to_owned());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in (w..RECORDS).step_by(WRITERS) {
                    let r = client
                        .post(format!("{log}/log"))
                        .header("content-type", "text/plain")
                        .body(format!("[Pager] - record {i} from writer {w}, padded to fill files sooner"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    acked.push(r.json::<serde_json::Value>().await.unwrap()["last_seq"].as_u64().unwrap());
                }
                acked
            })
        })
        .collect();
    let mut acked = BTreeSet::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked
}

async fn forward_seqs(log: &str, limit: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let got = page(log, &format!("after={after}&limit={limit}")).await;
        let Some(last) = got.last() else { return seen };
        after = last.seq;
        seen.extend(got.iter().map(|r| r.seq));
    }
}

async fn backward_seqs(log: &str, limit: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut query = format!("limit={limit}");
    loop {
        let got = page(log, &query).await;
        let Some(first) = got.first() else { break };
        query = format!("before={}&limit={limit}", first.seq);
        seen.extend(got.iter().rev().map(|r| r.seq));
    }
    seen.reverse();
    seen
}

async fn export_seqs(log: &str, query: &str) -> Vec<u64> {
    let r = get(&format!("{log}/log/export?{query}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.unwrap();
    text.lines().map(|l| serde_json::from_str::<LogRecord>(l).unwrap().seq).collect()
}

async fn assert_every_record_once(log: &str, acked: &BTreeSet<u64>) {
    let expected: Vec<u64> = acked.iter().copied().collect();
    assert_eq!(expected.len(), RECORDS);
    assert_eq!(forward_seqs(log, 250).await, expected, "paging forward visits every record once, in order");
    assert_eq!(backward_seqs(log, 333).await, expected, "paging backward visits every record once, in order");
    assert_eq!(export_seqs(log, "").await, expected, "the export holds every record once, in order");
    assert_eq!(export_seqs(log, "service=Pager").await, expected, "a filtered export too");
    assert!(export_seqs(log, "service=Nobody").await.is_empty());
}

#[tokio::test]
async fn paging_forward_and_backward_visits_every_retained_record_once_before_and_after_a_restart() {
    let dir = TempDir::new("log-paging");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, paged_store(&dir));
    let acked = post_concurrently(&log.url).await;
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files >= 4, "the records span rotated files, beyond the memory window: {files} files");
    assert_every_record_once(&log.url, &acked).await;
    log.stop();

    let log = TestLog::spawn(&registry.url, paged_store(&dir));
    assert_every_record_once(&log.url, &acked).await;
    // Filters combine with the cursor: the first page after the middle.
    let middle = acked.iter().nth(RECORDS / 2).copied().unwrap();
    let got = page(&log.url, &format!("after={middle}&limit=5&service=Pager&contains=record")).await;
    let expected: Vec<u64> = acked.range(middle + 1..).take(5).copied().collect();
    assert_eq!(got.iter().map(|r| r.seq).collect::<Vec<_>>(), expected);
}

#[tokio::test]
async fn a_cursor_older_than_the_oldest_retained_record_answers_from_it_and_says_so() {
    let dir = TempDir::new("log-oldest");
    let registry = TestRegistry::spawn(Config::default());
    let config =
        StoreConfig { dir: dir.path().to_path_buf(), max_file_bytes: 4096, keep_files: 1, ..Default::default() };
    let log = TestLog::spawn(&registry.url, config);
    let client = reqwest::Client::new();
    for i in 0..200 {
        let body = format!("[Old] - entry number {i} with some padding to fill the file");
        client.post(format!("{}/log", log.url)).body(body).send().await.unwrap();
    }
    let r = get(&format!("{}/log?after=0&limit=5", log.url)).await;
    let oldest: u64 = r.headers()[gradebook::log::OLDEST_RETAINED].to_str().unwrap().parse().unwrap();
    let got: Vec<LogRecord> = r.json().await.unwrap();
    assert!(oldest > 1, "the oldest records were rotated away");
    assert_eq!(got[0].seq, oldest, "the page starts from the oldest retained record");
    let r = get(&format!("{}/log?after={oldest}&limit=5", log.url)).await;
    assert!(r.headers().get(gradebook::log::OLDEST_RETAINED).is_none(), "a retained cursor is not flagged");
}

#[tokio::test]
async fn a_time_range_with_until_and_since_selects_the_records_in_it() {
    let dir = TempDir::new("log-until");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, StoreConfig { dir: dir.path().to_path_buf(), ..Default::default() });
    let client = reqwest::Client::new();
    for (message, timestamp) in
        [("early", "2020-01-01T00:00:00Z"), ("mid", "2021-06-01T00:00:00Z"), ("late", "2023-01-01T00:00:00Z")]
    {
        let body = serde_json::json!({"service": "T", "message": message, "timestamp": timestamp});
        client.post(format!("{}/log", log.url)).json(&body).send().await.unwrap();
    }
    let got = page(&log.url, "since=2021-01-01T00:00:00Z&until=2022-01-01T00:00:00Z").await;
    assert_eq!(got.iter().map(|r| r.message.as_str()).collect::<Vec<_>>(), ["mid"]);
    let exported = export_seqs(&log.url, "until=2021-12-31T00:00:00Z").await;
    assert_eq!(exported.len(), 2);
}

#[tokio::test]
async fn a_bad_cursor_limit_or_time_range_gets_a_400_naming_its_field() {
    let dir = TempDir::new("log-bad-cursor");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, StoreConfig { dir: dir.path().to_path_buf(), ..Default::default() });
    let cases = [
        ("after=-1", "after"),
        ("after=x", "after"),
        ("before=1.5", "before"),
        ("before=0", "before"),
        ("after=1&before=5", "before"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=many", "limit"),
        ("since=yesterday", "since"),
        ("until=tomorrow", "until"),
        ("since=2022-01-01T00:00:00Z&until=2021-01-01T00:00:00Z", "until"),
    ];
    for path in ["/log", "/log/export"] {
        for (query, field) in cases {
            let r = get(&format!("{}{path}?{query}", log.url)).await;
            assert_eq!(r.status(), 400, "{path}?{query}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["field"], field, "{path}?{query}: {body}");
        }
    }
    assert!(page(&log.url, "").await.is_empty(), "nothing is stored");
}

/// A tmpfs of `size`, unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root).
    fn mount(size: &str) -> Option<Self> {
        let dir = TempDir::new("log-full-disk");
        let path = dir.path().to_str()?.to_owned();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path])
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Self { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_one_clear_503_keeps_every_acknowledged_record_and_recovers_without_a_restart() {
    let Some(disk) = SmallDisk::mount("2m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let dir = disk.dir.path().join("log");
    std::fs::create_dir_all(&dir).unwrap();
    let filler = disk.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1536 * 1024]).unwrap();
    let dir_arg = dir.to_str().unwrap().to_owned();
    let args = |addr: &str| {
        ["log", "--addr", addr, "--dir", &dir_arg, "--registry-url", "http://127.0.0.1:9"].map(str::to_owned).to_vec()
    };
    let (mut log, addr) = Proc::start_listening(args).await;
    let url = format!("http://{addr}");
    let client = reqwest::Client::new();
    let post = |i: usize| client.post(format!("{url}/log")).body(format!("[Full] - {i} {}", "x".repeat(1000))).send();
    let mut acked = BTreeSet::new();
    let mut refusal = None;
    for i in 0..2000 {
        let r = post(i).await.unwrap();
        if r.status() == 200 {
            acked.insert(r.json::<serde_json::Value>().await.unwrap()["last_seq"].as_u64().unwrap());
        } else {
            assert_eq!(r.status(), 503);
            refusal = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
    }
    let refusal = refusal.expect("the disk filled up");
    let message = refusal["error"].as_str().unwrap();
    assert_eq!(message.matches("could not be written").count(), 1, "the cause is said once: {message}");
    assert!(message.contains("No space left on device"), "{message}");

    std::fs::remove_file(&filler).unwrap();
    let r = post(9999).await.unwrap();
    assert_eq!(r.status(), 200, "writes are taken again once there is space");
    acked.insert(r.json::<serde_json::Value>().await.unwrap()["last_seq"].as_u64().unwrap());

    log.kill9();
    let (_log, addr) = Proc::start_listening(args).await;
    let r = get(&format!("http://{addr}/log/export?service=Full")).await;
    let text = r.text().await.unwrap();
    let kept: BTreeSet<u64> = text.lines().map(|l| serde_json::from_str::<LogRecord>(l).unwrap().seq).collect();
    assert_eq!(kept, acked, "every acknowledged record, and only those, survive a kill -9");
}
