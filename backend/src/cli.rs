//! The `gradebook` command line: one subcommand per service, each with the
//! typed arguments that live beside that service's configuration (every flag
//! with an environment fallback). The binary only parses and dispatches.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gradebook_runtime::{Runtime, ServiceSpec};
use gradebook_shared::names;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::AccountsArgs;
use crate::grading::args::GradingArgs;
use crate::log::args::LogArgs;
use crate::registry::args::RegistryArgs;
use crate::stub::StubArgs;
use crate::up::UpArgs;

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
    /// Manage the accounts people sign in with (in grading's database).
    Accounts(AccountsArgs),
    /// Print the credential of one service run by hand (needs --token).
    Credential(crate::credential_cli::CredentialArgs),
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
            let registry = crate::registry::Registry::new(args.config(), shutdown.clone());
            if let Some(buffer) = logs {
                registry.ship_logs(buffer);
            }
            crate::registry::serve(listener, registry, shutdown).await?;
        }
        Command::Log(args) => {
            let logs = args.service.common.telemetry(names::LOG)?;
            let listener = bind(args.addr).await?;
            let runtime =
                runtime(&listener, args.service.spec(names::LOG, &[], logs).policy(crate::log::callers::may_call))?;
            crate::log::serve(listener, runtime, args.config(), shutdown).await?;
        }
        Command::Grading(args) => {
            let logs = args.service.common.telemetry(names::GRADING)?;
            let listener = bind(args.addr).await?;
            let db = crate::grading::Db::connect(&args.database_url)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", args.database_url))?;
            let spec = args
                .service
                .spec(names::GRADING, &[names::LOG.to_owned()], logs)
                .policy(crate::grading::callers::may_call);
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
        Command::Credential(args) => crate::credential_cli::run(&args)?,
    }
    Ok(())
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

fn runtime(listener: &TcpListener, spec: ServiceSpec) -> anyhow::Result<Runtime> {
    Ok(Runtime::new(spec, listener.local_addr()?))
}

#[cfg(test)]
mod tests {
    use clap::{Args, FromArgMatches};
    use gradebook_runtime::cli::defaults_of;

    use super::*;
    use crate::up::{Child, PortalLaunch};

    /// `child`'s command line, parsed back as its program would.
    fn reparse(child: &Child) -> Child {
        let args = child.args();
        match child {
            Child::Portal(_) => {
                let command = PortalLaunch::augment_args(clap::Command::new("gradebook-portal"));
                let matches = command.try_get_matches_from(std::iter::once("gradebook-portal".to_owned()).chain(args));
                Child::Portal(PortalLaunch::from_arg_matches(&matches.unwrap()).unwrap())
            }
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
        let portal = PortalLaunch { addr: "127.0.0.1:5999".parse().unwrap(), service: defaults_of() };

        for child in [Child::Registry(registry), Child::Log(log), Child::Grading(grading), Child::Portal(portal)] {
            assert_eq!(reparse(&child), child, "{:?}", child.args());
        }
    }
}
