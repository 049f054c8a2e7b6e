//! `gradebook up`: the whole system as separate processes of this binary,
//! started in dependency order, each awaited until healthy, their output
//! shown prefixed with their name, and stopped in reverse order on Ctrl-C
//! (SIGTERM each, so each deregisters and drains).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
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

/// The processes of the system, in start order.
pub fn parts(args: &UpArgs) -> anyhow::Result<Vec<Part>> {
    let registry_url = format!("http://{}", args.registry_addr);
    let database_url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.data_dir.join("grading.db").display()),
    };
    if args.grading > 1 && !database_url.starts_with("postgres") {
        bail!(
            "--grading {} needs a shared database: with SQLite every instance would keep its own grades. \
             Pass --database-url postgres://USER@HOST/DB (or run one instance).",
            args.grading
        );
    }
    let common = args.common.clone();
    let service = ServiceArgs { registry_url: registry_url.clone(), common: common.clone(), ..defaults_of() };
    let env: Vec<(String, String)> =
        args.common.token.iter().map(|t| ("GRADEBOOK_TOKEN".to_owned(), t.clone())).collect();
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
        let child = Child::Portal(PortalArgs { addr: Some(args.portal_addr), service: service.clone() });
        let mut portal = part("portal".into(), child, args.portal_addr, Some(names::PORTAL));
        portal.env.push(("LEPTOS_SITE_ROOT".into(), args.site_root.display().to_string()));
        parts.push(portal);
    }
    Ok(parts)
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
    supervise_all(parts(args)?, &banner, shutdown).await
}

/// Starts `parts` in order and supervises them until `shutdown`, or until
/// one of them exits on its own (then everything is stopped).
async fn supervise_all(parts: Vec<Part>, banner: &str, shutdown: CancellationToken) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the gradebook binary")?;
    let client = gradebook_runtime::http::client(Duration::from_secs(1));
    let width = parts.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut running: Vec<Running> = vec![];
    let (exited_tx, mut exited_rx) = tokio::sync::mpsc::channel::<String>(parts.len().max(1));
    let result = async {
        for (i, part) in parts.iter().enumerate() {
            let program = match part.child.program() {
                Some(name) => {
                    let path = exe.with_file_name(name);
                    if !path.exists() {
                        bail!(
                            "{} is missing: build it first (make up does: cargo leptos build --release)",
                            path.display()
                        );
                    }
                    path
                }
                None => exe.clone(),
            };
            let mut child = Command::new(&program)
                .args(part.child.args())
                .envs(part.env.iter().cloned())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                // Its own process group: a terminal's Ctrl-C reaches only us,
                // and we stop the parts one by one in reverse order.
                .process_group(0)
                .spawn()
                .with_context(|| format!("cannot start {}", part.name))?;
            let color = 31 + (i % 6);
            let prefix = format!("\x1b[{color}m{:width$} |\x1b[0m", part.name);
            for stream in [child.stdout.take().map(boxed), child.stderr.take().map(boxed)].into_iter().flatten() {
                let prefix = prefix.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(stream).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        println!("{prefix} {line}");
                    }
                });
            }
            let (stop, stop_rx) = tokio::sync::oneshot::channel();
            let done = tokio::spawn(supervise(part.name.clone(), child, stop_rx, exited_tx.clone()));
            running.push(Running { stop, done });
            tokio::select! {
                ready = wait_ready(&client, part, &shutdown) => ready?,
                Some(name) = exited_rx.recv() => bail!("{name} exited while starting"),
            }
        }
        println!("\n  {banner}\n  Press Ctrl-C to stop.\n");
        tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(name) = exited_rx.recv() => bail!("{name} exited unexpectedly; stopping the rest"),
        }
    }
    .await;
    stop_all(&mut running).await;
    result
}

fn boxed<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R) -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    Box::new(r)
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

/// Owns one child: reports it if it exits by itself, or stops it on request
/// with SIGTERM (SIGKILL after 10 s).
async fn supervise(
    name: String,
    mut child: tokio::process::Child,
    stop: tokio::sync::oneshot::Receiver<()>,
    exited: tokio::sync::mpsc::Sender<String>,
) {
    tokio::select! {
        _ = child.wait() => {
            let _ = exited.send(name).await;
        }
        _ = stop => {
            if let Some(pid) = child.id() {
                // The `kill` command keeps this crate free of unsafe libc calls.
                let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
            }
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(status)) => println!("{name} stopped ({status})"),
                _ => {
                    let _ = child.kill().await;
                    println!("{name} killed after 10 s");
                }
            }
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
