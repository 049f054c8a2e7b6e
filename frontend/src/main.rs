//! `gradebook-portal`: the portal server. Only parses configuration and
//! calls [`gradebook_frontend::server::serve`].

use std::process::ExitCode;

use std::net::SocketAddr;

use clap::Parser;
use gradebook_runtime::cli::{ServiceArgs, defaults, display};
use gradebook_shared::names;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// The portal's arguments: where it listens, how long a session lasts
/// unused, and how it joins the system. `gradebook up` starts the portal with
/// `--addr` and the [`ServiceArgs`] flags, as every service.
#[derive(Debug, Clone, PartialEq, Parser, Serialize)]
#[command(name = "gradebook-portal", version, about = "Gradebook's portal: the web grade book")]
struct PortalArgs {
    /// Address to listen on (default: LEPTOS_SITE_ADDR as cargo leptos sets it, else 127.0.0.1:5005).
    #[arg(long, env = "GRADEBOOK_PORTAL_ADDR")]
    addr: Option<SocketAddr>,
    /// A signed-in session ends after this long unused (closed mode).
    #[arg(long, env = "GRADEBOOK_SESSION_IDLE", default_value = "30m")]
    #[serde(serialize_with = "display")]
    session_idle: humantime::Duration,
    #[command(flatten)]
    #[serde(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(PortalArgs::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradebook-portal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: PortalArgs) -> anyhow::Result<()> {
    // Refused before anything starts: a closed portal with a short token
    // could not keep its sessions safe.
    // Its cookies are keyed by a secret of its own: from its credential, or
    // from the master secret when run by hand with one.
    let common = &args.service.common;
    let secret = common.credential.as_ref().map(|c| c.own_secret()).or_else(|| common.token.clone());
    let security = gradebook_frontend::auth::Security::new(secret.as_deref(), args.session_idle.into())
        .map_err(|e| anyhow::anyhow!("cannot start closed: {e}"))?;
    if security.is_open() {
        eprintln!(
            "gradebook-portal: WARNING: no cluster token, so the portal is open: anyone who can reach it can change grades"
        );
    }
    let logs = args.service.common.telemetry(names::PORTAL)?;
    let mut options = leptos::prelude::get_configuration(None)?.leptos_options;
    // cargo leptos says where to listen through LEPTOS_SITE_ADDR; otherwise
    // the portal's documented address.
    if std::env::var_os("LEPTOS_SITE_ADDR").is_none() {
        options.site_addr = defaults::PORTAL_ADDR.parse()?;
    }
    let addr = args.addr.unwrap_or(options.site_addr);
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let mut spec = args.service.spec(names::PORTAL, &[names::GRADING.to_owned(), names::LOG.to_owned()], logs);
    // People use the portal's pages and API; the cluster token guards only
    // what the registry calls.
    spec.people_facing = true;
    let runtime = gradebook_runtime::Runtime::new(spec, listener.local_addr()?);
    println!("listening on {}", runtime.url());
    let shutdown = CancellationToken::new();
    tokio::spawn(gradebook_runtime::signal::cancel_on_signal(shutdown.clone()));
    gradebook_frontend::server::serve(
        listener,
        runtime,
        options,
        args.service.registry_url.clone(),
        security,
        shutdown,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gradebook_runtime::cli::{defaults_of, to_args};

    use super::*;

    #[test]
    fn the_portal_parses_what_up_starts_it_with() {
        let mut service: ServiceArgs = defaults_of();
        service.registry_url = "http://10.0.0.1:3999".into();
        service.call_timeout = Duration::from_millis(1500).into();
        service.no_session = true;
        let command_line =
            ["gradebook-portal".to_owned(), "--addr=127.0.0.1:5999".to_owned()].into_iter().chain(to_args(&service));

        let args = PortalArgs::try_parse_from(command_line).unwrap();

        assert_eq!(args.addr, Some("127.0.0.1:5999".parse().unwrap()));
        assert_eq!(args.service, service);
        assert_eq!(args.session_idle, Duration::from_secs(30 * 60).into());
    }
}
