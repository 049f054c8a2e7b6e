//! The command-line arguments every process shares (clap, each with an
//! environment fallback), the system's default addresses, and [`to_args`],
//! which renders typed arguments back to the command line that parses into
//! them — so `gradebook up` starts its children from typed configuration, and
//! renaming a flag can never silently break it.

use clap::Args;
use serde::Serialize;

use crate::logship::LogBuffer;

/// Where each part of the system listens unless told otherwise: the one
/// place these are written.
pub mod defaults {
    macro_rules! registry_addr {
        () => {
            "127.0.0.1:3000"
        };
    }
    pub const REGISTRY_ADDR: &str = registry_addr!();
    pub const REGISTRY_URL: &str = concat!("http://", registry_addr!());
    pub const LOG_ADDR: &str = "127.0.0.1:4000";
    pub const GRADING_ADDR: &str = "127.0.0.1:6000";
    pub const PORTAL_ADDR: &str = "127.0.0.1:5005";
}

/// Serializes a value as its text (e.g. a `humantime::Duration` as `500ms`),
/// the form its flag parses.
pub fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// Options every process shares.
#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct Common {
    /// Shared secret of the cluster (unset = open). Handed to children
    /// through the environment only: a command line is visible in `ps`.
    #[arg(long, env = "GRADEBOOK_TOKEN", hide_env_values = true, global = true, value_parser = crate::http::parse_token)]
    #[serde(skip)]
    pub token: Option<String>,
    /// This service's own credential (what `up` hands each child; `gradebook
    /// credential` prints one). Environment only, like the token.
    #[arg(long, env = "GRADEBOOK_CREDENTIAL", hide_env_values = true, global = true, value_parser = crate::credential::parse_credential)]
    #[serde(skip)]
    pub credential: Option<crate::credential::Credential>,
    /// Bearer that `GET /metrics` takes when the cluster is closed (unset:
    /// only the operator scrapes). Environment only.
    #[arg(long, env = "GRADEBOOK_METRICS_TOKEN", hide_env_values = true, global = true, value_parser = crate::http::parse_token)]
    #[serde(skip)]
    pub metrics_token: Option<String>,
    /// Console log filter when RUST_LOG is unset.
    #[arg(long, env = "GRADEBOOK_LOG_FILTER", default_value = "info", global = true)]
    pub log_filter: String,
    /// Lowest level shipped to the log service (trace, debug, info, warn, error, or off).
    #[arg(long, env = "GRADEBOOK_SHIP_LEVEL", default_value = "info", global = true)]
    pub ship_level: String,
    /// Log records kept while the log service is unreachable (oldest dropped beyond).
    #[arg(long, env = "GRADEBOOK_SHIP_BUFFER", default_value_t = 10_000, global = true)]
    pub ship_buffer: usize,
    /// After SIGTERM, how long open requests (live tails included) may take before they are cut.
    #[arg(long, env = "GRADEBOOK_DRAIN_TIMEOUT", default_value_t = crate::ServiceSpec::DEFAULT_DRAIN_TIMEOUT.into(), global = true)]
    #[serde(serialize_with = "display")]
    pub drain_timeout: humantime::Duration,
}

impl Common {
    /// Sets up console logging and, unless shipping is off, the buffer that
    /// ships `service`'s logs.
    pub fn telemetry(&self, service: &str) -> anyhow::Result<Option<LogBuffer>> {
        let buffer = match self.ship_level.as_str() {
            "off" | "none" => None,
            level => {
                let level = level.parse().map_err(|e| anyhow::anyhow!("--ship-level: {e}"))?;
                Some(LogBuffer::new(service, level, self.ship_buffer))
            }
        };
        crate::telemetry::init(&self.log_filter, buffer.as_ref());
        if self.token.is_none() && self.credential.is_none() {
            tracing::warn!(
                "running OPEN: no --token (GRADEBOOK_TOKEN), so anyone who can reach {service} can call it; \
                 fine for the tutorial and the original Go services only"
            );
        }
        Ok(buffer)
    }
}

/// How a service on the runtime finds and joins the system.
#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct ServiceArgs {
    /// Base URL of the registry.
    #[arg(long, env = "GRADEBOOK_REGISTRY_URL", default_value = defaults::REGISTRY_URL)]
    pub registry_url: String,
    /// URL other services reach this one at (default: http://<listen address>).
    #[arg(long, env = "GRADEBOOK_ADVERTISE")]
    pub advertise: Option<String>,
    /// Deadline of calls to the registry and to other services.
    #[arg(long, env = "GRADEBOOK_CALL_TIMEOUT", default_value_t = crate::ServiceSpec::DEFAULT_CALL_TIMEOUT.into())]
    #[serde(serialize_with = "display")]
    pub call_timeout: humantime::Duration,
    /// Do not hold a session with the registry (probes alone then detect a crash).
    #[arg(long, env = "GRADEBOOK_NO_SESSION")]
    pub no_session: bool,
    /// With a session, register again when the registry has not probed us for this long.
    #[arg(long, env = "GRADEBOOK_REREGISTER_AFTER", default_value_t = crate::ServiceSpec::DEFAULT_REREGISTER_AFTER.into())]
    #[serde(serialize_with = "display")]
    pub reregister_after: humantime::Duration,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
}

impl ServiceArgs {
    /// Who the service is, and how it joins the system.
    pub fn spec(&self, name: &str, required: &[String], logs: Option<LogBuffer>) -> crate::ServiceSpec {
        let spec = crate::ServiceSpec {
            name: name.to_owned(),
            advertise: self.advertise.clone(),
            required: required.to_vec(),
            registry_url: self.registry_url.clone(),
            token: self.common.token.clone(),
            credential: self.common.credential.clone(),
            metrics_token: self.common.metrics_token.clone(),
            policy: crate::credential::allow_only_registry_patches,
            call_timeout: self.call_timeout.into(),
            session: !self.no_session,
            logs: None,
            drain_timeout: self.common.drain_timeout.into(),
            reregister_after: self.reregister_after.into(),
            people_facing: false,
        };
        match logs {
            Some(buffer) => spec.ship_logs(buffer),
            None => spec,
        }
    }
}

/// The value clap gives `T` when no flag is passed (environment fallbacks
/// still apply), so defaults are written once: in the `#[arg]` attributes.
pub fn defaults_of<T: Args + clap::FromArgMatches>() -> T {
    let matches = T::augment_args(clap::Command::new("defaults")).get_matches_from(["defaults"]);
    T::from_arg_matches(&matches).expect("every argument has a default or is optional")
}

/// Renders `value` as the flags that parse back into it (`--name=value`, a
/// bare `--flag` for a set switch, one `--name=item` per list item). Fields
/// marked `#[serde(skip)]` (secrets) are left out.
///
/// Serde's field names and clap's argument ids are both the field's name, so
/// a renamed field or flag is followed here; the tests parse every rendering
/// back and compare.
pub fn to_args<T: Args + Serialize>(value: &T) -> Vec<String> {
    let command = T::augment_args(clap::Command::new("render"));
    let serde_json::Value::Object(fields) = serde_json::to_value(value).expect("arguments serialize") else {
        panic!("arguments serialize to an object");
    };
    let mut out = vec![];
    for (id, value) in fields {
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == id.as_str())
            .unwrap_or_else(|| panic!("field {id} is serialized but is not an argument"));
        let flag = format!("--{}", arg.get_long().unwrap_or_else(|| panic!("argument {id} has no long flag")));
        let text = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => s,
            v => v.to_string(),
        };
        match value {
            serde_json::Value::Null | serde_json::Value::Bool(false) => {}
            serde_json::Value::Bool(true) => out.push(flag),
            serde_json::Value::Array(items) => out.extend(items.into_iter().map(|i| format!("{flag}={}", text(i)))),
            v => out.push(format!("{flag}={}", text(v))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use clap::FromArgMatches;

    fn parse<T: Args + FromArgMatches>(args: &[String]) -> T {
        let command = T::augment_args(clap::Command::new("x"));
        let matches = command.try_get_matches_from(std::iter::once("x".to_owned()).chain(args.iter().cloned()));
        T::from_arg_matches(&matches.unwrap()).unwrap()
    }

    #[test]
    fn service_arguments_survive_rendering_and_parsing() {
        let args = ServiceArgs {
            registry_url: "http://10.0.0.1:3999".into(),
            advertise: Some("http://portal.example:80".into()),
            call_timeout: Duration::from_millis(1500).into(),
            no_session: true,
            reregister_after: Duration::from_secs(9).into(),
            common: Common {
                token: None,
                credential: None,
                metrics_token: None,
                log_filter: "debug".into(),
                ship_level: "warn".into(),
                ship_buffer: 7,
                drain_timeout: Duration::from_millis(2500).into(),
            },
        };

        let rendered = to_args(&args);

        assert_eq!(parse::<ServiceArgs>(&rendered), args, "{rendered:?}");
    }

    #[test]
    fn the_token_is_never_rendered_on_a_command_line() {
        let mut args: ServiceArgs = defaults_of();
        args.common.token = Some("s3cret".into());

        let rendered = to_args(&args).join(" ");

        assert!(!rendered.contains("s3cret") && !rendered.contains("--token"), "{rendered}");
    }
}
