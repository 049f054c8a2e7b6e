//! The `gradebook` command line: one subcommand per service, each with its
//! typed arguments (every flag with an environment fallback). Defaults live
//! in one place each: addresses in `gradebook_runtime::cli::defaults`, the
//! rest in the `Default` of the configuration a flag feeds. The binary only
//! parses and dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use gradebook_runtime::cli::{Common, PortalArgs, ServiceArgs, defaults, display};
use gradebook_runtime::{Runtime, ServiceSpec};
use gradebook_shared::names;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::log::StoreConfig;
use crate::registry;

#[derive(Debug, Parser)]
#[command(name = "gradebook", version, about = "Gradebook: a small distributed grade book")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service registry (registration, discovery, health checks).
    Registry(RegistryArgs),
    /// Run the central log service.
    Log(LogArgs),
    /// Run the grading service (students and grades).
    Grading(GradingArgs),
    /// Run a service that does nothing but register, require others and
    /// answer heartbeats: for experiments, drills and benchmarks.
    Stub(crate::stub::StubArgs),
    /// Run the whole system: registry, log, grading and portal, as separate processes.
    Up(UpArgs),
    /// Manage the accounts people sign in with (in grading's database).
    Accounts(crate::accounts::AccountsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where the registry listens.
    #[arg(long, env = "GRADEBOOK_REGISTRY_ADDR", default_value = defaults::REGISTRY_ADDR)]
    pub registry_addr: SocketAddr,
    /// Where the log service listens.
    #[arg(long, env = "GRADEBOOK_LOG_ADDR", default_value = defaults::LOG_ADDR)]
    pub log_addr: SocketAddr,
    /// Where the first grading instance listens; more take the next ports.
    #[arg(long, env = "GRADEBOOK_GRADING_ADDR", default_value = defaults::GRADING_ADDR)]
    pub grading_addr: SocketAddr,
    /// How many grading instances to start (more than one needs a PostgreSQL --database-url).
    #[arg(long, env = "GRADEBOOK_GRADING_INSTANCES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub grading: u16,
    /// Grading's database (default: SQLite in the data directory).
    #[arg(long, env = "GRADEBOOK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the portal listens.
    #[arg(long, env = "GRADEBOOK_PORTAL_ADDR", default_value = defaults::PORTAL_ADDR)]
    pub portal_addr: SocketAddr,
    /// The portal's static site (scripts/build-portal.sh writes it here).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
    /// Start without the portal.
    #[arg(long)]
    pub no_portal: bool,
    /// Run the cluster open, without a token: for the tutorial and for the
    /// original Go services, which cannot send one. Anyone who can reach a
    /// port can then change grades.
    #[arg(long, env = "GRADEBOOK_OPEN")]
    pub open: bool,
    /// Data directory (grades, logs), kept between runs.
    #[arg(long, env = "GRADEBOOK_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct LogArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_LOG_ADDR", default_value = defaults::LOG_ADDR)]
    pub addr: SocketAddr,
    /// Where the log files live.
    #[arg(long, env = "GRADEBOOK_LOG_DIR", default_value_os_t = StoreConfig::default().dir)]
    pub dir: PathBuf,
    /// Rotate the current file beyond this many bytes.
    #[arg(long, env = "GRADEBOOK_LOG_MAX_FILE_BYTES", default_value_t = StoreConfig::default().max_file_bytes)]
    pub max_file_bytes: u64,
    /// Rotated files kept.
    #[arg(long, env = "GRADEBOOK_LOG_KEEP_FILES", default_value_t = StoreConfig::default().keep_files)]
    pub keep_files: usize,
    /// Longest time a written entry waits for its fsync.
    #[arg(long, env = "GRADEBOOK_LOG_FLUSH_INTERVAL", default_value_t = StoreConfig::default().flush_interval.into())]
    #[serde(serialize_with = "display")]
    pub flush_interval: humantime::Duration,
    /// Recent entries kept in memory for queries, at most.
    #[arg(long, env = "GRADEBOOK_LOG_MEMORY_RECORDS", default_value_t = StoreConfig::default().memory_records)]
    pub memory_records: usize,
    /// Bytes of recent entries kept in memory for queries, at most.
    #[arg(long, env = "GRADEBOOK_LOG_MEMORY_BYTES", default_value_t = StoreConfig::default().memory_bytes)]
    pub memory_bytes: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,
}

impl LogArgs {
    pub fn config(&self) -> StoreConfig {
        StoreConfig {
            dir: self.dir.clone(),
            max_file_bytes: self.max_file_bytes,
            keep_files: self.keep_files,
            flush_interval: self.flush_interval.into(),
            memory_records: self.memory_records.max(1),
            memory_bytes: self.memory_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct GradingArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_GRADING_ADDR", default_value = defaults::GRADING_ADDR)]
    pub addr: SocketAddr,
    /// sqlite://PATH (embedded, one instance) or postgres://... (shared by several instances).
    #[arg(long, env = "GRADEBOOK_DATABASE_URL", default_value = "sqlite://data/grading.db")]
    pub database_url: String,
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,
}

#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct RegistryArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_REGISTRY_ADDR", default_value = defaults::REGISTRY_ADDR)]
    pub addr: SocketAddr,
    /// Time between probes of a healthy service.
    #[arg(long, env = "GRADEBOOK_PROBE_INTERVAL", default_value_t = POLICY.interval.into())]
    #[serde(serialize_with = "display")]
    pub probe_interval: humantime::Duration,
    /// Deadline of one heartbeat probe.
    #[arg(long, env = "GRADEBOOK_PROBE_TIMEOUT", default_value_t = POLICY.timeout.into())]
    #[serde(serialize_with = "display")]
    pub probe_timeout: humantime::Duration,
    /// Time between probes while a failure or recovery is being confirmed.
    #[arg(long, env = "GRADEBOOK_PROBE_RETRY_INTERVAL", default_value_t = POLICY.retry_interval.into())]
    #[serde(serialize_with = "display")]
    pub probe_retry_interval: humantime::Duration,
    /// Time between probes of a healthy service that holds a session (its
    /// crash is reported by the session; probes only catch a hang). Keep it
    /// below the services' `--reregister-after`.
    #[arg(long, env = "GRADEBOOK_SESSION_PROBE_INTERVAL", default_value_t = POLICY.session_interval.into())]
    #[serde(serialize_with = "display")]
    pub session_probe_interval: humantime::Duration,
    /// Consecutive failed probes that remove a service.
    #[arg(long, env = "GRADEBOOK_FAILURE_THRESHOLD", default_value_t = POLICY.failure_threshold, value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_threshold: u32,
    /// Consecutive good probes that re-add a removed service.
    #[arg(long, env = "GRADEBOOK_RECOVERY_THRESHOLD", default_value_t = POLICY.recovery_threshold, value_parser = clap::value_parser!(u32).range(1..))]
    pub recovery_threshold: u32,
    /// How long a removed service keeps being probed before it is forgotten.
    #[arg(long, env = "GRADEBOOK_RETENTION", default_value_t = POLICY.retention.into())]
    #[serde(serialize_with = "display")]
    pub retention: humantime::Duration,
    /// After start, how long removals of not-yet-re-registered providers are held back.
    #[arg(long, env = "GRADEBOOK_WARMUP", default_value_t = POLICY.warmup.into())]
    #[serde(serialize_with = "display")]
    pub warmup: humantime::Duration,
    /// Deadline of one patch delivery.
    #[arg(long, env = "GRADEBOOK_PATCH_TIMEOUT", default_value_t = registry::Config::default().patch_timeout.into())]
    #[serde(serialize_with = "display")]
    pub patch_timeout: humantime::Duration,
    /// Accept heartbeat/update URLs on another host than the service URL.
    #[arg(long, env = "GRADEBOOK_ALLOW_FOREIGN_URLS")]
    pub allow_foreign_urls: bool,
    /// Registrations held at most (429 beyond).
    #[arg(long, env = "GRADEBOOK_MAX_REGISTRATIONS", default_value_t = registry::Config::default().max_registrations)]
    pub max_registrations: usize,
    /// Sessions open at most (429 beyond).
    #[arg(long, env = "GRADEBOOK_MAX_SESSIONS", default_value_t = registry::Config::default().max_sessions)]
    pub max_sessions: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
}

/// The registry's documented health-check policy.
const POLICY: registry::Policy = registry::Policy::DEFAULT;

impl RegistryArgs {
    pub fn config(&self) -> registry::Config {
        registry::Config {
            policy: registry::Policy {
                interval: self.probe_interval.into(),
                timeout: self.probe_timeout.into(),
                retry_interval: self.probe_retry_interval.into(),
                failure_threshold: self.failure_threshold,
                recovery_threshold: self.recovery_threshold,
                retention: self.retention.into(),
                warmup: self.warmup.into(),
                session_interval: self.session_probe_interval.into(),
            },
            token: self.common.token.clone(),
            allow_foreign_urls: self.allow_foreign_urls,
            patch_timeout: self.patch_timeout.into(),
            drain_timeout: self.common.drain_timeout.into(),
            max_registrations: self.max_registrations,
            max_sessions: self.max_sessions,
            ..registry::Config::default()
        }
    }
}

/// Entry point of the `gradebook` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gradebook: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradebook: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(gradebook_runtime::signal::cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Registry(args) => {
            let logs = args.common.telemetry(names::REGISTRY)?;
            let listener = bind(args.addr).await?;
            let registry = registry::Registry::new(args.config(), shutdown.clone());
            if let Some(buffer) = logs {
                registry.ship_logs(buffer);
            }
            registry::serve(listener, registry, shutdown).await?;
        }
        Command::Log(args) => {
            let logs = args.service.common.telemetry(names::LOG)?;
            let listener = bind(args.addr).await?;
            let runtime = runtime(&listener, args.service.spec(names::LOG, &[], logs))?;
            crate::log::serve(listener, runtime, args.config(), shutdown).await?;
        }
        Command::Grading(args) => {
            let logs = args.service.common.telemetry(names::GRADING)?;
            let listener = bind(args.addr).await?;
            let db = crate::grading::Db::connect(&args.database_url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", args.database_url))?;
            let spec = args.service.spec(names::GRADING, &[names::LOG.to_owned()], logs);
            let runtime = runtime(&listener, spec)?;
            crate::grading::serve(listener, runtime, crate::grading::Grading::new(db), shutdown).await?;
        }
        Command::Stub(args) => {
            let logs = args.service.common.telemetry(&args.name)?;
            let listener = bind(args.addr).await?;
            let runtime = runtime(&listener, args.service.spec(&args.name, &args.requires, logs))?;
            crate::stub::serve(listener, runtime, shutdown).await?;
        }
        Command::Up(args) => {
            gradebook_runtime::telemetry::init(&args.common.log_filter, None);
            crate::up::run(&args, shutdown).await?;
        }
        Command::Accounts(args) => crate::accounts::cli::run(args).await?,
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

fn runtime(listener: &TcpListener, spec: ServiceSpec) -> anyhow::Result<Runtime> {
    Ok(Runtime::new(spec, listener.local_addr()?))
}

/// The arguments each child of `up` is started with, so the tests below can
/// check that every one of them parses back into what `up` meant.
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    Registry(RegistryArgs),
    Log(LogArgs),
    Grading(GradingArgs),
    Portal(PortalArgs),
}

impl Child {
    /// The binary beside `gradebook` that runs it; None: `gradebook` itself.
    pub fn program(&self) -> Option<&'static str> {
        matches!(self, Child::Portal(_)).then_some("gradebook-portal")
    }

    /// The command line that starts it (after the program's name).
    pub fn args(&self) -> Vec<String> {
        use gradebook_runtime::cli::to_args;
        let (subcommand, flags) = match self {
            Child::Registry(a) => (Some("registry"), to_args(a)),
            Child::Log(a) => (Some("log"), to_args(a)),
            Child::Grading(a) => (Some("grading"), to_args(a)),
            Child::Portal(a) => (None, to_args(a)),
        };
        subcommand.map(str::to_owned).into_iter().chain(flags).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradebook_runtime::cli::defaults_of;

    fn reparse(child: &Child) -> Child {
        let args = child.args();
        match child {
            Child::Portal(_) => Child::Portal(
                PortalArgs::try_parse_from(std::iter::once("gradebook-portal".to_owned()).chain(args)).unwrap(),
            ),
            _ => match Cli::try_parse_from(std::iter::once("gradebook".to_owned()).chain(args)).unwrap().command {
                Command::Registry(a) => Child::Registry(a),
                Command::Log(a) => Child::Log(a),
                Command::Grading(a) => Child::Grading(a),
                other => panic!("unexpected {other:?}"),
            },
        }
    }

    #[test]
    fn every_child_of_up_parses_back_into_the_arguments_it_was_rendered_from() {
        let mut registry: RegistryArgs = defaults_of();
        registry.probe_interval = std::time::Duration::from_millis(1250).into();
        registry.allow_foreign_urls = true;
        registry.failure_threshold = 9;
        let mut log: LogArgs = defaults_of();
        log.dir = "/tmp/some where/log".into();
        log.service.no_session = true;
        log.service.advertise = Some("http://10.1.2.3:4000".into());
        let mut grading: GradingArgs = defaults_of();
        grading.database_url = "postgres://u@h/db".into();
        grading.service.common.ship_level = "off".into();
        let mut portal: PortalArgs = defaults_of();
        portal.addr = Some("127.0.0.1:5999".parse().unwrap());

        for child in [Child::Registry(registry), Child::Log(log), Child::Grading(grading), Child::Portal(portal)] {
            assert_eq!(reparse(&child), child, "{:?}", child.args());
        }
    }

    #[test]
    fn flag_defaults_are_the_configuration_defaults() {
        let registry: RegistryArgs = defaults_of();
        let config = registry.config();
        assert_eq!(config.policy, registry::Policy::default());
        assert_eq!(config.patch_timeout, registry::Config::default().patch_timeout);
        let log: LogArgs = defaults_of();
        assert_eq!(log.config(), StoreConfig::default());
    }
}
