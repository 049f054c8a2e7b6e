//! `gradebook-portal`: the portal server. Only parses configuration and
//! calls [`gradebook_frontend::server::serve`].

use std::process::ExitCode;

use clap::Parser;
use gradebook_runtime::cli::{PortalArgs, defaults};
use gradebook_shared::names;
use tokio_util::sync::CancellationToken;

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
    let security =
        gradebook_frontend::auth::Security::new(args.service.common.token.as_deref(), args.session_idle.into())
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
