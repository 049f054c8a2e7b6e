//! The `tracing` layer that fills a [`LogBuffer`]: each event at or above
//! the ship level becomes a record, its fields kept as JSON.

use gradebook_shared::log::{Level, NewLogRecord};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

use super::LogBuffer;

impl LogBuffer {
    /// The tracing layer that fills this buffer. Its own filter keeps
    /// callsites below the ship level (sqlx's per-query debug lines, the
    /// per-request ones) switched off, so they cost nothing when the console
    /// does not want them either.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let level = match self.inner.min_level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        // Events of the HTTP stack itself would feed back into shipping.
        let quiet = ["hyper", "hyper_util", "reqwest", "h2", "tower", "axum"]
            .map(|target| (target, tracing_subscriber::filter::LevelFilter::OFF));
        let filter = tracing_subscriber::filter::Targets::new().with_default(level).with_targets(quiet);
        ShipLayer { buffer: self.clone() }.with_filter(filter)
    }
}

struct ShipLayer {
    buffer: LogBuffer,
}

impl<S: tracing::Subscriber> Layer<S> for ShipLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        };
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        self.buffer.push(NewLogRecord {
            service: self.buffer.inner.service.clone(),
            level,
            message: visitor.message,
            timestamp: Some(crate::time::now_rfc3339()),
            fields: (!visitor.fields.is_empty()).then_some(visitor.fields),
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}
