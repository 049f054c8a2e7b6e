//! `gradebook grading`'s flags, each with an environment fallback.

use std::net::SocketAddr;

use clap::Args;
use gradebook_runtime::cli::{ServiceArgs, defaults};
use serde::Serialize;

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
