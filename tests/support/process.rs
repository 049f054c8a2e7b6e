//! Real `gradebook` processes, for what only a real process can show:
//! `kill -9`, SIGTERM, SIGSTOP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Sends `sig` to the process `pid`, which must exist.
pub fn send(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("a PID fits an i32"));
    nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("{sig} to {pid}: {e}"));
}

pub struct Proc {
    pub child: Child,
    pub url: String,
}

/// The `gradebook` binary built beside the running test or benchmark: in
/// `target/<profile>/`, the parent of the `deps/` folder test executables
/// run from.
pub fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the process knows its own path");
    let mut dir = exe.parent().expect("an executable lives in a folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("gradebook-under-test{}", std::env::consts::EXE_SUFFIX))
}

impl Proc {
    /// Starts `gradebook ARGS...`; when it prints "listening on URL", that
    /// URL is kept (otherwise `url` is empty).
    pub fn start(args: &[&str], wait_for_url: bool) -> Proc {
        Self::start_with(Command::new(binary()), args, wait_for_url)
    }

    /// Like [`Proc::start`], inside the network namespace `netns`.
    pub fn start_in(netns: &str, args: &[&str], wait_for_url: bool) -> Proc {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns]).arg(binary());
        Self::start_with(command, args, wait_for_url)
    }

    fn start_with(mut command: Command, args: &[&str], wait_for_url: bool) -> Proc {
        let mut child = command
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the gradebook binary starts");
        let mut url = String::new();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        if wait_for_url {
            for line in lines.by_ref() {
                let line = line.unwrap();
                if let Some(u) = line.trim().strip_prefix("listening on ") {
                    url = u.to_owned();
                    break;
                }
            }
            assert!(!url.is_empty(), "the process exited before listening");
        }
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Proc { child, url }
    }

    /// Starts `gradebook` on a free port of 127.0.0.1: `args(addr)` gives its
    /// arguments for the address `127.0.0.1:PORT`. Returns once it accepts
    /// connections there, with that address. When another process took the
    /// port between its choice and the child's bind (the child then exits),
    /// tries another port.
    pub async fn start_listening(args: impl Fn(&str) -> Vec<String>) -> (Proc, String) {
        const TRIES: usize = 5;
        for _ in 0..TRIES {
            let addr = format!("127.0.0.1:{}", crate::free_port());
            let args = args(&addr);
            let mut proc = Proc::start(&args.iter().map(String::as_str).collect::<Vec<_>>(), false);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if proc.child.try_wait().unwrap().is_some() {
                    break; // it could not bind: another port
                }
                if tokio::net::TcpStream::connect(&addr).await.is_ok() && proc.child.try_wait().unwrap().is_none() {
                    return (proc, addr);
                }
                assert!(tokio::time::Instant::now() < deadline, "nothing listens at {addr}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("gradebook {:?} exited before listening, {TRIES} times", args("127.0.0.1:PORT"));
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: Signal) {
        send(self.child.id(), sig);
    }

    /// SIGKILL, sent from this process at once (no `kill` command to
    /// start first), then reaped.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself (e.g. after SIGTERM).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something accepts TCP connections at `addr`.
pub async fn wait_listening(addr: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "nothing listens at {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
