//! Gradebook's wire types: every JSON body that crosses HTTP between the
//! registry, the services and the portal. The field names of the original
//! design (`ServiceName`, `Added`, `FirstName`, ...) are kept exactly so that
//! third-party services written against it interoperate with ours.
//!
//! This crate is deliberately tiny (serde only) because it is also compiled
//! to `wasm32-unknown-unknown` for the portal's browser client.

pub mod grading;
pub mod log;
pub mod registry;

use serde::{Deserialize, Serialize};

/// The body of every 4xx/5xx answer in the system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The request field the error is about, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ErrorBody {
    pub fn new(error: impl Into<String>) -> Self {
        Self { error: error.into(), field: None }
    }
}

/// Refuses text that holds a control character or a bidirectional
/// embedding, override or isolate, with a 400's body naming `field`. Names,
/// titles and URLs never hold one, and an override makes text display as
/// something else.
pub fn printable(field: &str, text: &str) -> Result<(), ErrorBody> {
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    match text.chars().enumerate().find(|&(_, c)| c.is_control() || bidi(c)) {
        Some((at, c)) => Err(ErrorBody {
            error: format!(
                "{field} must not contain control characters (U+{:04X} at character {})",
                u32::from(c),
                at + 1
            ),
            field: Some(field.to_owned()),
        }),
        None => Ok(()),
    }
}

/// Service names used by the system itself.
pub mod names {
    pub const LOG: &str = "LogService";
    pub const GRADING: &str = "GradingService";
    pub const PORTAL: &str = "Portal";
    /// The registry lists itself, so the status monitor shows it too.
    pub const REGISTRY: &str = "Registry";
}

/// Deserializes `null` (and, with `#[serde(default)]`, a missing field) as the
/// type's default: clients of the original send `"RequiredServices": null`.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
