//! `gradebook up`: the whole system as separate processes of this binary,
//! started in dependency order, each awaited until healthy, their output
//! shown prefixed with their name and kept in `<data dir>/up/<name>.log`,
//! and stopped in reverse order on Ctrl-C (SIGTERM each, so each deregisters
//! and drains).
//!
//! The system is built to survive the loss of any one process, so `up` does
//! not end it when a child dies: it restarts the child with backoff
//! ([`RestartPolicy`]) and the rest keeps serving. Only a child that keeps
//! failing fast makes it give up and stop everything, saying which child and
//! where its output is.
//!
//! - [`args`]: `up`'s own flags;
//! - [`child`]: what each child runs, as a typed command line;
//! - [`parts`]: the processes of the system, in start order;
//! - [`token`]: the cluster token the children are handed;
//! - [`system`]: starting every part in order and stopping them in reverse;
//! - [`ready`]: when a started part counts as ready;
//! - [`supervise`]: one child, restarted as [`restart`] says;
//! - [`output`]: a child's output, prefixed on the console and kept on disk.

mod args;
mod child;
mod output;
mod parts;
mod ready;
mod restart;
mod supervise;
mod system;
mod token;

use tokio_util::sync::CancellationToken;

pub use args::UpArgs;
pub use child::{Child, PortalLaunch};
pub use parts::{Part, parts};
pub use restart::{Decision, RestartPolicy, Restarts};
pub use token::TOKEN_FILE;

/// Runs the system `args` describe until `shutdown`.
pub async fn run(args: &UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let banner = if args.no_portal {
        format!("Gradebook is up: grading at http://{}/students", args.grading_addr)
    } else {
        format!("Gradebook is up: open http://{}", args.portal_addr)
    };
    let token = token::cluster_token(args)?;
    let parts = parts(args, token.as_deref())?;
    let mut banner = banner;
    if token.is_some() && !args.no_portal {
        // Closed, people sign in: the first start makes a teacher to do so.
        let database_url = args.database_url();
        if let Some(password) = crate::accounts::ensure_admin(&database_url).await? {
            banner.push_str(&format!(
                "\n  First start: sign in at http://{}/signin as admin with the password {password}\n  \
                 (shown only now; change it with: gradebook accounts passwd admin --database-url {database_url})",
                args.portal_addr
            ));
        }
    }
    system::supervise_all(parts, token.as_deref(), &banner, &args.data_dir.join("up"), RestartPolicy::DEFAULT, shutdown)
        .await
}
