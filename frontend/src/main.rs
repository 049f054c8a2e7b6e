//! `gradebook-portal`: the portal server. Only parses configuration and
//! calls [`gradebook_frontend::server::serve`].

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use gradebook::cli::{Common, ServiceArgs};
use gradebook_shared::names;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "gradebook-portal", version, about = "Gradebook's portal: the web grade book")]
struct Args {
    /// Address to listen on (default: LEPTOS_SITE_ADDR as cargo leptos sets it, else 127.0.0.1:5005).
    #[arg(long, env = "GRADEBOOK_PORTAL_ADDR")]
    addr: Option<SocketAddr>,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    common: Common,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gradebook-portal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let logs = args.common.telemetry(names::PORTAL)?;
    let mut options = leptos::prelude::get_configuration(None)?.leptos_options;
    if std::env::var_os("LEPTOS_SITE_ADDR").is_none() {
        options.site_addr = "127.0.0.1:5005".parse()?;
    }
    let addr = args.addr.unwrap_or(options.site_addr);
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let spec =
        args.service.spec(names::PORTAL, &[names::GRADING.to_owned(), names::LOG.to_owned()], &args.common, logs);
    let runtime = gradebook::runtime::Runtime::new(spec, listener.local_addr()?);
    println!("listening on {}", runtime.url());
    let shutdown = CancellationToken::new();
    tokio::spawn(gradebook::cli::cancel_on_signal(shutdown.clone()));
    gradebook_frontend::server::serve(listener, runtime, options, args.service.registry_url.clone(), shutdown).await?;
    Ok(())
}
