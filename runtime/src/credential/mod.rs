//! Per-service credentials derived from the cluster's master secret K, so
//! that no process holds a key that opens everything:
//!
//! - `root(N) = HMAC(K, "gradebook root\0" N)` is service N's own secret;
//! - `key(A→B) = HMAC(root(B), "from\0" A)` is what A sends B: B derives it
//!   for any caller from its own root, so it checks callers without holding
//!   their secrets, and holding it lets B pose as A only toward B itself;
//! - `key(Registry→N) = HMAC(root(Registry), "to\0" N)` authenticates the
//!   registry's patches to N: N is handed it, and it works nowhere else.
//!
//! On the wire a caller sends `Authorization: Bearer <CallerName>:<hex key>`.
//! The caller name [`OPERATOR`] is the operator's (anyone holding K).

mod policy;

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub use policy::{Policy, allow_only_registry_patches, open_heartbeat_paths};

/// The caller name of whoever holds K: `up`, an operator, a test.
pub const OPERATOR: &str = "Operator";
/// The registry's service name, as its credential names it.
pub const REGISTRY: &str = "RegistryService";

/// A 32-byte HMAC-SHA256 output, hex on the wire and in the environment.
pub type Key = [u8; 32];

fn mac(key: &[u8], parts: &[&[u8]]) -> Key {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Service `name`'s root secret under master secret `k`.
pub fn root(k: &str, name: &str) -> Key {
    mac(k.as_bytes(), &[b"gradebook root\0", name.as_bytes()])
}

/// The key `caller` sends to the service whose root is `receiver_root`.
pub fn pair(receiver_root: &Key, caller: &str) -> Key {
    mac(receiver_root, &[b"from\0", caller.as_bytes()])
}

/// The key the registry sends to service `name` (its patches).
pub fn from_registry(registry_root: &Key, name: &str) -> Key {
    mac(registry_root, &[b"to\0", name.as_bytes()])
}

/// The bearer an operator holding `k` sends to service `receiver`.
pub fn operator_bearer(k: &str, receiver: &str) -> String {
    format!("{OPERATOR}:{}", hex::encode(pair(&root(k, receiver), OPERATOR)))
}

/// Who a verified request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    pub fn is_operator(&self) -> bool {
        self.0 == OPERATOR
    }
}

/// What one service holds: its name and root, the keys it sends to the
/// services it may call, and the key the registry sends it. With `master`
/// (a process started with `--token K`) it derives any key, and accepts K
/// itself as the operator's bearer.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Credential {
    pub name: String,
    #[serde(with = "hex")]
    root: Key,
    #[serde(default)]
    calls: BTreeMap<String, HexKey>,
    #[serde(default)]
    registry: Option<HexKey>,
    #[serde(skip)]
    master: Option<String>,
    /// The scrape credential `/metrics` takes (`--metrics-token`).
    #[serde(skip)]
    scrape: Option<String>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
struct HexKey(#[serde(with = "hex")] Key);

impl std::fmt::Debug for Credential {
    /// Names only: a credential's keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("name", &self.name).field("calls", &self.calls.keys()).finish()
    }
}

impl Credential {
    /// The credential of service `name` that may call `calls`, derived from K.
    pub fn derive(k: &str, name: &str, calls: &[&str]) -> Self {
        let registry_root = root(k, REGISTRY);
        let mut calls: BTreeMap<String, HexKey> =
            calls.iter().map(|to| ((*to).to_owned(), HexKey(pair(&root(k, to), name)))).collect();
        let registry = if name == REGISTRY {
            None
        } else {
            calls.insert(REGISTRY.to_owned(), HexKey(pair(&registry_root, name)));
            Some(HexKey(from_registry(&registry_root, name)))
        };
        Self { name: name.to_owned(), root: root(k, name), calls, registry, master: None, scrape: None }
    }

    /// A process started with K: it derives every key it needs, on demand.
    pub fn from_master(k: &str, name: &str) -> Self {
        Self { master: Some(k.to_owned()), ..Self::derive(k, name, &[]) }
    }

    /// The same credential, whose `/metrics` also takes `scrape` as a bearer.
    pub fn with_scrape_token(mut self, scrape: Option<String>) -> Self {
        self.scrape = scrape;
        self
    }

    /// Whether `bearer` is the scrape credential of `/metrics`.
    pub fn accepts_scrape(&self, bearer: &[u8]) -> bool {
        self.scrape.as_ref().is_some_and(|s| same(s.as_bytes(), bearer))
    }

    /// Parses the text [`Credential::render`] gives (the environment's form).
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("not a Gradebook credential: {e}"))
    }

    /// The form handed to a child through `GRADEBOOK_CREDENTIAL`.
    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("a credential serializes")
    }

    /// This service's own secret, for keys only it needs (e.g. cookies).
    pub fn own_secret(&self) -> String {
        hex::encode(mac(&self.root, &[b"own secret"]))
    }

    /// What this service sends to `receiver`, or None when it may not call it.
    pub fn bearer_to(&self, receiver: &str) -> Option<String> {
        let key = match &self.master {
            Some(k) => pair(&root(k, receiver), &self.name),
            None => self.calls.get(receiver)?.0,
        };
        Some(format!("{}:{}", self.name, hex::encode(key)))
    }

    /// As the registry: the bearer of its patches to `service`.
    pub fn registry_bearer_to(&self, service: &str) -> String {
        format!("{REGISTRY}:{}", hex::encode(from_registry(&self.root, service)))
    }

    /// Who sent `bearer` (the text after `Bearer `), if anyone this service
    /// can check: a caller's pairwise key, the registry's key, or K.
    pub fn verify(&self, bearer: &[u8]) -> Option<Caller> {
        if let Some(k) = &self.master
            && same(bearer, k.as_bytes())
        {
            return Some(Caller(OPERATOR.to_owned()));
        }
        let text = std::str::from_utf8(bearer).ok()?;
        let (name, given) = text.rsplit_once(':')?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(given, &mut key).ok()?;
        if same(&key, &pair(&self.root, name)) {
            return Some(Caller(name.to_owned()));
        }
        if name == REGISTRY
            && let Some(registry) = &self.registry
            && same(&key, &registry.0)
        {
            return Some(Caller(REGISTRY.to_owned()));
        }
        None
    }
}

/// The header a registry's probe carries instead of any credential.
pub const PROBE_HEADER: &str = "x-gradebook-probe";
/// How long a probe's proof counts: a replay works only this long, and only
/// toward the service it was made for.
pub const PROBE_PROOF_SECS: u64 = 10;

impl Credential {
    /// As the registry: a proof, for `service`'s heartbeat at unix time
    /// `now`, that the probe is the registry's. It opens nothing anywhere.
    pub fn probe_proof(&self, service: &str, now: u64) -> String {
        format!("{now}.{}", probe_mac(&from_registry(&self.root, service), now))
    }

    /// Whether `proof` is a fresh probe proof from the registry for us.
    pub fn accepts_probe(&self, proof: &[u8], now: u64) -> bool {
        let key = match (&self.master, &self.registry) {
            (Some(k), _) => from_registry(&root(k, REGISTRY), &self.name),
            (None, Some(key)) => key.0,
            (None, None) => return false,
        };
        let Some((at, given)) = std::str::from_utf8(proof).ok().and_then(|p| p.split_once('.')) else { return false };
        let Ok(at) = at.parse::<u64>() else { return false };
        if at.abs_diff(now) > PROBE_PROOF_SECS {
            return false;
        }
        same(given.as_bytes(), probe_mac(&key, at).as_bytes())
    }
}

/// The MAC a probe proof carries for unix time `at`, under the registry's
/// key toward the probed service.
fn probe_mac(key: &Key, at: u64) -> String {
    hex::encode(mac(key, &[b"probe\0", at.to_string().as_bytes()]))
}

/// Whether two secrets are equal, compared in constant time (subtle answers
/// false for different lengths without comparing).
fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

/// Seconds since the Unix epoch, for probe proofs.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Parses `--credential` (and `GRADEBOOK_CREDENTIAL`).
pub fn parse_credential(text: &str) -> Result<Credential, String> {
    Credential::parse(text)
}

#[cfg(test)]
mod tests;
