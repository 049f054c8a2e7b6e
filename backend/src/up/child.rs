//! What each child of `up` runs: a subcommand of this binary, or the portal
//! beside it, with the typed arguments of that service rendered back into a
//! command line.

use gradebook_runtime::cli::{PortalArgs, to_args};

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
    Portal(PortalArgs),
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
