//! The registry's one owner of state: the table of registrations and the
//! handles on each registration's background tasks, behind a single lock.
//!
//! Every change of membership (register, deregister, forget) updates the
//! table and the task map in the same critical section, so no interleaving
//! can leave an entry without its prober and deliverer, or tasks running for
//! an entry that is gone.
//!
//! The tasks are this module's children and hold no state of their own:
//! they ask the [`Registry`] what to do next and report back, and stop when
//! their registration's token is cancelled (which the registry does in the
//! same step that removes it).
//!
//! - [`handles`]: the handles on one registration's tasks;
//! - [`prober`]: its prober;
//! - [`deliverer`]: its patch deliverer.

mod deliverer;
mod handles;
mod prober;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gradebook_runtime::logship::{Destination, LogBuffer};
use gradebook_shared::registry::{Patch, PatchEntry, Registration, ServiceStatus};
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Config;
use super::error::RegistryError;
use super::probe::Connections;
use super::table::{Diff, Table, Transition};
use handles::Handles;

/// The registry's shared state: cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    state: Mutex<State>,
    sessions: Arc<tokio::sync::Semaphore>,
    /// The next patch's sequence number. Starts at the wall clock in
    /// microseconds, so a restarted registry's numbers are larger still.
    next_seq: std::sync::atomic::AtomicU64,
    client: reqwest::Client,
    /// Idle connections of plain http probes, by address.
    connections: Connections,
    shutdown: CancellationToken,
}

struct State {
    table: Table,
    /// The background tasks of each registration in `table`, by URL.
    tasks: HashMap<String, Handles>,
}

impl State {
    fn poke(&self, url: &str) {
        if let Some(h) = self.tasks.get(url) {
            h.deliver.notify_one();
        }
    }

    fn poke_dependents(&self, name: &str) {
        for url in self.table.dependents_of(name) {
            self.poke(&url);
        }
        let (passing, critical) = self.table.counts();
        metrics::gauge!("gradebook_registry_services", "state" => "passing").set(passing as f64);
        metrics::gauge!("gradebook_registry_services", "state" => "critical").set(critical as f64);
    }

    fn stop_tasks(&mut self, url: &str) {
        if let Some(h) = self.tasks.remove(url) {
            h.cancel.cancel();
        }
    }
}

/// What the prober of one registration probes next.
struct ProbeTarget {
    /// Parsed once per registration, not once per probe.
    pub heartbeat: Result<reqwest::Url, String>,
    /// The service name it is registered under (its probe proof names it).
    pub name: String,
    pub generation: u64,
    pub delay: Duration,
}

/// What the deliverer of one registration needs for its next send.
struct PendingPatch {
    pub patch: Diff,
    /// Its place among everything this registry sends.
    pub seq: u64,
    pub generation: u64,
    pub update_url: String,
    /// The service it goes to (its patch key is for that name only).
    pub name: String,
}

impl Registry {
    /// A registry whose background tasks stop when `shutdown` is cancelled.
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        // Every probe and patch sets its own deadline. The client carries
        // no credential: each patch is given the key for its receiver only.
        let client = gradebook_runtime::http::unredirected_client(config.policy.timeout, None);
        let table = Table::new(config.policy.clone(), Instant::now());
        let registry = Self {
            inner: Arc::new(Inner {
                sessions: Arc::new(tokio::sync::Semaphore::new(config.max_sessions)),
                config,
                state: Mutex::new(State { table, tasks: HashMap::new() }),
                next_seq: std::sync::atomic::AtomicU64::new(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(1, |d| d.as_micros() as u64),
                ),
                client,
                connections: Connections::default(),
                shutdown,
            }),
        };
        registry.spawn_warmup_end();
        registry
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }

    /// Starts the prober and the deliverer of `url`.
    fn spawn_tasks(&self, url: &str) -> Handles {
        let handles = Handles::new(self.inner.shutdown.child_token());
        let (registry, url) = (self.clone(), url.to_owned());
        tokio::spawn(prober::prober(registry.clone(), url.clone(), handles.cancel.clone(), handles.probe_now.clone()));
        tokio::spawn(deliverer::deliverer(registry, url, handles.cancel.clone(), handles.deliver.clone()));
        handles
    }

    pub(super) fn config(&self) -> &Config {
        &self.inner.config
    }

    fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    fn probe_connections(&self) -> &Connections {
        &self.inner.connections
    }

    pub(super) fn shutdown(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Ships the registry's own logs to the log services it knows.
    pub fn ship_logs(&self, buffer: LogBuffer) {
        let registry = self.clone();
        let destination: Destination = Arc::new(move || {
            let mut urls: Vec<String> =
                registry.providers(gradebook_shared::names::LOG).into_iter().map(|p| p.url).collect();
            rand::seq::SliceRandom::shuffle(urls.as_mut_slice(), &mut rand::rng());
            urls
        });
        let credential = self.inner.config.credential();
        let bearer = credential.and_then(|c| c.bearer_to(gradebook_shared::names::LOG));
        let client = gradebook_runtime::http::client(Duration::from_secs(5), bearer.as_deref());
        tokio::spawn(buffer.ship(destination, client, self.inner.shutdown.clone()));
    }

    /// The name `url` is registered under, if it is.
    pub fn registered_name(&self, url: &str) -> Option<String> {
        self.state().table.name_at(url, super::validate::same_url).map(str::to_owned)
    }

    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.state().table.statuses(Instant::now())
    }

    pub fn providers(&self, name: &str) -> Vec<PatchEntry> {
        self.state().table.providers(name)
    }

    /// Registers (or re-registers) a service, delivers its first patch and
    /// returns the providers it requires.
    pub async fn register(&self, reg: Registration) -> Result<Patch, RegistryError> {
        super::validate::registration(&reg, self.inner.config.allow_foreign_urls)?;
        let url = reg.service_url.clone();
        tracing::info!(service = %reg.service_name, %url, required = ?reg.required_services, "registered");
        let generation = {
            let mut state = self.state();
            match state.table.name_at(&url, super::validate::same_url).map(str::to_owned) {
                // Taking over a URL would cut its service off for good.
                Some(held) if held != reg.service_name => return Err(RegistryError::TakenUrl { url, name: held }),
                None if state.tasks.len() >= self.inner.config.max_registrations => {
                    return Err(RegistryError::Full("registrations", self.inner.config.max_registrations));
                }
                _ => {}
            }
            let outcome = state.table.register(reg);
            if outcome.is_new {
                let handles = self.spawn_tasks(&url);
                if let Some(old) = state.tasks.insert(url.clone(), handles) {
                    old.cancel.cancel();
                }
            } else if let Some(h) = state.tasks.get_mut(&url) {
                // Sessions of the registration it replaces are over.
                h.end_sessions();
            }
            for name in &outcome.changed_names {
                state.poke_dependents(name);
            }
            outcome.generation
        };
        // Clients of the original look their providers up right after
        // registering, so the first patch goes out before we answer.
        deliverer::deliver(self, &url).await;
        let mut state = self.state();
        let providers = state.table.providers_for(&url);
        state.table.answered(&url, generation, &providers);
        state.poke(&url);
        Ok(Diff { added: providers, removed: vec![] }.to_patch())
    }

    pub fn deregister(&self, url: &str) -> Result<(), RegistryError> {
        let url = url.trim();
        let mut state = self.state();
        let entry = state.table.deregister(url).ok_or_else(|| RegistryError::UnknownService(url.to_owned()))?;
        state.stop_tasks(url);
        state.poke_dependents(entry.name());
        tracing::info!(service = %entry.name(), %url, "deregistered");
        Ok(())
    }

    /// A place for one more open session, held while it lasts.
    pub(super) fn session_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, RegistryError> {
        self.inner
            .sessions
            .clone()
            .try_acquire_owned()
            .map_err(|_| RegistryError::Full("sessions", self.inner.config.max_sessions))
    }

    /// A session of `url` opened: returns the registration it belongs to,
    /// and a token cancelled when that registration is removed or replaced.
    pub(super) fn session_opened(&self, url: &str) -> Result<(u64, CancellationToken), RegistryError> {
        let mut state = self.state();
        let generation =
            state.table.get(url).map(|e| e.generation).ok_or_else(|| RegistryError::UnknownService(url.to_owned()))?;
        let ended = state.tasks.get(url).map(|h| h.session_end.clone()).unwrap_or_default();
        state.table.session_opened(url);
        Ok((generation, ended))
    }

    /// A session of `url` closed (see [`Table::session_closed`]).
    pub(super) fn session_closed(&self, url: &str, generation: u64, lost: bool) {
        let state = &mut *self.state();
        if state.table.session_closed(url, generation, lost) {
            tracing::debug!(%url, "session lost: probing now");
            if let Some(h) = state.tasks.get(url) {
                h.probe_now.notify_one();
            }
        }
    }

    /// What to probe for `url`, for which registration of it, and how long
    /// to wait first; None when it is gone.
    fn probe_target(&self, url: &str) -> Option<ProbeTarget> {
        let state = self.state();
        let e = state.table.get(url)?;
        Some(ProbeTarget {
            heartbeat: reqwest::Url::parse(e.heartbeat_url()).map_err(|e| e.to_string()),
            name: e.name().to_owned(),
            generation: e.generation,
            delay: state.table.probe_delay(e),
        })
    }

    /// Records a probe, acts on the change it causes, and says when to probe
    /// next and for which registration (None when `url` is gone): one lock
    /// per probe.
    fn probe_result(&self, url: &str, generation: u64, outcome: Result<Duration, String>) -> Option<(Duration, u64)> {
        let mut state = self.state();
        if let Some(transition) = state.table.probe_result(url, generation, outcome, Instant::now()) {
            self.transition(&mut state, url, transition);
        }
        let e = state.table.get(url)?;
        Some((state.table.probe_delay(e), e.generation))
    }

    fn transition(&self, state: &mut State, url: &str, transition: Transition) {
        match transition {
            Transition::Removed { name, cause, silent_for } => {
                tracing::warn!(service = %name, %url, %cause, "removed: service is critical");
                let via = if cause.starts_with("session") { "session" } else { "probes" };
                metrics::counter!("gradebook_registry_removals_total", "via" => via).increment(1);
                metrics::histogram!("gradebook_registry_detection_seconds", "via" => via)
                    .record(silent_for.as_secs_f64());
                state.poke_dependents(&name);
                // If it is alive after all (paused, cut off), it learns at
                // once that it must register again.
                if let Some(h) = state.tasks.get_mut(url) {
                    h.end_sessions();
                }
            }
            Transition::Recovered { name } => {
                tracing::info!(service = %name, %url, "recovered: heartbeat answers again, re-added");
                metrics::counter!("gradebook_registry_recoveries_total").increment(1);
                state.poke_dependents(&name);
                // It may have missed changes while it was down.
                state.poke(url);
            }
            Transition::Forgotten { name } => {
                tracing::info!(service = %name, %url, "forgotten: critical for longer than the retention");
                state.stop_tasks(url);
            }
        }
    }

    /// The patch `url` needs next, if any.
    fn next_patch(&self, url: &str) -> Option<PendingPatch> {
        let state = self.state();
        let (patch, generation) = state.table.next_patch(url, Instant::now())?;
        let entry = state.table.get(url)?;
        let (update_url, name) = (entry.update_url().to_owned(), entry.name().to_owned());
        let seq = self.inner.next_seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(PendingPatch { patch, seq, generation, update_url, name })
    }

    fn delivered(&self, url: &str, sent: &PendingPatch) {
        self.state().table.delivered(url, sent.generation, &sent.patch);
    }

    fn delivery_failed(&self, url: &str, sent: &PendingPatch) {
        self.state().table.delivery_failed(url, sent.generation, &sent.patch);
    }

    /// The lock that keeps sends to `url` one at a time, while it is registered.
    fn send_lock(&self, url: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.state().tasks.get(url).map(|h| h.send_lock.clone())
    }

    /// After the warm-up, removals held back for providers that never came
    /// back are sent.
    fn spawn_warmup_end(&self) {
        let registry = self.clone();
        let warmup = self.inner.config.policy.warmup;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(warmup) => {
                    let state = registry.state();
                    for url in state.table.all_dependents() {
                        state.poke(&url);
                    }
                }
                _ = registry.inner.shutdown.cancelled() => {}
            }
        });
    }
}
