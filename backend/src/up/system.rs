//! The whole system under supervision: every part started in order, each
//! awaited until ready before the next, then kept running until shutdown or
//! until one of them keeps failing; then all stopped in reverse order.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use super::output::{Output, UP, prefixes, say};
use super::parts::Part;
use super::ready::wait_ready;
use super::restart::RestartPolicy;
use super::supervise::{Launch, supervise};

/// A started part: its supervising task owns the child process.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Starts `parts` in order and keeps them running until `shutdown`, or until
/// one of them keeps failing (then everything is stopped).
pub(super) async fn supervise_all(
    parts: Vec<Part>,
    master: Option<&str>,
    banner: &str,
    output_dir: &Path,
    policy: RestartPolicy,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the gradebook binary")?;
    let launches = parts
        .iter()
        .map(|part| {
            let program = match part.child.program() {
                Some(name) => {
                    let path = exe.with_file_name(name);
                    if !path.exists() {
                        bail!("{} is missing: build it first (make up does: scripts/build-portal.sh)", path.display());
                    }
                    path
                }
                None => exe.clone(),
            };
            Ok(Launch { name: part.name.clone(), program, args: part.child.args(), env: part.env.clone() })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // With a credential the registry's list is closed: `up` asks it as the
    // operator (it holds K), with the key for the registry only.
    let bearer =
        master.map(|k| gradebook_runtime::credential::operator_bearer(k, gradebook_runtime::credential::REGISTRY));
    let client = gradebook_runtime::http::client(Duration::from_secs(1), bearer.as_deref());
    let width = parts.iter().map(|p| p.name.len()).chain([UP.len()]).max().unwrap_or(0);
    let colored = std::io::stdout().is_terminal();
    let mut running: Vec<Running> = vec![];
    let (gave_up_tx, mut gave_up_rx) = tokio::sync::mpsc::channel::<String>(parts.len().max(1));
    let result = async {
        for (i, (part, launch)) in parts.iter().zip(launches).enumerate() {
            let (prefix, up_prefix) = prefixes(&part.name, i, width, colored);
            let output = Output::new(output_dir, &part.name, prefix, up_prefix);
            let (stop, stop_rx) = tokio::sync::oneshot::channel();
            let done = tokio::spawn(supervise(launch, output, policy, stop_rx, gave_up_tx.clone()));
            running.push(Running { stop, done });
            tokio::select! {
                ready = wait_ready(&client, part, &shutdown) => ready?,
                Some(why) = gave_up_rx.recv() => return Err(anyhow::anyhow!(why)),
            }
        }
        say(format_args!("\n  {banner}\n  Press Ctrl-C to stop.\n"));
        tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(why) = gave_up_rx.recv() => Err(anyhow::anyhow!(why)),
        }
    }
    .await;
    stop_all(&mut running).await;
    result
}

/// Stops the parts in reverse order, each fully before the next.
async fn stop_all(running: &mut Vec<Running>) {
    while let Some(r) = running.pop() {
        let _ = r.stop.send(());
        let _ = r.done.await;
    }
}
