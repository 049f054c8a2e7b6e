//! The state machine's behaviour, on paused time: removal and recovery,
//! sessions, retention, warm-up, and what dependents are told.

use std::sync::Arc;
use std::time::Duration;

use gradebook_shared::registry::{Patch, PatchEntry, Registration};
use tokio::time::Instant;

use super::*;

fn reg(name: &str, url: &str, required: &[&str]) -> Registration {
    Registration {
        service_name: name.into(),
        service_url: url.into(),
        required_services: required.iter().map(|s| s.to_string()).collect(),
        service_update_url: format!("{url}/update"),
        heartbeat_url: format!("{url}/heartbeat"),
        known_providers: vec![],
    }
}

fn log(url: &str) -> PatchEntry {
    PatchEntry::new("LogService", url)
}

fn fail(t: &mut Table, url: &str, now: Instant) -> Option<Transition> {
    let generation = t.get(url).unwrap().generation;
    t.probe_result(url, generation, Err("refused".into()), now)
}

fn pass(t: &mut Table, url: &str, now: Instant) -> Option<Transition> {
    let generation = t.get(url).unwrap().generation;
    t.probe_result(url, generation, Ok(Duration::from_millis(1)), now)
}

/// A table past its warm-up, with a log provider and a grading dependent.
fn settled() -> (Table, Instant) {
    let start = Instant::now();
    let mut t = Table::new(Policy::default(), start);
    t.register(reg("LogService", "http://log", &[]));
    t.register(reg("GradingService", "http://grading", &["LogService"]));
    (t, start + Duration::from_secs(10))
}

fn deliver(t: &mut Table, url: &str, now: Instant) -> Option<Patch> {
    let (diff, generation) = t.next_patch(url, now)?;
    t.delivered(url, generation, &diff);
    Some(diff.to_patch())
}

#[tokio::test(start_paused = true)]
async fn a_dependent_is_told_its_providers_once() {
    let (mut t, now) = settled();
    let first = deliver(&mut t, "http://grading", now).unwrap();
    assert_eq!(first.added, vec![log("http://log")]);
    assert_eq!(deliver(&mut t, "http://grading", now), None);
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_does_not_remove_but_the_threshold_does() {
    let (mut t, now) = settled();
    assert_eq!(fail(&mut t, "http://log", now), None);
    assert_eq!(pass(&mut t, "http://log", now), None);
    assert_eq!(fail(&mut t, "http://log", now), None);
    assert_eq!(fail(&mut t, "http://log", now), None);
    assert!(matches!(fail(&mut t, "http://log", now), Some(Transition::Removed { .. })));
    assert!(t.providers("LogService").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lost_session_and_one_failed_probe_remove_at_once() {
    let (mut t, now) = settled();
    let generation = t.get("http://log").unwrap().generation;
    t.session_opened("http://log");
    assert!(t.session_closed("http://log", generation, true));
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.retry_interval));
    assert!(matches!(fail(&mut t, "http://log", now), Some(Transition::Removed { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_lost_session_with_a_live_heartbeat_keeps_the_service() {
    let (mut t, now) = settled();
    let generation = t.get("http://log").unwrap().generation;
    t.session_opened("http://log");
    t.session_closed("http://log", generation, true);
    assert_eq!(pass(&mut t, "http://log", now), None);
    assert_eq!(fail(&mut t, "http://log", now), None, "the suspicion ended with the good probe");
    assert_eq!(t.providers("LogService").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn removal_and_recovery_reach_the_dependent_as_patches() {
    let (mut t, now) = settled();
    deliver(&mut t, "http://grading", now);
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    assert_eq!(deliver(&mut t, "http://grading", now).unwrap().removed, vec![log("http://log")]);
    assert_eq!(pass(&mut t, "http://log", now), None, "one good probe is not yet a recovery");
    assert_eq!(pass(&mut t, "http://log", now), Some(Transition::Recovered { name: "LogService".into() }));
    assert_eq!(deliver(&mut t, "http://grading", now).unwrap().added, vec![log("http://log")]);
}

#[tokio::test(start_paused = true)]
async fn a_critical_service_is_forgotten_after_the_retention() {
    let (mut t, now) = settled();
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    assert_eq!(fail(&mut t, "http://log", now + Duration::from_secs(59)), None);
    assert!(matches!(fail(&mut t, "http://log", now + Duration::from_secs(61)), Some(Transition::Forgotten { .. })));
    assert!(t.get("http://log").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failed_delivery_is_repaired_by_the_next_one() {
    let (mut t, now) = settled();
    let (diff, generation) = t.next_patch("http://grading", now).unwrap();
    t.delivery_failed("http://grading", generation, &diff);
    // The provider dies before the retry: the dependent may hold it, so
    // the retry must remove it rather than send nothing.
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    let retry = deliver(&mut t, "http://grading", now).unwrap();
    assert_eq!(retry, Patch { added: vec![], removed: vec![log("http://log")] });
    assert_eq!(deliver(&mut t, "http://grading", now), None);
}

#[tokio::test(start_paused = true)]
async fn providers_and_dependents_follow_renames_new_requirements_and_removals() {
    let mut t = Table::new(Policy::default(), Instant::now());
    t.register(reg("LogService", "http://a", &[]));
    t.register(reg("Worker", "http://w", &["LogService"]));
    assert_eq!(t.providers("LogService"), vec![log("http://a")]);
    assert_eq!(t.dependents_of("LogService"), vec!["http://w"]);

    // Registered again under new requirements: indexed anew.
    t.register(reg("Worker", "http://w", &["GradingService"]));
    assert!(t.dependents_of("LogService").is_empty());
    assert_eq!(t.dependents_of("GradingService"), vec!["http://w"]);

    // Gone, whichever way it leaves.
    t.deregister("http://a");
    assert!(t.providers("LogService").is_empty());
    let now = Instant::now();
    for _ in 0..t.policy.failure_threshold {
        fail(&mut t, "http://w", now);
    }
    let later = now + t.policy.retention;
    assert!(matches!(fail(&mut t, "http://w", later), Some(Transition::Forgotten { .. })));
    assert!(t.dependents_of("GradingService").is_empty());
}

#[tokio::test(start_paused = true)]
async fn re_registering_the_same_url_replaces_the_entry() {
    let (mut t, _) = settled();
    let again = t.register(reg("LogService", "http://log", &[]));
    assert!(!again.is_new);
    assert_eq!(t.statuses(Instant::now()).len(), 2);
    assert_eq!(t.providers("LogService").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn results_for_an_earlier_registration_are_ignored() {
    let (mut t, now) = settled();
    let old = t.get("http://log").unwrap().generation;
    t.register(reg("LogService", "http://log", &[]));
    for _ in 0..5 {
        assert_eq!(t.probe_result("http://log", old, Err("old".into()), now), None);
    }
    assert_eq!(t.providers("LogService").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn warm_up_never_empties_a_dependents_cache_but_later_removes_the_dead() {
    let start = Instant::now();
    let mut t = Table::new(Policy::default(), start);
    // After a registry restart the dependent comes back first, knowing
    // two log providers; only one of them comes back at all.
    let mut grading = reg("GradingService", "http://grading", &["LogService"]);
    grading.known_providers = vec![log("http://log-a"), log("http://log-b")];
    t.register(grading);
    assert_eq!(t.next_patch("http://grading", start), None);
    t.register(reg("LogService", "http://log-a", &[]));
    assert_eq!(t.next_patch("http://grading", start), None, "log-a is already known");
    let after = start + t.policy.warmup;
    assert_eq!(deliver(&mut t, "http://grading", after).unwrap().removed, vec![log("http://log-b")]);
}

#[tokio::test(start_paused = true)]
async fn the_counts_follow_every_change_of_state() {
    let (mut t, now) = settled();
    assert_eq!(t.counts(), (2, 0));
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    assert_eq!(t.counts(), (1, 1));
    t.register(reg("LogService", "http://log", &[]));
    assert_eq!(t.counts(), (2, 0), "registering again makes it passing");
    for _ in 0..3 {
        fail(&mut t, "http://grading", now);
    }
    t.deregister("http://grading");
    assert_eq!(t.counts(), (1, 0), "a critical entry deregistered is no longer counted");
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    pass(&mut t, "http://log", now);
    pass(&mut t, "http://log", now);
    assert_eq!(t.counts(), (1, 0), "recovered");
    for _ in 0..3 {
        fail(&mut t, "http://log", now);
    }
    let later = now + t.policy.retention;
    fail(&mut t, "http://log", later);
    assert_eq!(t.counts(), (0, 0), "forgotten");
}

#[tokio::test(start_paused = true)]
async fn a_service_holding_a_session_is_probed_less_often_until_the_session_drops() {
    let (mut t, now) = settled();
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.interval));
    t.session_opened("http://log");
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.session_interval));
    fail(&mut t, "http://log", now);
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.retry_interval), "a failure is confirmed quickly");
    pass(&mut t, "http://log", now);
    let generation = t.get("http://log").unwrap().generation;
    t.session_closed("http://log", generation, true);
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.retry_interval));
    pass(&mut t, "http://log", now);
    assert_eq!(t.next_probe_delay("http://log"), Some(t.policy.interval));
}

#[tokio::test(start_paused = true)]
async fn a_session_ended_by_a_new_registration_no_longer_counts_so_the_next_one_lost_is_noticed() {
    let (mut t, _) = settled();
    let first = t.get("http://log").unwrap().generation;
    t.session_opened("http://log");
    // It registers again (its session was ended by us), then holds a new one.
    t.register(reg("LogService", "http://log", &[]));
    let second = t.get("http://log").unwrap().generation;
    t.session_opened("http://log");
    assert!(!t.session_closed("http://log", first, false), "the old session closing changes nothing");
    assert!(t.session_closed("http://log", second, true), "the crash drops the only session: probe now");
}

#[tokio::test(start_paused = true)]
async fn every_dependent_told_of_a_provider_shares_the_tables_copy() {
    let (mut t, now) = settled();
    t.register(reg("GradingService", "http://grading-2", &["LogService"]));
    let mut known = reg("GradingService", "http://grading-3", &["LogService"]);
    known.known_providers = vec![log("http://log")];
    t.register(known);
    deliver(&mut t, "http://grading", now);
    deliver(&mut t, "http://grading-2", now);
    let me = &t.get("http://log").unwrap().me;
    for url in ["http://grading", "http://grading-2", "http://grading-3"] {
        let told = &t.get(url).unwrap().told.believed;
        assert!(told.iter().all(|p| Arc::ptr_eq(p, me)), "{url} holds its own copy");
    }
}
