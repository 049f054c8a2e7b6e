//! `gradebook stub`: a service that only registers, requires what it is told
//! and answers heartbeats — for experiments, drills and benchmarks. It shows
//! the providers it holds (`GET /providers`) and can hold a request open
//! (`GET /slow?ms=N`) to drill draining on shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use gradebook_runtime::Runtime;
use gradebook_runtime::cli::ServiceArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
}

#[derive(serde::Deserialize)]
struct Slow {
    ms: u64,
}

pub fn router(runtime: Runtime) -> Router {
    Router::new()
        .route("/providers", get(|State(rt): State<Runtime>| async move { Json(rt.providers().snapshot()) }))
        .route(
            "/slow",
            get(|Query(q): Query<Slow>| async move {
                tokio::time::sleep(Duration::from_millis(q.ms.min(60_000))).await;
                "done"
            }),
        )
        .with_state(runtime)
}

/// Serves the stub, registered, until `shutdown`.
pub async fn serve(listener: TcpListener, runtime: Runtime, shutdown: CancellationToken) -> std::io::Result<()> {
    // Tests and scripts read where it listens from this line.
    println!("listening on {}", runtime.url());
    gradebook_runtime::serve(listener, runtime.clone(), router(runtime), shutdown).await
}
