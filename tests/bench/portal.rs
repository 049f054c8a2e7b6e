//! Portal figures: server-rendered `GET /students` and the JSON API's
//! `GET /api/students` (both through discovery to grading) beside grading's
//! own `GET /students`, and the release bundle.

use std::io::Write;
use std::time::Duration;

use gradebook_tests::TempDir;
use gradebook_tests::process::{Proc, wait_listening};

use crate::load::{InTurn, sampled_halfway, wrk};
use crate::{Row, row};

pub async fn run() -> Vec<Row> {
    let mut rows = vec![];
    let dir = TempDir::new("bench-portal");
    let port = |_: ()| format!("127.0.0.1:{}", gradebook_tests::free_port());
    let (registry, grading, portal) = (port(()), port(()), port(()));
    let registry_url = format!("http://{registry}");
    let _registry = Proc::start(&["registry", "--addr", &registry], false);
    wait_listening(&registry, Duration::from_secs(10)).await;
    let db = format!("sqlite://{}/grading.db", dir.path().display());
    let quiet = ["--registry-url", registry_url.as_str(), "--ship-level", "off"];
    let mut args = vec!["grading", "--addr", &grading, "--database-url", &db];
    args.extend(quiet);
    let _grading = Proc::start(&args, false);
    let portal_bin = gradebook_tests::process::binary().with_file_name("gradebook-portal");
    let mut portal_args = vec!["--addr", portal.as_str()];
    portal_args.extend(quiet);
    let _portal = std::process::Command::new(&portal_bin)
        .args(&portal_args)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(KillOnDrop)
        .expect("gradebook-portal is built (make release)");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !client.get(format!("http://{portal}/api/students")).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(tokio::time::Instant::now() < deadline, "the portal never reached grading");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pids = [("registry", _registry.child.id()), ("grading", _grading.child.id()), ("portal", _portal.0.id())];
    let rss = |pids: &[(&str, u32)]| {
        pids.iter().map(|(n, p)| format!("{n} {:.0} MB", crate::rss_mb(*p))).collect::<Vec<_>>().join(", ")
    };
    rows.push(row("RSS idle", rss(&pids)));
    let grading_rate = wrk(&format!("http://{grading}/students"), None);
    rows.push(row("grading GET /students (same run)", grading_rate.to_string()));
    // Under load: while wrk drives the portal (and through it grading).
    let page_url = format!("http://{portal}/students");
    let (page, loaded) = sampled_halfway(|| wrk(&page_url, None), || rss(&pids));
    rows.push(row("RSS under load (portal pages)", loaded));
    rows.push(row(
        "portal GET /students (server-rendered, via discovery)",
        format!("{page}, {:.2} of grading's rate", page.rps / grading_rate.rps),
    ));
    let api = InTurn::measure(&format!("http://{portal}/api/students"), &format!("http://{grading}/students"), None);
    rows.push(row(
        "portal GET /api/students (grading's bytes passed on, kept while its change feed is quiet)",
        format!("median {:.2} of grading's GET /students, in turn (portal/grading: {api})", api.ratio),
    ));
    // What the feed costs a write: each waits for the portal's acknowledgement.
    let grade = r#"{"Title":"Bench","Type":"Quiz","Score":80}"#;
    let posts = wrk(&format!("http://{grading}/students/2/grades"), Some(("application/json", grade)));
    rows.push(row("grading POST /students/2/grades, the portal subscribed to its feed", posts.to_string()));
    rows.push(row("release bundle (wasm + js, gzipped)", bundle_size()));
    rows
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Gzipped size of what a browser downloads to hydrate: the wasm and the JS.
pub fn bundle_size() -> String {
    let pkg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/site/pkg");
    let mut total_raw = 0;
    let mut total_gz = 0;
    for name in ["gradebook.wasm", "gradebook.js"] {
        let Ok(bytes) = std::fs::read(pkg.join(name)) else { return format!("{} not built (make release)", name) };
        total_raw += bytes.len();
        total_gz += gzip_len(&bytes);
    }
    format!("{:.1} KB gzipped ({:.1} KB raw)", total_gz as f64 / 1024.0, total_raw as f64 / 1024.0)
}

fn gzip_len(bytes: &[u8]) -> usize {
    let mut child = std::process::Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip is installed");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    child.wait_with_output().unwrap().stdout.len()
}
