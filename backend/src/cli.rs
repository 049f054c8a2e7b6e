//! The `gradebook` command line: one subcommand per service. Every address,
//! interval and path has a flag with an environment fallback; defaults are
//! the documented ones.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Options every service on the runtime shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Shared secret for registering and deregistering (unset = open).
    #[arg(long, env = "GRADEBOOK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Default log filter when RUST_LOG is unset.
    #[arg(long, env = "GRADEBOOK_LOG_FILTER", default_value = "info", global = true)]
    pub log_filter: String,
}

#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_REGISTRY_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Time between probes of a healthy service.
    #[arg(long, env = "GRADEBOOK_PROBE_INTERVAL", default_value = "500ms", value_parser = duration)]
    pub probe_interval: Duration,
    /// Deadline of one heartbeat probe.
    #[arg(long, env = "GRADEBOOK_PROBE_TIMEOUT", default_value = "500ms", value_parser = duration)]
    pub probe_timeout: Duration,
    /// Time between probes while a failure or recovery is being confirmed.
    #[arg(long, env = "GRADEBOOK_PROBE_RETRY_INTERVAL", default_value = "100ms", value_parser = duration)]
    pub probe_retry_interval: Duration,
    /// Consecutive failed probes that remove a service.
    #[arg(long, env = "GRADEBOOK_FAILURE_THRESHOLD", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_threshold: u32,
    /// Consecutive good probes that re-add a removed service.
    #[arg(long, env = "GRADEBOOK_RECOVERY_THRESHOLD", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub recovery_threshold: u32,
    /// How long a removed service keeps being probed before it is forgotten.
    #[arg(long, env = "GRADEBOOK_RETENTION", default_value = "60s", value_parser = duration)]
    pub retention: Duration,
    /// After start, how long removals of not-yet-re-registered providers are held back.
    #[arg(long, env = "GRADEBOOK_WARMUP", default_value = "2s", value_parser = duration)]
    pub warmup: Duration,
    /// Deadline of one patch delivery.
    #[arg(long, env = "GRADEBOOK_PATCH_TIMEOUT", default_value = "500ms", value_parser = duration)]
    pub patch_timeout: Duration,
    /// Accept heartbeat/update URLs on another host than the service URL.
    #[arg(long, env = "GRADEBOOK_ALLOW_FOREIGN_URLS")]
    pub allow_foreign_urls: bool,
    #[command(flatten)]
    pub common: Common,
}

impl RegistryArgs {
    pub fn config(&self) -> registry::Config {
        registry::Config {
            policy: registry::Policy {
                interval: self.probe_interval,
                timeout: self.probe_timeout,
                retry_interval: self.probe_retry_interval,
                failure_threshold: self.failure_threshold,
                recovery_threshold: self.recovery_threshold,
                retention: self.retention,
                warmup: self.warmup,
            },
            token: self.common.token.clone(),
            allow_foreign_urls: self.allow_foreign_urls,
            patch_timeout: self.patch_timeout,
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
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Registry(args) => {
            crate::telemetry::init(&args.common.log_filter);
            let listener = bind(args.addr).await?;
            let registry = registry::Registry::new(args.config(), shutdown.clone());
            registry::serve(listener, registry, shutdown).await?;
        }
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
    token.cancel();
}
