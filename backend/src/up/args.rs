//! `gradebook up`'s own arguments: where each part of the system listens,
//! how many grading instances run, and where the data stays.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use gradebook_runtime::cli::{Common, defaults};

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

impl UpArgs {
    /// Grading's database: the one given, or SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("grading.db").display()),
        }
    }
}
