//! The portal follows grading's change feed: while it hears that nothing
//! changed, what it kept is served without asking grading; a change heard,
//! a feed that stalls or no feed at all sends it back to asking.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::{HANG_UP, Stored, following_portal, portal, start_backend};
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use gradebook_shared::grading::Grade;
use gradebook_shared::grading::changes::LEASE;
use tower::ServiceExt;

async fn get_list(portal: &Router) -> String {
    let request = Request::get("/api/students").body(Body::empty()).expect("a request");
    let response = portal.clone().oneshot(request).await.expect("the portal answers");
    assert_eq!(response.status(), 200);
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("a body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

/// Waits until `ready`, checking every 10 ms for at most 5 s.
async fn eventually(what: &str, ready: impl Fn() -> bool) {
    for _ in 0..500 {
        if ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

/// A portal that subscribed to the stand-in's feed and trusts it: a read
/// no longer asks grading.
async fn trusting_portal() -> (Stored, Router) {
    let stored = Stored::new();
    stored.feed.on.store(true, Ordering::SeqCst);
    let backend = start_backend(stored.clone()).await;
    let portal = following_portal(&backend);
    eventually("the portal acknowledged the first change", || stored.feed.acked.load(Ordering::SeqCst) >= 1).await;
    for _ in 0..500 {
        let asked = stored.list_asked.load(Ordering::SeqCst);
        get_list(&portal).await;
        if stored.list_asked.load(Ordering::SeqCst) == asked {
            return (stored, portal);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the portal never trusted the feed");
}

fn add_grade_behind_the_portals_back(stored: &Stored) {
    let mut students = stored.students.lock();
    students[1].grades.push(Grade { id: 99, title: "Heard of".into(), kind: "Quiz".into(), score: 70.0 });
}

#[tokio::test]
async fn while_the_feed_says_nothing_changed_kept_answers_are_served_without_asking_grading() {
    let (stored, portal) = trusting_portal().await;
    let asked = stored.list_asked.load(Ordering::SeqCst);

    for _ in 0..50 {
        get_list(&portal).await;
    }

    assert_eq!(stored.list_asked.load(Ordering::SeqCst), asked);
}

#[tokio::test]
async fn a_change_heard_is_acknowledged_and_the_next_read_asks_grading_for_the_new_data() {
    let (stored, portal) = trusting_portal().await;
    add_grade_behind_the_portals_back(&stored);
    assert!(!get_list(&portal).await.contains("Heard of"), "not told, the portal trusts what it kept");

    stored.feed.changes.send(2).expect("the portal subscribes");
    eventually("the change is acknowledged", || stored.feed.acked.load(Ordering::SeqCst) == 2).await;

    assert!(get_list(&portal).await.contains("Heard of"));
}

#[tokio::test]
async fn when_the_feed_stops_answering_pings_the_portal_asks_grading_on_every_request_again() {
    let (stored, portal) = trusting_portal().await;

    stored.feed.pongs.store(false, Ordering::SeqCst);
    tokio::time::sleep(LEASE + Duration::from_millis(50)).await;

    let asked = stored.list_asked.load(Ordering::SeqCst);
    for _ in 0..5 {
        get_list(&portal).await;
    }
    assert_eq!(stored.list_asked.load(Ordering::SeqCst), asked + 5);
}

#[tokio::test]
async fn when_the_feed_ends_the_portal_asks_grading_again() {
    let (stored, portal) = trusting_portal().await;
    stored.feed.on.store(false, Ordering::SeqCst);
    add_grade_behind_the_portals_back(&stored);

    stored.feed.changes.send(HANG_UP).expect("the portal subscribes");

    let mut seen = false;
    for _ in 0..100 {
        if get_list(&portal).await.contains("Heard of") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the portal saw the new data once the feed ended");
    let asked = stored.list_asked.load(Ordering::SeqCst);
    for _ in 0..5 {
        get_list(&portal).await;
    }
    assert_eq!(stored.list_asked.load(Ordering::SeqCst), asked + 5, "no feed, no trust");
}

#[tokio::test]
async fn a_grading_without_a_feed_is_asked_on_every_request() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let (following, plain) = (following_portal(&backend), portal(&backend));
    tokio::time::sleep(Duration::from_millis(300)).await;

    for portal in [following, plain] {
        let asked = stored.list_asked.load(Ordering::SeqCst);
        for _ in 0..5 {
            get_list(&portal).await;
        }
        assert_eq!(stored.list_asked.load(Ordering::SeqCst), asked + 5);
    }
    assert_eq!(stored.feed.subscriptions.load(Ordering::SeqCst), 0);
}
