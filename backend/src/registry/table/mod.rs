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
//!
//! - this module: the registrations, indexed by name and by what they
//!   require, and their listing;
//! - [`health`]: probes and sessions, and the changes of health they cause;
//! - [`told`]: what each dependent has been told, and the patch it needs next.

mod health;
#[cfg(test)]
mod tests;
mod told;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gradebook_runtime::time::rfc3339;
use gradebook_shared::registry::{HealthState, PatchEntry, Registration, ServiceStatus};
use tokio::time::Instant;

use super::policy::Policy;
pub use health::Transition;
pub use told::Diff;
use told::Told;

/// A provider as the table holds it (see the module header).
pub type Provider = Arc<PatchEntry>;

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

    /// The name held by an entry whose URL is `url` in another spelling
    /// (`same` says when two URLs name one service).
    pub fn name_at(&self, url: &str, same: impl Fn(&str, &str) -> bool) -> Option<&str> {
        self.entries.get(url).or_else(|| self.entries.values().find(|e| same(&e.reg.service_url, url))).map(Entry::name)
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
