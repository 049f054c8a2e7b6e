//! Process-wide tracing set-up: console output filtered by `RUST_LOG` (or
//! the given default) and, when given a buffer, shipping to the log service
//! with its own level.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::logship::LogBuffer;

pub fn init(default_filter: &str, ship: Option<&LogBuffer>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(false).with_filter(filter))
        .with(ship.map(|b| b.layer()))
        .try_init();
}
