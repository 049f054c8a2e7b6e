//! A service's view of its providers, fed by the registration answer and by
//! the registry's patches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use gradebook_shared::registry::{Patch, PatchEntry, PushedPatch};
use parking_lot::{Mutex, RwLock};
use rand::seq::{IndexedRandom, SliceRandom};

#[derive(Debug, Default)]
pub struct Providers {
    by_name: RwLock<HashMap<String, Vec<String>>>,
    patches: AtomicU64,
    /// Moves on with every change of what is known (see [`Providers::version`]).
    version: AtomicU64,
    /// The newest sequence number applied (0: none yet).
    last_seq: Mutex<u64>,
}

/// How far ahead of this host's clock a registry's sequence number may run:
/// generous for clock skew between hosts and for bursts of patches.
const SEQ_AHEAD_MICROS: u64 = 24 * 3600 * 1_000_000;

/// Whether a registry could have sent `seq`. A registry numbers its patches
/// from the wall clock in microseconds at its start, one up per patch, so a
/// number far past our clock (2^64-1, say) comes from no registry; applying
/// it would make every later real patch look stale and freeze the list.
pub fn seq_is_plausible(seq: u64) -> bool {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    seq <= now.saturating_add(SEQ_AHEAD_MICROS)
}

/// No healthy provider of a required service is known.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no provider of {0} is available")]
pub struct NoProvider(pub String);

impl Providers {
    /// Applies a patch pushed by the registry unless a newer one has been
    /// applied already (then it is stale, and applying it would undo the
    /// newer one). Returns whether it was applied.
    pub fn apply_pushed(&self, pushed: &PushedPatch) -> bool {
        if let Some(seq) = pushed.seq {
            if !seq_is_plausible(seq) {
                tracing::warn!(seq, "patch with a sequence number no registry could have sent dropped");
                return false;
            }
            let mut last = self.last_seq.lock();
            if seq <= *last {
                tracing::debug!(seq, last = *last, "stale patch dropped");
                return false;
            }
            *last = seq;
            // Applied while still holding the lock, so two patches can
            // never be applied in the opposite order of their numbers.
            self.apply(&pushed.patch);
            return true;
        }
        self.apply(&pushed.patch);
        true
    }

    /// Applies a patch from the registry. Idempotent: adding a known provider
    /// or removing an unknown one changes nothing.
    pub fn apply(&self, patch: &Patch) {
        self.patches.fetch_add(1, Ordering::Relaxed);
        self.merge(&patch.added);
        let mut map = self.by_name.write();
        self.version.fetch_add(1, Ordering::SeqCst);
        for p in &patch.removed {
            if let Some(urls) = map.get_mut(&p.name) {
                urls.retain(|u| u != &p.url);
            }
        }
    }

    /// Adds providers without removing any: a registration answer may come
    /// from a registry still warming up, which must not empty a warm cache.
    pub fn merge(&self, added: &[PatchEntry]) {
        let mut map = self.by_name.write();
        self.version.fetch_add(1, Ordering::SeqCst);
        for p in added {
            let urls = map.entry(p.name.clone()).or_default();
            if !urls.contains(&p.url) {
                urls.push(p.url.clone());
            }
        }
    }

    /// A random provider of `name`.
    pub fn pick(&self, name: &str) -> Result<String, NoProvider> {
        self.by_name
            .read()
            .get(name)
            .and_then(|urls| urls.choose(&mut rand::rng()).cloned())
            .ok_or_else(|| NoProvider(name.to_owned()))
    }

    /// Every provider of `name`, in random order (for failover).
    pub fn shuffled(&self, name: &str) -> Vec<String> {
        let mut urls = self.all(name);
        urls.shuffle(&mut rand::rng());
        urls
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.by_name.read().get(name).cloned().unwrap_or_default()
    }

    /// Everything known, to tell the registry when registering again.
    pub fn snapshot(&self) -> Vec<PatchEntry> {
        let map = self.by_name.read();
        let mut v: Vec<PatchEntry> =
            map.iter().flat_map(|(n, urls)| urls.iter().map(move |u| PatchEntry::new(n.clone(), u.clone()))).collect();
        v.sort();
        v
    }

    /// Moves on before every change of the providers known (it may move
    /// without one): equal before and after a read of them, they were not
    /// changed in between.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    /// How many patches have been applied (to tell when one has arrived).
    pub fn patches_applied(&self) -> u64 {
        self.patches.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str) -> PatchEntry {
        PatchEntry::new("LogService", url)
    }

    #[test]
    fn patches_are_idempotent_and_removals_apply() {
        let p = Providers::default();
        let add = Patch { added: vec![entry("http://a"), entry("http://a")], removed: vec![] };
        p.apply(&add);
        p.apply(&add);
        assert_eq!(p.all("LogService"), vec!["http://a"]);
        p.apply(&Patch { added: vec![], removed: vec![entry("http://a")] });
        assert!(p.pick("LogService").is_err());
    }

    #[test]
    fn a_patch_older_than_one_applied_is_dropped() {
        let p = Providers::default();
        let pushed = |seq, patch| PushedPatch { patch, seq: Some(seq) };
        assert!(p.apply_pushed(&pushed(2, Patch { added: vec![entry("http://a")], removed: vec![] })));

        let stale = pushed(1, Patch { added: vec![], removed: vec![entry("http://a")] });
        assert!(!p.apply_pushed(&stale));

        assert_eq!(p.all("LogService"), vec!["http://a"]);
    }

    #[test]
    fn a_patch_numbered_past_any_registry_is_refused_and_later_patches_still_apply() {
        let p = Providers::default();
        let frozen =
            PushedPatch { patch: Patch { added: vec![entry("http://evil")], removed: vec![] }, seq: Some(u64::MAX) };
        assert!(!p.apply_pushed(&frozen));
        assert!(p.pick("LogService").is_err());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as u64;
        let real = PushedPatch { patch: Patch { added: vec![entry("http://a")], removed: vec![] }, seq: Some(now) };
        assert!(p.apply_pushed(&real));
        assert_eq!(p.all("LogService"), vec!["http://a"]);
    }

    #[test]
    fn merge_never_removes() {
        let p = Providers::default();
        p.merge(&[entry("http://a")]);
        p.merge(&[]);
        assert_eq!(p.pick("LogService").unwrap(), "http://a");
    }
}
