//! What each child of `up` runs: a subcommand of this binary, or the portal
//! beside it, with the typed arguments of that service rendered back into a
//! command line.

use std::net::SocketAddr;

use gradebook_runtime::cli::{ServiceArgs, to_args};
use serde::Serialize;

use crate::grading::args::GradingArgs;
use crate::log::args::LogArgs;
use crate::registry::args::RegistryArgs;

/// The arguments each child of `up` is started with (the command line's
/// tests check that every one of them parses back into what `up` meant).
#[derive(Debug, Clone, PartialEq)]
pub enum Child {
    Registry(RegistryArgs),
    Log(LogArgs),
    Grading(GradingArgs),
    Portal(PortalLaunch),
}

/// What `up` sets of the portal's arguments: where it listens and how it
/// joins the system, as for every service; the rest stay the portal's
/// defaults. The portal's own arguments (in its binary, which this crate
/// does not compile) take these flags: its tests parse this rendering, and
/// `up`'s system tests start the real portal with it.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize)]
pub struct PortalLaunch {
    /// Address the portal listens on.
    #[arg(long)]
    pub addr: SocketAddr,
    #[command(flatten)]
    #[serde(flatten)]
    pub service: ServiceArgs,
}

impl Child {
    /// The binary beside `gradebook` that runs it; None: `gradebook` itself.
    pub fn program(&self) -> Option<&'static str> {
        matches!(self, Child::Portal(_)).then_some("gradebook-portal")
    }

    /// The command line that starts it (after the program's name).
    pub fn args(&self) -> Vec<String> {
        let (subcommand, flags) = match self {
            Child::Registry(a) => (Some("registry"), to_args(a)),
            Child::Log(a) => (Some("log"), to_args(a)),
            Child::Grading(a) => (Some("grading"), to_args(a)),
            Child::Portal(a) => (None, to_args(a)),
        };
        subcommand.map(str::to_owned).into_iter().chain(flags).collect()
    }
}
