//! The store with an injected failing fsync: an append it covers is
//! refused, and its record is never served, streamed or exported, not even
//! after a reopen.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gradebook_shared::log::{Level, NewLogRecord};

use super::{Cursor, Store, StoreConfig, SyncFn, TimeRange};

fn record(message: &str) -> NewLogRecord {
    NewLogRecord { service: "S".into(), level: Level::Info, message: message.into(), timestamp: None, fields: None }
}

fn exported(store: &Store) -> String {
    let mut out = Vec::new();
    store
        .export(0, TimeRange::default(), 1024, None, |chunk| {
            out.extend(chunk);
            true
        })
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn messages(store: &Store) -> Vec<String> {
    store
        .page(Cursor::Newest, 100, usize::MAX, TimeRange::default(), |_| true)
        .records
        .iter()
        .map(|r| r.message.clone())
        .collect()
}

#[tokio::test]
async fn an_append_whose_fsync_fails_is_refused_and_its_record_is_never_served_streamed_or_exported() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { dir: dir.path().to_path_buf(), ..StoreConfig::default() };
    let failing = Arc::new(AtomicBool::new(false));
    let sync: SyncFn = {
        let failing = failing.clone();
        Arc::new(move |file: &std::fs::File| {
            if failing.load(Ordering::SeqCst) { Err(std::io::Error::from_raw_os_error(5)) } else { file.sync_data() }
        })
    };
    let (store, closer) = Store::open_with(config.clone(), sync).unwrap();
    let mut live = store.subscribe();
    store.append(vec![record("kept")]).await.unwrap();

    failing.store(true, Ordering::SeqCst);
    let refused = store.append(vec![record("lost")]).await.unwrap_err();
    assert!(refused.to_string().contains("fsync failed"), "{refused}");
    assert!(store.health().is_err(), "/healthz reports the failed fsync");
    failing.store(false, Ordering::SeqCst);
    store.append(vec![record("after")]).await.unwrap();
    assert!(store.health().is_ok(), "a later fsync clears it");

    assert_eq!(messages(&store), ["kept", "after"]);
    let streamed: Vec<String> = std::iter::from_fn(|| live.try_recv().ok()).map(|r| r.message.clone()).collect();
    assert_eq!(streamed, ["kept", "after"]);
    assert!(!exported(&store).contains("lost"));
    tokio::task::spawn_blocking(move || closer.close()).await.unwrap();

    let (store, closer) = Store::open(config).unwrap();
    assert_eq!(messages(&store), ["kept", "after"], "nor after a reopen");
    assert!(!exported(&store).contains("lost"));
    tokio::task::spawn_blocking(move || closer.close()).await.unwrap();
}
