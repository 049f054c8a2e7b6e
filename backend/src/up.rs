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

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use gradebook_runtime::cli::{PortalArgs, ServiceArgs, defaults_of};
use gradebook_shared::names;

use crate::cli::{Child, GradingArgs, LogArgs, RegistryArgs, UpArgs};

/// One process of the system.
pub struct Part {
    pub name: String,
    /// What it runs, with its typed arguments.
    pub child: Child,
    /// Handed over through the environment, never on the command line.
    pub env: Vec<(String, String)>,
    /// Answers 2xx once the part is ready.
    pub ready_url: String,
    /// The name and URL it registers under, if it does: it is ready once the
    /// registry hands it out.
    pub registered_as: Option<(String, String)>,
    pub registry_url: String,
}

/// Grading's database: the one given, or SQLite in the data directory.
fn database_url(args: &UpArgs) -> String {
    match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("grading.db").display()),
    }
}

/// The processes of the system, in start order.
pub fn parts(args: &UpArgs, token: Option<&str>) -> anyhow::Result<Vec<Part>> {
    let registry_url = format!("http://{}", args.registry_addr);
    let database_url = database_url(args);
    if args.grading > 1 && !database_url.starts_with("postgres") {
        bail!(
            "--grading {} needs a shared database: with SQLite every instance would keep its own grades. \
             Pass --database-url postgres://USER@HOST/DB (or run one instance).",
            args.grading
        );
    }
    let common = args.common.clone();
    let service = ServiceArgs { registry_url: registry_url.clone(), common: common.clone(), ..defaults_of() };
    let env: Vec<(String, String)> = token.iter().map(|t| ("GRADEBOOK_TOKEN".to_owned(), (*t).to_owned())).collect();
    let part = |name: String, child: Child, addr: SocketAddr, service: Option<&str>| Part {
        name,
        child,
        env: env.clone(),
        ready_url: format!("http://{addr}/healthz"),
        registered_as: service.map(|s| (s.to_owned(), format!("http://{addr}"))),
        registry_url: registry_url.clone(),
    };
    let mut parts = vec![
        part(
            "registry".into(),
            Child::Registry(RegistryArgs { addr: args.registry_addr, common: common.clone(), ..defaults_of() }),
            args.registry_addr,
            None,
        ),
        part(
            "log".into(),
            Child::Log(LogArgs {
                addr: args.log_addr,
                dir: args.data_dir.join("log"),
                service: service.clone(),
                ..defaults_of()
            }),
            args.log_addr,
            Some(names::LOG),
        ),
    ];
    for i in 0..args.grading {
        let mut addr = args.grading_addr;
        addr.set_port(addr.port() + i);
        let name = if args.grading == 1 { "grading".to_owned() } else { format!("grading{}", i + 1) };
        let child = Child::Grading(GradingArgs { addr, database_url: database_url.clone(), service: service.clone() });
        parts.push(part(name, child, addr, Some(names::GRADING)));
    }
    if !args.no_portal {
        let child =
            Child::Portal(PortalArgs { addr: Some(args.portal_addr), service: service.clone(), ..defaults_of() });
        let mut portal = part("portal".into(), child, args.portal_addr, Some(names::PORTAL));
        portal.env.push(("LEPTOS_SITE_ROOT".into(), args.site_root.display().to_string()));
        parts.push(portal);
    }
    Ok(parts)
}

/// When a child that exited on its own is started again, and when `up`
/// gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; each further one waits twice as long...
    pub first_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
    /// A run at least this long was a good one: the wait starts over.
    pub stable_after: Duration,
    /// This many exits within `window` make `up` give up...
    pub max_exits: usize,
    /// ...rather than restart the child yet again.
    pub window: Duration,
}

impl RestartPolicy {
    pub const DEFAULT: Self = Self {
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        stable_after: Duration::from_secs(10),
        max_exits: 5,
        window: Duration::from_secs(60),
    };
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What to do about a child that has just exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this wait.
    Restart { after: Duration },
    /// It exited this many times within the policy's window: stop everything.
    GiveUp { exits: usize },
}

/// The restart history of one child: pure (the caller says what time it
/// is), so the policy is tested without waiting.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    next_delay: Duration,
    /// When it exited, within the last `window`.
    exits: VecDeque<Instant>,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Self {
        Self { policy, next_delay: policy.first_delay, exits: VecDeque::new() }
    }

    /// The run that began at `started` ended by itself at `now`.
    pub fn exited(&mut self, started: Instant, now: Instant) -> Decision {
        if now.saturating_duration_since(started) >= self.policy.stable_after {
            self.next_delay = self.policy.first_delay;
        }
        while self.exits.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.policy.window) {
            self.exits.pop_front();
        }
        self.exits.push_back(now);
        if self.exits.len() >= self.policy.max_exits {
            return Decision::GiveUp { exits: self.exits.len() };
        }
        let after = self.next_delay;
        self.next_delay = (after * 2).min(self.policy.max_delay);
        Decision::Restart { after }
    }
}

/// How one part is started: resolved before anything starts, so a missing
/// binary is reported before the first process runs.
#[derive(Debug, Clone)]
struct Launch {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// A started part: its supervising task owns the child process.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Runs the system `args` describe until `shutdown`.
pub async fn run(args: &UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let banner = if args.no_portal {
        format!("Gradebook is up: grading at http://{}/students", args.grading_addr)
    } else {
        format!("Gradebook is up: open http://{}", args.portal_addr)
    };
    let token = cluster_token(args)?;
    let parts = parts(args, token.as_deref())?;
    let mut banner = banner;
    if token.is_some() && !args.no_portal {
        // Closed, people sign in: the first start makes a teacher to do so.
        let database_url = database_url(args);
        if let Some(password) = crate::accounts::ensure_admin(&database_url).await? {
            banner.push_str(&format!(
                "\n  First start: sign in at http://{}/signin as admin with the password {password}\n  \
                 (shown only now; change it with: gradebook accounts passwd admin --database-url {database_url})",
                args.portal_addr
            ));
        }
    }
    supervise_all(parts, &banner, &args.data_dir.join("up"), RestartPolicy::DEFAULT, shutdown).await
}

/// Where `up` keeps the cluster token it made, in the data directory.
pub const TOKEN_FILE: &str = "cluster-token";

/// The cluster's token: the one given (`--token` or the environment), none
/// with `--open`, or else the one in `<data dir>/cluster-token`, made on
/// first start (random, file mode 0600). Closed is the default.
fn cluster_token(args: &UpArgs) -> anyhow::Result<Option<String>> {
    if let Some(token) = &args.common.token {
        return Ok(Some(token.clone()));
    }
    if args.open {
        eprintln!(
            "warning: running OPEN (--open): no token, so anyone who can reach these ports can register \
             services, read and change grades and write logs"
        );
        return Ok(None);
    }
    let path = args.data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot read the cluster token in {}: {e}", path.display()),
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    let token: String =
        rand::Rng::sample_iter(rand::rng(), &rand::distr::Alphanumeric).take(43).map(char::from).collect();
    write_private(&path, &token).with_context(|| format!("cannot keep the cluster token in {}", path.display()))?;
    println!("A new cluster token is in {} (mode 0600): services need it to join.", path.display());
    Ok(Some(token))
}

/// Writes a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Starts `parts` in order and keeps them running until `shutdown`, or until
/// one of them keeps failing (then everything is stopped).
async fn supervise_all(
    parts: Vec<Part>,
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
    // With a cluster token the registry's list is closed: ask it with the
    // token the children are handed.
    let token = parts.iter().flat_map(|p| &p.env).find(|(k, _)| k == "GRADEBOOK_TOKEN").map(|(_, v)| v.as_str());
    let client = gradebook_runtime::http::client(Duration::from_secs(1), token);
    let width = parts.iter().map(|p| p.name.len()).chain([UP.len()]).max().unwrap_or(0);
    let colored = std::io::stdout().is_terminal();
    let mut running: Vec<Running> = vec![];
    let (gave_up_tx, mut gave_up_rx) = tokio::sync::mpsc::channel::<String>(parts.len().max(1));
    let result = async {
        for (i, (part, launch)) in parts.iter().zip(launches).enumerate() {
            let label = format!("{:width$} |", part.name);
            let prefix = if colored { format!("\x1b[{}m{label}\x1b[0m", 31 + (i % 6)) } else { label };
            let output = Output::new(output_dir, &part.name, prefix, format!("{UP:width$} |"));
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

/// The label of what `up` itself says, beside its children's names.
const UP: &str = "up";
/// A child that ignores SIGTERM this long is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Lines of a child's output kept for the message when `up` gives up on it.
const TAIL_LINES: usize = 20;
/// A child's log file beyond this is moved to `<name>.log.1` (one kept), so
/// a long-running system cannot fill the disk with it.
const MAX_LOG_BYTES: u64 = 8 << 20;

/// Prints a line, ignoring a closed or broken stdout: `up` must keep
/// supervising even when nobody reads its console (`println!` would panic).
fn say(line: impl std::fmt::Display) {
    // Under `cargo test`, `println!` is what the harness captures.
    #[cfg(test)]
    println!("{line}");
    #[cfg(not(test))]
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// Where a part's output goes: the console, prefixed with its name; its log
/// file under the data directory, so that it can still be read after `up`
/// has given up; and its last lines, for the message when it does.
#[derive(Clone)]
struct Output {
    prefix: String,
    up_prefix: String,
    path: PathBuf,
    kept: Arc<Mutex<Kept>>,
}

struct Kept {
    file: Option<std::fs::File>,
    bytes: u64,
    tail: VecDeque<String>,
}

impl Output {
    fn new(dir: &Path, name: &str, prefix: String, up_prefix: String) -> Self {
        let path = dir.join(format!("{name}.log"));
        let file = std::fs::create_dir_all(dir).and_then(|()| open_log(&path));
        let (file, bytes) = match file {
            Ok(f) => {
                let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
                (Some(f), bytes)
            }
            Err(e) => {
                say(format_args!(
                    "{up_prefix} cannot write {}: {e}; {name}'s output is shown here only",
                    path.display()
                ));
                (None, 0)
            }
        };
        Self { prefix, up_prefix, path, kept: Arc::new(Mutex::new(Kept { file, bytes, tail: VecDeque::new() })) }
    }

    /// A line the child printed.
    fn line(&self, line: &str) {
        say(format_args!("{} {line}", self.prefix));
        let mut kept = self.lock();
        if kept.tail.len() == TAIL_LINES {
            kept.tail.pop_front();
        }
        kept.tail.push_back(line.to_owned());
        self.write(&mut kept, line);
    }

    /// What `up` says about the child: on the console and in its log file.
    fn note(&self, note: &str) {
        say(format_args!("{} {note}", self.up_prefix));
        let stamped = format!("--- {} {note}", humantime::format_rfc3339_millis(std::time::SystemTime::now()));
        self.write(&mut self.lock(), &stamped);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // A panic while holding it left nothing half-done worth refusing.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, kept: &mut Kept, line: &str) {
        if kept.bytes > MAX_LOG_BYTES {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            // Losing the log file must not stop supervision: on any error
            // the console still shows everything.
            kept.file = std::fs::rename(&self.path, &rotated).and_then(|()| open_log(&self.path)).ok();
            kept.bytes = 0;
        }
        if let Some(file) = &mut kept.file {
            let bytes = format!("{line}\n");
            if file.write_all(bytes.as_bytes()).is_ok() {
                kept.bytes += bytes.len() as u64;
            }
        }
    }

    /// Where the whole output can be read, for the give-up message.
    fn whereabouts(&self) -> String {
        let kept = self.lock();
        let tail = kept.tail.iter().map(|l| format!("\n    {l}")).collect::<String>();
        let last = if tail.is_empty() { "It printed nothing.".to_owned() } else { format!("Its last lines:{tail}") };
        match kept.file {
            Some(_) => format!("{last}\n  Its whole output is in {}", self.path.display()),
            None => format!("{last}\n  Its whole output is above, prefixed with its name."),
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// Owns one part: starts it, restarts it whenever it exits by itself (as
/// `policy` says), and stops it on request with SIGTERM (SIGKILL after
/// [`STOP_DEADLINE`]). When it keeps failing, says why on `gave_up` and ends.
async fn supervise(
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
    // The give-up message shows the last run's lines: earlier runs are in
    // the log file.
    output.lock().tail.clear();
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
    if let Some(pid) = child.id() {
        // The `kill` command keeps this crate free of unsafe libc calls.
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
    }
    match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
        Ok(Ok(status)) => output.note(&format!("{name} stopped ({status})")),
        _ => {
            let _ = child.kill().await;
            output.note(&format!("{name} killed after {}", humantime::format_duration(STOP_DEADLINE)));
        }
    }
}

async fn is_ready(client: &reqwest::Client, part: &Part) -> bool {
    let healthy = client.get(&part.ready_url).send().await.is_ok_and(|r| r.status().is_success());
    let Some((name, url)) = &part.registered_as else { return healthy };
    let listed = async {
        let r = client.get(format!("{}/services/{name}", part.registry_url)).send().await.ok()?;
        r.json::<Vec<gradebook_shared::registry::PatchEntry>>().await.ok()
    };
    healthy && listed.await.is_some_and(|providers| providers.iter().any(|p| &p.url == url))
}

async fn wait_ready(client: &reqwest::Client, part: &Part, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if is_ready(client, part).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{} did not become ready at {} within 60 s", part.name, part.ready_url);
        }
        tokio::select! {
            _ = shutdown.cancelled() => bail!("interrupted while starting {}", part.name),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Stops the parts in reverse order, each fully before the next.
async fn stop_all(running: &mut Vec<Running>) {
    while let Some(r) = running.pop() {
        let _ = r.stop.send(());
        let _ = r.done.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Drives `restarts` on a clock of its own: each run lasts `run`, then
    /// the wait it asked for passes before the next run begins.
    struct Clock {
        restarts: Restarts,
        now: Instant,
    }

    impl Clock {
        fn new(policy: RestartPolicy) -> Self {
            Self { restarts: Restarts::new(policy), now: Instant::now() }
        }

        fn run_and_exit(&mut self, run: Duration) -> Decision {
            let started = self.now;
            self.now += run;
            let decision = self.restarts.exited(started, self.now);
            if let Decision::Restart { after } = decision {
                self.now += after;
            }
            decision
        }
    }

    fn restart_after(ms: u64) -> Decision {
        Decision::Restart { after: Duration::from_millis(ms) }
    }

    #[test]
    fn restarts_wait_half_a_second_first_then_twice_as_long_each_time_up_to_thirty_seconds() {
        // Never give up here: only the waits are under test.
        let mut clock = Clock::new(RestartPolicy { max_exits: usize::MAX, ..RestartPolicy::DEFAULT });

        let waits: Vec<Decision> = (0..9).map(|_| clock.run_and_exit(SECOND)).collect();

        let expected = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
        assert_eq!(waits, expected.map(restart_after));
    }

    #[test]
    fn a_run_that_lasted_a_while_starts_the_waits_over() {
        let mut clock = Clock::new(RestartPolicy { max_exits: usize::MAX, ..RestartPolicy::DEFAULT });
        for _ in 0..3 {
            clock.run_and_exit(SECOND);
        }

        assert_eq!(clock.run_and_exit(Duration::from_secs(10)), restart_after(500));
        assert_eq!(clock.run_and_exit(SECOND), restart_after(1_000));
    }

    #[test]
    fn a_child_failing_fast_is_given_up_on_at_its_fifth_exit_within_a_minute() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);

        let decisions: Vec<Decision> = (0..5).map(|_| clock.run_and_exit(Duration::from_millis(100))).collect();

        assert_eq!(&decisions[..4], &[500, 1_000, 2_000, 4_000].map(restart_after));
        assert_eq!(decisions[4], Decision::GiveUp { exits: 5 });
    }

    #[test]
    fn a_child_that_exits_now_and_then_is_restarted_forever() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);

        // Every 16 s: never five exits within one minute.
        for i in 0..50 {
            assert_eq!(clock.run_and_exit(Duration::from_millis(15_500)), restart_after(500), "exit {i}");
        }
    }

    #[test]
    fn exits_older_than_the_window_no_longer_count_towards_giving_up() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);
        for _ in 0..4 {
            clock.run_and_exit(Duration::from_millis(100));
        }

        clock.now += Duration::from_secs(60);

        assert!(matches!(clock.run_and_exit(Duration::from_millis(100)), Decision::Restart { .. }));
    }

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

    fn temp_dir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gradebook-up-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
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
        let dir = temp_dir("gives-up");
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
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_child_that_failed_is_restarted_and_then_stopped_on_request() {
        let dir = temp_dir("restarts");
        let runs = dir.join("runs");
        // Fails twice, then runs until stopped.
        let script = format!(
            "echo run >> '{runs}'; [ $(wc -l < '{runs}') -ge 3 ] && exec sleep 1000; exit 1",
            runs = runs.display()
        );
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let (stop, done, mut gave_up) = supervised(&dir, &script, QUICK);

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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
