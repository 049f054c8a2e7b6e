//! What each dependent has been told about its providers, and from that the
//! patch it needs next: the difference between what it should hold (the
//! passing providers of what it requires) and what it may hold.

use std::collections::BTreeSet;

use gradebook_shared::registry::{Patch, PatchEntry};
use tokio::time::Instant;

use super::{Entry, Provider, Table};

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

/// What a dependent has been told about its providers.
#[derive(Debug, Default)]
pub(super) struct Told {
    /// The providers it holds, as far as we know for sure.
    pub(super) believed: BTreeSet<Provider>,
    /// False after a delivery whose outcome is unknown (or an answer that
    /// handed out more); the next patch then restates everything it should
    /// hold.
    pub(super) certain: bool,
    /// Providers sent or handed out whose arrival is unknown: it may hold
    /// them besides `believed`. Removals are computed against both. Empty
    /// whenever `certain`.
    pub(super) maybe: BTreeSet<Provider>,
}

impl Told {
    pub(super) fn possibly(&self) -> impl Iterator<Item = &Provider> {
        self.believed.union(&self.maybe)
    }
}

impl Table {
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
}
