//! An oversized body on every service, sent the way a plain client does:
//! the whole body first, then the answer read. It must be a readable 413,
//! never a reset or a broken pipe.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use gradebook::log::StoreConfig;
use gradebook::registry::Config;
use gradebook_tests::{TempDir, TestGrading, TestLog, TestRegistry};

const BODY_BYTES: usize = 3 * 1024 * 1024;

/// Writes a `BODY_BYTES` POST to `path` whole, then reads the answer.
fn post_whole_then_read(addr: SocketAddr, path: &str, content_type: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&vec![b'x'; BODY_BYTES]).expect("the whole body is taken in, not cut off");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_readable_413(answer: &str, service: &str) {
    assert!(answer.starts_with("HTTP/1.1 413"), "{service}: {answer:?}");
    assert!(answer.contains("\"error\""), "{service}: a JSON error: {answer:?}");
}

#[tokio::test]
async fn an_oversized_body_sent_whole_before_reading_gets_a_readable_413_on_every_service() {
    let dir = TempDir::new("oversized");
    let registry = TestRegistry::spawn(Config::default());
    let log = TestLog::spawn(&registry.url, StoreConfig { dir: dir.path().join("log"), ..StoreConfig::default() });
    let grading = TestGrading::spawn(&registry.url, &format!("sqlite://{}/grading.db", dir.path().display()));
    let cases = [
        ("registry", registry.addr, "/services", "application/json"),
        ("log", log.addr, "/log", "text/plain"),
        ("grading", grading.addr, "/students/1/grades", "application/json"),
    ];
    for (service, addr, path, content_type) in cases {
        for _ in 0..3 {
            let answer =
                tokio::task::spawn_blocking(move || post_whole_then_read(addr, path, content_type)).await.unwrap();
            assert_readable_413(&answer, service);
        }
    }
}
