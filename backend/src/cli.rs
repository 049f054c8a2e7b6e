//! The `gradebook` command line: one subcommand per service. Every address,
//! interval and path has a flag with an environment fallback; defaults are
//! the documented ones.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use gradebook_shared::names;

use crate::registry;
use crate::runtime::logship::LogBuffer;

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
    Stub(StubArgs),
    /// Run the whole system: registry, log, grading and portal, as separate processes.
    Up(UpArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where the registry listens.
    #[arg(long, env = "GRADEBOOK_REGISTRY_ADDR", default_value = "127.0.0.1:3000")]
    pub registry_addr: SocketAddr,
    /// Where the log service listens.
    #[arg(long, env = "GRADEBOOK_LOG_ADDR", default_value = "127.0.0.1:4000")]
    pub log_addr: SocketAddr,
    /// Where the first grading instance listens; more take the next ports.
    #[arg(long, env = "GRADEBOOK_GRADING_ADDR", default_value = "127.0.0.1:6000")]
    pub grading_addr: SocketAddr,
    /// How many grading instances to start (more than one needs a PostgreSQL --database-url).
    #[arg(long, env = "GRADEBOOK_GRADING_INSTANCES", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub grading: u16,
    /// Grading's database (default: SQLite in the data directory).
    #[arg(long, env = "GRADEBOOK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the portal listens.
    #[arg(long, env = "GRADEBOOK_PORTAL_ADDR", default_value = "127.0.0.1:5005")]
    pub portal_addr: SocketAddr,
    /// The portal's static site (cargo leptos build --release writes it here).
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: std::path::PathBuf,
    /// Start without the portal.
    #[arg(long)]
    pub no_portal: bool,
    /// Data directory (grades, logs), kept between runs.
    #[arg(long, env = "GRADEBOOK_DATA_DIR", default_value = "data")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub common: Common,
}

impl UpArgs {
    /// The processes of the system, in start order.
    pub fn parts(&self) -> anyhow::Result<Vec<crate::up::Part>> {
        let registry_url = format!("http://{}", self.registry_addr);
        let database_url = match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("grading.db").display()),
        };
        if self.grading > 1 && !database_url.starts_with("postgres") {
            anyhow::bail!(
                "--grading {} needs a shared database: with SQLite every instance would keep its own grades. \
                 Pass --database-url postgres://USER@HOST/DB (or run one instance).",
                self.grading
            );
        }
        let s = |v: &str| v.to_owned();
        let mut common = vec![s("--registry-url"), registry_url.clone()];
        if let Some(token) = &self.common.token {
            common.extend([s("--token"), token.clone()]);
        }
        let part = |name: String, mut args: Vec<String>, addr: SocketAddr, service: Option<&str>| {
            if service.is_some() {
                args.extend(common.iter().cloned());
            }
            crate::up::Part {
                name,
                program: None,
                env: vec![],
                args,
                ready_url: format!("http://{addr}/healthz"),
                registered_as: service.map(|s| (s.to_owned(), format!("http://{addr}"))),
                registry_url: registry_url.clone(),
            }
        };
        let mut parts = vec![
            part(
                s("registry"),
                vec![s("registry"), s("--addr"), self.registry_addr.to_string()],
                self.registry_addr,
                None,
            ),
            part(
                s("log"),
                vec![
                    s("log"),
                    s("--addr"),
                    self.log_addr.to_string(),
                    s("--dir"),
                    self.data_dir.join("log").display().to_string(),
                ],
                self.log_addr,
                Some(names::LOG),
            ),
        ];
        for i in 0..self.grading {
            let mut addr = self.grading_addr;
            addr.set_port(addr.port() + i);
            let name = if self.grading == 1 { s("grading") } else { format!("grading{}", i + 1) };
            let args = vec![s("grading"), s("--addr"), addr.to_string(), s("--database-url"), database_url.clone()];
            parts.push(part(name, args, addr, Some(names::GRADING)));
        }
        if !self.no_portal {
            let mut portal = part(
                s("portal"),
                vec![s("--addr"), self.portal_addr.to_string()],
                self.portal_addr,
                Some(names::PORTAL),
            );
            portal.program = Some(s("gradebook-portal"));
            portal.env.push((s("LEPTOS_SITE_ROOT"), self.site_root.display().to_string()));
            parts.push(portal);
        }
        Ok(parts)
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Options every process shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Shared secret for registering and deregistering (unset = open).
    #[arg(long, env = "GRADEBOOK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Console log filter when RUST_LOG is unset.
    #[arg(long, env = "GRADEBOOK_LOG_FILTER", default_value = "info", global = true)]
    pub log_filter: String,
    /// Lowest level shipped to the log service (trace, debug, info, warn, error, or off).
    #[arg(long, env = "GRADEBOOK_SHIP_LEVEL", default_value = "info", global = true)]
    pub ship_level: String,
    /// Log records kept while the log service is unreachable (oldest dropped beyond).
    #[arg(long, env = "GRADEBOOK_SHIP_BUFFER", default_value_t = 10_000, global = true)]
    pub ship_buffer: usize,
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
        Ok(buffer)
    }
}

/// How a service on the runtime finds and joins the system.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Base URL of the registry.
    #[arg(long, env = "GRADEBOOK_REGISTRY_URL", default_value = "http://127.0.0.1:3000")]
    pub registry_url: String,
    /// URL other services reach this one at (default: http://<listen address>).
    #[arg(long, env = "GRADEBOOK_ADVERTISE")]
    pub advertise: Option<String>,
    /// Deadline of calls to the registry and to other services.
    #[arg(long, env = "GRADEBOOK_CALL_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub call_timeout: Duration,
    /// Do not hold a session with the registry (probes alone then detect a crash).
    #[arg(long, env = "GRADEBOOK_NO_SESSION")]
    pub no_session: bool,
}

impl ServiceArgs {
    pub fn spec(
        &self,
        name: &str,
        required: &[String],
        common: &Common,
        logs: Option<LogBuffer>,
    ) -> crate::runtime::ServiceSpec {
        let spec = crate::runtime::ServiceSpec {
            name: name.to_owned(),
            advertise: self.advertise.clone(),
            required: required.to_vec(),
            registry_url: self.registry_url.clone(),
            token: common.token.clone(),
            call_timeout: self.call_timeout,
            session: !self.no_session,
            logs: None,
        };
        match logs {
            Some(buffer) => spec.ship_logs(buffer),
            None => spec,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_LOG_ADDR", default_value = "127.0.0.1:4000")]
    pub addr: SocketAddr,
    /// Where the log files live.
    #[arg(long, env = "GRADEBOOK_LOG_DIR", default_value = "data/log")]
    pub dir: std::path::PathBuf,
    /// Rotate the current file beyond this many bytes.
    #[arg(long, env = "GRADEBOOK_LOG_MAX_FILE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// Rotated files kept.
    #[arg(long, env = "GRADEBOOK_LOG_KEEP_FILES", default_value_t = 4)]
    pub keep_files: usize,
    /// Longest time a written entry waits for its fsync.
    #[arg(long, env = "GRADEBOOK_LOG_FLUSH_INTERVAL", default_value = "50ms", value_parser = duration)]
    pub flush_interval: Duration,
    /// Recent entries kept in memory for queries and the live tail.
    #[arg(long, env = "GRADEBOOK_LOG_MEMORY_RECORDS", default_value_t = 100_000)]
    pub memory_records: usize,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct GradingArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_GRADING_ADDR", default_value = "127.0.0.1:6000")]
    pub addr: SocketAddr,
    /// sqlite://PATH (embedded, one instance) or postgres://... (shared by several instances).
    #[arg(long, env = "GRADEBOOK_DATABASE_URL", default_value = "sqlite://data/grading.db")]
    pub database_url: String,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Args)]
pub struct StubArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_STUB_ADDR", default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// Service name to register under.
    #[arg(long, default_value = "Stub")]
    pub name: String,
    /// Services it requires (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub requires: Vec<String>,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub common: Common,
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
            let logs = args.common.telemetry("Registry")?;
            let listener = bind(args.addr).await?;
            let registry = registry::Registry::new(args.config(), shutdown.clone());
            if let Some(buffer) = logs {
                registry.ship_logs(buffer);
            }
            registry::serve(listener, registry, shutdown).await?;
        }
        Command::Log(args) => {
            let logs = args.common.telemetry(names::LOG)?;
            let listener = bind(args.addr).await?;
            let spec = args.service.spec(names::LOG, &[], &args.common, logs);
            let runtime = crate::runtime::Runtime::new(spec, listener.local_addr()?);
            let config = crate::log::StoreConfig {
                dir: args.dir,
                max_file_bytes: args.max_file_bytes,
                keep_files: args.keep_files,
                flush_interval: args.flush_interval,
                memory_records: args.memory_records.max(1),
            };
            crate::log::serve(listener, runtime, config, shutdown).await?;
        }
        Command::Up(args) => {
            crate::telemetry::init(&args.common.log_filter, None);
            let parts = args.parts()?;
            let banner = if args.no_portal {
                format!("Gradebook is up: grading at http://{}/students", args.grading_addr)
            } else {
                format!("Gradebook is up: open http://{}", args.portal_addr)
            };
            crate::up::run(parts, &banner, shutdown).await?;
        }
        Command::Grading(args) => {
            let logs = args.common.telemetry(names::GRADING)?;
            let listener = bind(args.addr).await?;
            let db = crate::grading::Db::connect(&args.database_url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", args.database_url))?;
            let spec = args.service.spec(names::GRADING, &[names::LOG.to_owned()], &args.common, logs);
            let runtime = crate::runtime::Runtime::new(spec, listener.local_addr()?);
            crate::grading::serve(listener, runtime, crate::grading::Grading::new(db), shutdown).await?;
        }
        Command::Stub(args) => {
            let logs = args.common.telemetry(&args.name)?;
            let listener = bind(args.addr).await?;
            let spec = args.service.spec(&args.name, &args.requires, &args.common, logs);
            let runtime = crate::runtime::Runtime::new(spec, listener.local_addr()?);
            // Tests and scripts read where it listens from this line.
            println!("listening on {}", runtime.url());
            #[derive(serde::Deserialize)]
            struct Slow {
                ms: u64,
            }
            let app = axum::Router::new()
                .route(
                    "/providers",
                    axum::routing::get({
                        let rt = runtime.clone();
                        move || async move { axum::Json(rt.providers().snapshot()) }
                    }),
                )
                // A request that takes a while: for drills of draining on shutdown.
                .route(
                    "/slow",
                    axum::routing::get(|axum::extract::Query(q): axum::extract::Query<Slow>| async move {
                        tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
                        "done"
                    }),
                );
            crate::runtime::serve(listener, runtime, app, shutdown).await?;
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
