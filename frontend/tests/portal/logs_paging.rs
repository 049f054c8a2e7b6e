//! The `/logs` page pages by cursor with plain links, so Older and Newer
//! work without JavaScript: Older goes before the oldest entry shown, Newer
//! after the newest, each keeping the filters.

use axum::body::Body;
use axum::http::Request;
use gradebook_shared::log::{Level, LogRecord};
use tower::ServiceExt;

use crate::support::{Stored, portal, start_backend};

fn record(seq: u64) -> LogRecord {
    LogRecord {
        seq,
        service: "Registry".into(),
        level: Level::Info,
        message: format!("entry {seq}"),
        timestamp: "2026-01-01T00:00:00Z".into(),
        fields: None,
    }
}

async fn page(path: &str) -> String {
    let stored = Stored::new();
    *stored.logs.lock() = (5..=7).map(record).collect();
    let portal = portal(&start_backend(stored).await);
    let response = portal.oneshot(Request::get(path).body(Body::empty()).expect("a request")).await.expect("an answer");
    assert_eq!(response.status(), 200, "{path}");
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

#[tokio::test]
async fn the_newest_page_links_to_older_entries_by_cursor_and_keeps_its_filters() {
    let html = page("/logs?service=Registry").await;
    assert!(html.contains(r#"href="/logs?service=Registry&amp;before=5""#), "{html}");
    assert!(!html.contains(">Newer<"), "the newest page has nothing newer");
}

#[tokio::test]
async fn an_older_page_links_both_ways_and_back_to_the_newest() {
    let html = page("/logs?before=10").await;
    assert!(html.contains(r#"href="/logs?before=5""#), "{html}");
    assert!(html.contains(r#"href="/logs?after=7""#), "{html}");
    assert!(html.contains(r#"href="/logs">Newest"#), "{html}");
}
