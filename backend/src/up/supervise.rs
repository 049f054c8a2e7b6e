//! One child's supervisor: it starts the child, restarts it whenever it
//! exits by itself (as the [`RestartPolicy`] says), and stops it on request
//! with SIGTERM, then SIGKILL after [`STOP_DEADLINE`].

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;

use super::output::Output;
use super::restart::{Decision, RestartPolicy, Restarts};

/// A child that ignores SIGTERM this long is killed.
pub(super) const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// How one part is started: resolved before anything starts, so a missing
/// binary is reported before the first process runs.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Owns one part: starts it, restarts it whenever it exits by itself (as
/// `policy` says), and stops it on request with SIGTERM (SIGKILL after
/// [`STOP_DEADLINE`]). When it keeps failing, says why on `gave_up` and ends.
pub(super) async fn supervise(
    launch: Launch,
    output: Output,
    policy: RestartPolicy,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    gave_up: tokio::sync::mpsc::Sender<String>,
) {
    let name = &launch.name;
    let mut restarts = Restarts::new(policy);
    let mut restart = 0u32;
    loop {
        let started = Instant::now();
        let status = match start(&launch, &output) {
            Ok((mut child, readers)) => {
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = &mut stop => {
                        stop_child(name, &mut child, &output).await;
                        return;
                    }
                };
                // The last lines it printed belong in the message below;
                // a grandchild holding the pipes open must not hold us up.
                let _ = tokio::time::timeout(Duration::from_secs(1), futures::future::join_all(readers)).await;
                match status {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("lost track of it: {e}"),
                }
            }
            Err(e) => format!("could not be started: {e:#}"),
        };
        match restarts.exited(started, Instant::now()) {
            Decision::Restart { after } => {
                restart += 1;
                output.note(&format!(
                    "{name} exited unexpectedly ({status}); restarting it in {} (restart {restart})",
                    humantime::format_duration(after)
                ));
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = &mut stop => {
                        output.note(&format!("{name} stopped (it was waiting to be restarted)"));
                        return;
                    }
                }
            }
            Decision::GiveUp { exits } => {
                output.note(&format!("{name} exited ({status}); giving up on it"));
                let why = format!(
                    "{name} exited {exits} times within {} (the last time: {status}), so up stopped everything.\n  {}",
                    humantime::format_duration(policy.window),
                    output.whereabouts()
                );
                let _ = gave_up.send(why).await;
                return;
            }
        }
    }
}

/// Spawns the part once, its output flowing into `output`.
fn start(
    launch: &Launch,
    output: &Output,
) -> anyhow::Result<(tokio::process::Child, Vec<tokio::task::JoinHandle<()>>)> {
    let mut child = Command::new(&launch.program)
        .args(&launch.args)
        // The master secret stays with `up`: a child inherits neither it nor
        // a credential meant for someone else, only what its part hands it.
        .env_remove("GRADEBOOK_TOKEN")
        .env_remove("GRADEBOOK_CREDENTIAL")
        .envs(launch.env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: a terminal's Ctrl-C reaches only us,
        // and we stop the parts one by one in reverse order.
        .process_group(0)
        .spawn()
        .with_context(|| format!("{}", launch.program.display()))?;
    let pid = child.id().map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    output.note(&format!("{} started (pid {pid})", launch.name));
    output.new_run();
    let readers = [child.stdout.take().map(boxed), child.stderr.take().map(boxed)]
        .into_iter()
        .flatten()
        .map(|stream| {
            let output = output.clone();
            tokio::spawn(async move {
                // Split on bytes, not `lines()`: one line that is not UTF-8
                // must not stop the draining (a full pipe would block the child).
                let mut lines = BufReader::new(stream).split(b'\n');
                while let Ok(Some(line)) = lines.next_segment().await {
                    let line = String::from_utf8_lossy(&line);
                    output.line(line.strip_suffix('\r').unwrap_or(&line));
                }
            })
        })
        .collect();
    Ok((child, readers))
}

fn boxed<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(r)
}

async fn stop_child(name: &str, child: &mut tokio::process::Child, output: &Output) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // Gone already: the wait below reports how it ended.
        let _ = signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
        Ok(Ok(status)) => output.note(&format!("{name} stopped ({status})")),
        _ => {
            let _ = child.kill().await;
            output.note(&format!("{name} killed after {}", humantime::format_duration(STOP_DEADLINE)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The supervisor of `sh -c script`, writing its log into `dir`.
    fn supervised(
        dir: &Path,
        script: &str,
        policy: RestartPolicy,
    ) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>, tokio::sync::mpsc::Receiver<String>) {
        let launch =
            Launch { name: "flaky".into(), program: "sh".into(), args: vec!["-c".into(), script.into()], env: vec![] };
        let output = Output::new(dir, "flaky", "flaky |".into(), "up    |".into());
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let (gave_up_tx, gave_up) = tokio::sync::mpsc::channel(1);
        let done = tokio::spawn(supervise(launch, output, policy, stop_rx, gave_up_tx));
        (stop, done, gave_up)
    }

    const QUICK: RestartPolicy = RestartPolicy {
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        stable_after: Duration::from_secs(10),
        max_exits: 3,
        window: Duration::from_secs(60),
    };

    #[tokio::test]
    async fn a_child_that_keeps_failing_is_given_up_on_with_its_last_lines_and_where_its_output_is() {
        let temp = tempfile::tempdir().expect("a temporary folder");
        let dir = temp.path().join("up");
        let (_stop, done, mut gave_up) = supervised(&dir, "echo \"boom from $$\"; exit 3", QUICK);

        let why = tokio::time::timeout(Duration::from_secs(10), gave_up.recv()).await;

        let why = why.expect("it gave up in time").expect("it said why");
        assert!(why.starts_with("flaky exited 3 times within 1m (the last time: exit status: 3)"), "{why}");
        assert!(why.contains("boom from"), "{why}");
        let log = dir.join("flaky.log");
        assert!(why.contains(&log.display().to_string()), "{why}");
        let written = std::fs::read_to_string(&log).expect("the log file is written");
        assert_eq!(written.matches("boom from").count(), 3, "{written}");
        assert_eq!(written.matches("restarting it in").count(), 2, "{written}");
        assert!(written.contains("flaky exited unexpectedly (exit status: 3); restarting it in 10ms (restart 1)"));
        assert!(tokio::time::timeout(Duration::from_secs(5), done).await.is_ok(), "the supervisor ended");
    }

    #[tokio::test]
    async fn a_child_that_failed_is_restarted_and_then_stopped_on_request() {
        let temp = tempfile::tempdir().expect("a temporary folder");
        let dir = temp.path();
        let runs = dir.join("runs");
        // Fails twice, then runs until stopped.
        let script = format!(
            "echo run >> '{runs}'; [ $(wc -l < '{runs}') -ge 3 ] && exec sleep 1000; exit 1",
            runs = runs.display()
        );
        let (stop, done, mut gave_up) = supervised(dir, &script, QUICK);

        let third_run = async {
            while std::fs::read_to_string(&runs).map_or(0, |r| r.lines().count()) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), third_run).await.expect("it ran a third time");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(gave_up.try_recv().is_err(), "two failures are not enough to give up");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), done).await.expect("it stopped").expect("no panic");

        let written = std::fs::read_to_string(dir.join("flaky.log")).expect("the log file is written");
        assert_eq!(written.matches("flaky started (pid").count(), 3, "{written}");
        assert!(written.contains("(exit status: 1); restarting it in 10ms (restart 1)"), "{written}");
        assert!(written.contains("(exit status: 1); restarting it in 20ms (restart 2)"), "{written}");
        assert!(written.contains("flaky stopped (signal: 15 (SIGTERM))"), "{written}");
    }
}
