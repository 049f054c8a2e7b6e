//! The registry's state machine, free of I/O so it can be tested with paused
//! time: registrations, their health, and for every dependent what it has been
//! told, from which the next patch to send it is derived.
//!
//! Patches are computed as the difference between what a dependent *should*
//! know (the passing providers of what it requires) and what it *has been
//! told*. That makes delivery self-healing: a failed or reordered send is
//! repaired by the next diff, and a dependent can never be left holding a dead
//! provider or missing a live one once things settle. It also coalesces: every
//! change waiting for one dependent goes out as one patch.
//!
//! Providers are held once, behind an `Arc`, and shared by every dependent's
//! record of what it was told: a name of 100 instances told to 100 dependents
//! costs 10,000 pointers, not 10,000 copies of two strings.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gradebook_runtime::time::rfc3339;
use gradebook_shared::registry::{HealthState, Patch, PatchEntry, Registration, ServiceStatus};
use tokio::time::Instant;

/// How health checks behave. Defaults are the documented ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Time between probes of a healthy service.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// Time between probes while a failure or a recovery is being confirmed.
    pub retry_interval: Duration,
    /// Consecutive failed probes that make a passing service critical.
    pub failure_threshold: u32,
    /// Consecutive good probes that make a critical service passing again.
    pub recovery_threshold: u32,
    /// How long a critical service keeps being probed before it is forgotten.
    pub retention: Duration,
    /// After start, removals of providers the registry has not heard of yet
    /// are held back this long, so its own empty state is never pushed.
    pub warmup: Duration,
    /// Time between probes of a healthy service that holds a session. Its
    /// crash is reported by the session at once, so probes only have to
    /// catch a hang, and can come less often (never more often than
    /// `interval`).
    pub session_interval: Duration,
}

impl Policy {
    /// The documented defaults (the flags of `gradebook registry` read them here).
    pub const DEFAULT: Policy = Policy {
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        failure_threshold: 3,
        recovery_threshold: 2,
        retention: Duration::from_secs(60),
        warmup: Duration::from_secs(2),
        session_interval: Duration::from_secs(2),
    };
}

impl Default for Policy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A provider as the table holds it (see the module header).
pub type Provider = Arc<PatchEntry>;

/// A patch before it goes on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<Provider>,
    pub removed: Vec<Provider>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    pub fn to_patch(&self) -> Patch {
        let copy = |v: &[Provider]| v.iter().map(|p| PatchEntry::clone(p)).collect();
        Patch { added: copy(&self.added), removed: copy(&self.removed) }
    }
}

#[derive(Debug)]
pub struct Entry {
    pub reg: Registration,
    /// This registration as a provider, shared with every dependent told of it.
    me: Provider,
    /// Bumped by every registration of this URL, so results of work started
    /// for an earlier registration are recognised and dropped.
    pub generation: u64,
    pub state: HealthState,
    critical_since: Option<Instant>,
    failures: u32,
    successes: u32,
    last_error: Option<String>,
    last_probe: Option<(SystemTime, Instant)>,
    /// When it was last known alive (a good probe, or its registration).
    last_ok: Instant,
    latency: Option<Duration>,
    registered_at: SystemTime,
    sessions: u32,
    /// Its session dropped and no probe has answered since.
    suspect: bool,
    told: Told,
}

/// What a dependent has been told about its providers.
#[derive(Debug, Default)]
struct Told {
    /// The providers it holds, as far as we know for sure.
    believed: BTreeSet<Provider>,
    /// False after a delivery whose outcome is unknown (or an answer that
    /// handed out more); the next patch then restates everything it should
    /// hold.
    certain: bool,
    /// Providers sent or handed out whose arrival is unknown: it may hold
    /// them besides `believed`. Removals are computed against both. Empty
    /// whenever `certain`.
    maybe: BTreeSet<Provider>,
}

impl Told {
    fn possibly(&self) -> impl Iterator<Item = &Provider> {
        self.believed.union(&self.maybe)
    }
}

/// A change in whether a service is handed out, with why.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// `silent_for`: since it was last known alive, i.e. how long the
    /// failure took to detect (at most).
    Removed {
        name: String,
        cause: String,
        silent_for: Duration,
    },
    Recovered {
        name: String,
    },
    /// Critical for longer than the retention: no longer probed or listed.
    Forgotten {
        name: String,
    },
}

pub struct Table {
    entries: HashMap<String, Entry>,
    /// The URLs registered under each name, so that a name's providers are
    /// found without a scan of the whole table.
    by_name: HashMap<String, BTreeSet<String>>,
    /// The URLs of registrations that require each name and take patches:
    /// a change reaches only those.
    dependents: HashMap<String, BTreeSet<String>>,
    pub policy: Policy,
    started: Instant,
    next_generation: u64,
    /// How many entries are critical, kept with every change of state so
    /// the gauges never need a scan of the table.
    critical: usize,
}

/// What a registration changed.
#[derive(Debug)]
pub struct Registered {
    pub generation: u64,
    /// True when this URL was not registered before (its tasks must start).
    pub is_new: bool,
    /// Names whose providers changed: their dependents need a patch.
    pub changed_names: Vec<String>,
}

impl Table {
    pub fn new(policy: Policy, now: Instant) -> Self {
        Self {
            entries: HashMap::new(),
            by_name: HashMap::new(),
            dependents: HashMap::new(),
            policy,
            started: now,
            next_generation: 1,
            critical: 0,
        }
    }

    /// The table's own copy of `p` when it is a current registration, so
    /// that what dependents were told shares it.
    fn intern(&self, p: &PatchEntry) -> Provider {
        match self.entries.get(&p.url) {
            Some(e) if *e.me == *p => e.me.clone(),
            _ => Arc::new(p.clone()),
        }
    }

    fn index(&mut self, reg: &Registration) {
        let url = &reg.service_url;
        self.by_name.entry(reg.service_name.clone()).or_default().insert(url.clone());
        if !reg.service_update_url.is_empty() {
            for name in &reg.required_services {
                self.dependents.entry(name.clone()).or_default().insert(url.clone());
            }
        }
    }

    fn unindex(&mut self, reg: &Registration) {
        let url = &reg.service_url;
        let forget = |map: &mut HashMap<String, BTreeSet<String>>, name: &str| {
            if let Some(urls) = map.get_mut(name) {
                urls.remove(url);
                if urls.is_empty() {
                    map.remove(name);
                }
            }
        };
        forget(&mut self.by_name, &reg.service_name);
        for name in &reg.required_services {
            forget(&mut self.dependents, name);
        }
    }

    fn remove(&mut self, url: &str) -> Option<Entry> {
        let entry = self.entries.remove(url)?;
        self.unindex(&entry.reg);
        if entry.state == HealthState::Critical {
            self.critical -= 1;
        }
        Some(entry)
    }

    pub fn get(&self, url: &str) -> Option<&Entry> {
        self.entries.get(url)
    }

    pub fn register(&mut self, reg: Registration) -> Registered {
        let now = Instant::now();
        let generation = self.next_generation;
        self.next_generation += 1;
        let url = reg.service_url.clone();
        let required = reg.required_services.clone();
        // What it already holds: only what it requires can ever be diffed away.
        let known: BTreeSet<Provider> =
            reg.known_providers.iter().filter(|p| required.contains(&p.name)).map(|p| self.intern(p)).collect();
        let told = Told { believed: known, certain: true, maybe: BTreeSet::new() };
        let mut changed_names = vec![reg.service_name.clone()];
        if let Some(old) = self.entries.get(&url).map(|e| e.reg.clone()) {
            self.unindex(&old);
        }
        self.index(&reg);
        let is_new = match self.entries.get_mut(&url) {
            Some(e) => {
                if e.reg.service_name != reg.service_name {
                    changed_names.push(e.reg.service_name.clone());
                    e.me = Arc::new(PatchEntry::new(&reg.service_name, &url));
                }
                if e.state == HealthState::Critical {
                    self.critical -= 1;
                }
                e.reg = reg;
                e.generation = generation;
                e.state = HealthState::Passing;
                e.critical_since = None;
                e.failures = 0;
                e.successes = 0;
                e.suspect = false;
                // Its sessions were ended with the registration they belonged to.
                e.sessions = 0;
                e.last_ok = now;
                e.registered_at = SystemTime::now();
                e.told = told;
                false
            }
            None => {
                self.entries.insert(
                    url.clone(),
                    Entry {
                        me: Arc::new(PatchEntry::new(&reg.service_name, url)),
                        reg,
                        generation,
                        state: HealthState::Passing,
                        critical_since: None,
                        failures: 0,
                        successes: 0,
                        last_error: None,
                        last_probe: None,
                        last_ok: now,
                        latency: None,
                        registered_at: SystemTime::now(),
                        sessions: 0,
                        suspect: false,
                        told,
                    },
                );
                true
            }
        };
        Registered { generation, is_new, changed_names }
    }

    pub fn deregister(&mut self, url: &str) -> Option<Entry> {
        self.remove(url)
    }

    /// Passing providers of `name`, in a stable order.
    pub fn providers(&self, name: &str) -> Vec<PatchEntry> {
        self.passing(name).map(|p| PatchEntry::clone(p)).collect()
    }

    fn passing<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Provider> {
        let urls = self.by_name.get(name).into_iter().flatten();
        urls.filter_map(|url| self.entries.get(url)).filter(|e| e.state == HealthState::Passing).map(|e| &e.me)
    }

    /// URLs of the registrations that require `name` and can be sent patches.
    pub fn dependents_of(&self, name: &str) -> Vec<String> {
        self.dependents.get(name).map(|urls| urls.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every registration that can be sent patches.
    pub fn all_dependents(&self) -> Vec<String> {
        self.entries
            .values()
            .filter(|e| !e.reg.service_update_url.is_empty() && !e.reg.required_services.is_empty())
            .map(|e| e.reg.service_url.clone())
            .collect()
    }

    fn desired(&self, dependent: &Entry) -> BTreeSet<Provider> {
        dependent.reg.required_services.iter().flat_map(|name| self.passing(name)).cloned().collect()
    }

    fn warming_up(&self, now: Instant) -> bool {
        now.duration_since(self.started) < self.policy.warmup
    }

    /// The patch `url` needs next (None when it is up to date or unknown),
    /// with the generation it was computed for.
    pub fn next_patch(&self, url: &str, now: Instant) -> Option<(Diff, u64)> {
        let e = self.entries.get(url)?;
        if e.reg.service_update_url.is_empty() {
            return None;
        }
        let desired = self.desired(e);
        let added: Vec<Provider> = if e.told.certain {
            desired.difference(&e.told.believed).cloned().collect()
        } else {
            desired.iter().cloned().collect()
        };
        let warming_up = self.warming_up(now);
        let removed: Vec<Provider> = e
            .told
            .possibly()
            .filter(|p| !desired.contains(*p))
            // While warming up, a provider we have never heard of is more
            // likely not re-registered yet than dead: keep it for now.
            .filter(|p| !warming_up || self.entries.contains_key(&p.url))
            .cloned()
            .collect();
        let diff = Diff { added, removed };
        (!diff.is_empty()).then_some((diff, e.generation))
    }

    /// `diff` reached `url`.
    pub fn delivered(&mut self, url: &str, generation: u64, diff: &Diff) {
        let Some(e) = self.entries.get_mut(url).filter(|e| e.generation == generation) else { return };
        let told = &mut e.told;
        if !told.certain {
            told.believed.append(&mut told.maybe);
            told.certain = true;
        }
        for p in &diff.removed {
            told.believed.remove(p);
        }
        told.believed.extend(diff.added.iter().cloned());
    }

    /// `diff` may or may not have reached `url`.
    pub fn delivery_failed(&mut self, url: &str, generation: u64, diff: &Diff) {
        let Some(e) = self.entries.get_mut(url).filter(|e| e.generation == generation) else { return };
        e.told.certain = false;
        e.told.maybe.extend(diff.added.iter().cloned());
    }

    /// The registration answer carries the providers too: the dependent may
    /// hold them from there even when no patch got through.
    pub fn answered(&mut self, url: &str, generation: u64, providers: &[Provider]) {
        let Some(e) = self.entries.get_mut(url).filter(|e| e.generation == generation) else { return };
        let told = &mut e.told;
        let extra: Vec<_> = providers.iter().filter(|p| !told.believed.contains(*p)).cloned().collect();
        if !extra.is_empty() {
            told.certain = false;
            told.maybe.extend(extra);
        }
    }

    /// The snapshot that answers a registration.
    pub fn providers_for(&self, url: &str) -> Vec<Provider> {
        self.entries.get(url).map(|e| self.desired(e).into_iter().collect()).unwrap_or_default()
    }

    /// How long the prober of `url` waits before its next probe (the tests'
    /// view of [`Table::probe_delay`]).
    #[cfg(test)]
    pub fn next_probe_delay(&self, url: &str) -> Option<Duration> {
        self.entries.get(url).map(|e| self.probe_delay(e))
    }

    /// How long the prober of `e` waits before its next probe.
    pub fn probe_delay(&self, e: &Entry) -> Duration {
        let confirming = match e.state {
            HealthState::Passing => e.failures > 0 || e.suspect,
            HealthState::Critical => e.successes > 0,
        };
        if confirming {
            self.policy.retry_interval
        } else if e.sessions > 0 && e.state == HealthState::Passing {
            self.policy.interval.max(self.policy.session_interval)
        } else {
            self.policy.interval
        }
    }

    pub fn session_opened(&mut self, url: &str) {
        if let Some(e) = self.entries.get_mut(url) {
            e.sessions += 1;
        }
    }

    /// A session of registration `generation` closed; `lost` when its
    /// connection dropped (the service may have crashed) rather than being
    /// ended by us. Returns true when the service should be probed at once.
    /// Sessions of a registration since replaced were ended with it and no
    /// longer count.
    pub fn session_closed(&mut self, url: &str, generation: u64, lost: bool) -> bool {
        let Some(e) = self.entries.get_mut(url).filter(|e| e.generation == generation) else { return false };
        e.sessions = e.sessions.saturating_sub(1);
        e.suspect |= lost && e.sessions == 0;
        e.suspect
    }

    /// Records a probe of `url`, returning the change it causes, if any.
    pub fn probe_result(
        &mut self,
        url: &str,
        generation: u64,
        outcome: Result<Duration, String>,
        now: Instant,
    ) -> Option<Transition> {
        let policy = &self.policy;
        let e = self.entries.get_mut(url).filter(|e| e.generation == generation)?;
        e.last_probe = Some((SystemTime::now(), now));
        match outcome {
            Ok(latency) => {
                e.latency = Some(latency);
                e.last_ok = now;
                e.failures = 0;
                e.suspect = false;
                e.last_error = None;
                if e.state == HealthState::Critical {
                    e.successes += 1;
                    if e.successes >= policy.recovery_threshold {
                        e.state = HealthState::Passing;
                        e.critical_since = None;
                        e.successes = 0;
                        self.critical -= 1;
                        return Some(Transition::Recovered { name: e.reg.service_name.clone() });
                    }
                }
                None
            }
            Err(err) => {
                e.latency = None;
                e.successes = 0;
                e.failures = e.failures.saturating_add(1);
                e.last_error = Some(err.clone());
                match e.state {
                    HealthState::Passing if e.suspect || e.failures >= policy.failure_threshold => {
                        let cause = if e.suspect {
                            format!("session lost and heartbeat probe failed: {err}")
                        } else {
                            format!("{} consecutive failed heartbeat probes, last: {err}", e.failures)
                        };
                        e.state = HealthState::Critical;
                        e.critical_since = Some(now);
                        e.suspect = false;
                        self.critical += 1;
                        let name = e.reg.service_name.clone();
                        Some(Transition::Removed { name, cause, silent_for: now.duration_since(e.last_ok) })
                    }
                    HealthState::Critical
                        if e.critical_since.is_some_and(|t| now.duration_since(t) >= policy.retention) =>
                    {
                        let name = e.reg.service_name.clone();
                        self.remove(url);
                        Some(Transition::Forgotten { name })
                    }
                    _ => None,
                }
            }
        }
    }

    /// How many registrations are passing and critical.
    pub fn counts(&self) -> (usize, usize) {
        (self.entries.len() - self.critical, self.critical)
    }

    /// Every registration, for `GET /services`, ordered by name then URL.
    pub fn statuses(&self, now: Instant) -> Vec<ServiceStatus> {
        let mut v: Vec<ServiceStatus> = self
            .entries
            .values()
            .map(|e| ServiceStatus {
                service_name: e.reg.service_name.clone(),
                service_url: e.reg.service_url.clone(),
                required_services: e.reg.required_services.clone(),
                heartbeat_url: e.reg.heartbeat_url.clone(),
                service_update_url: e.reg.service_update_url.clone(),
                state: e.state,
                last_probe: e.last_probe.map(|(t, _)| rfc3339(t)),
                last_probe_age_ms: e.last_probe.map(|(_, i)| now.duration_since(i).as_millis() as u64),
                latency_ms: e.latency.map(|d| d.as_secs_f64() * 1000.0),
                consecutive_failures: e.failures,
                registered_at: rfc3339(e.registered_at),
                session: e.sessions > 0,
            })
            .collect();
        v.sort_by(|a, b| (&a.service_name, &a.service_url).cmp(&(&b.service_name, &b.service_url)));
        v
    }
}

impl Entry {
    pub fn heartbeat_url(&self) -> &str {
        &self.reg.heartbeat_url
    }
    pub fn update_url(&self) -> &str {
        &self.reg.service_update_url
    }
    pub fn name(&self) -> &str {
        &self.reg.service_name
    }
}

#[cfg(test)]
mod tests {
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
        assert!(matches!(
            fail(&mut t, "http://log", now + Duration::from_secs(61)),
            Some(Transition::Forgotten { .. })
        ));
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
}
