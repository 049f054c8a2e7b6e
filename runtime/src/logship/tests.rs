//! The buffer's bounds and order, and the original's text lines.

use super::ship::text_line;
use super::*;

fn record(message: &str) -> NewLogRecord {
    NewLogRecord { service: "T".into(), level: Level::Info, message: message.into(), timestamp: None, fields: None }
}

#[test]
fn overflow_drops_the_oldest_and_says_so_in_the_next_batch() {
    let buffer = LogBuffer::new("T", Level::Info, 3);
    for i in 0..5 {
        buffer.push(record(&i.to_string()));
    }
    let (batch, last, dropped) = buffer.next_batch().unwrap();
    let messages: Vec<&str> = batch.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(dropped, 2);
    assert!(messages[0].starts_with("2 log records were dropped"));
    assert_eq!(&messages[1..], ["2", "3", "4"]);
    buffer.delivered(last, dropped);
    assert!(buffer.is_empty());
    assert_eq!(buffer.dropped(), 0);
}

#[test]
fn a_record_for_the_original_log_service_is_one_line_with_its_fields() {
    let mut fields = serde_json::Map::new();
    fields.insert("n".into(), 3.into());
    fields.insert("url".into(), "http://127.0.0.1:1".into());
    let r = NewLogRecord { fields: Some(fields), ..record("two\nlines") };
    assert_eq!(text_line(&r), "[T] - two lines n=3 url=http://127.0.0.1:1");
}

#[test]
fn records_pushed_during_a_delivery_are_kept() {
    let buffer = LogBuffer::new("T", Level::Info, 10);
    buffer.push(record("a"));
    let (_, last, dropped) = buffer.next_batch().unwrap();
    buffer.push(record("b"));
    buffer.delivered(last, dropped);
    assert_eq!(buffer.next_batch().unwrap().0[0].message, "b");
}
