//! Ours beside the original Go program in the same run (issue 13): the
//! tutorial's registry, log and grading, built into a temporary copy and run
//! on their fixed ports (registry 3000, log 4000, grading 6000), and our
//! grading (SQLite) and log service, each endpoint measured against both back
//! to back, with the bare hello-world as the machine's limit.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use gradebook_tests::TempDir;
use gradebook_tests::process::Proc;

use crate::load::{InTurn, hello_world, wrk};
use crate::{Row, row};

pub async fn run() -> Vec<Row> {
    let go = GoProgram::build();
    // The registry first: the others register with it as they start.
    let _go_registry = go.start("registryservice", 3000).await;
    let _go_log = go.start("logservice", 4000).await;
    let _go_grading = go.start("gradingservice", 6000).await;

    let dir = TempDir::new("bench-original-ours");
    let db = format!("sqlite://{}/grading.db", dir.path().display());
    let log_dir = dir.path().join("log").to_str().unwrap().to_owned();
    let ours = |service: &str, addr: &str, store: [&str; 2]| -> Vec<String> {
        [service, "--addr", addr, store[0], store[1], "--registry-url", "http://127.0.0.1:9", "--ship-level", "off"]
            .map(str::to_owned)
            .to_vec()
    };
    let (_grading, grading) = Proc::start_listening(|addr| ours("grading", addr, ["--database-url", &db])).await;
    let (_log, log) = Proc::start_listening(|addr| ours("log", addr, ["--dir", &log_dir])).await;

    let mut rows = vec![];
    let hello = hello_world().await;
    rows.push(row("hello-world GET (machine limit)", wrk(&hello, None).to_string()));
    rows.push(row("hello-world POST (machine limit)", wrk(&hello, Some(("text/plain", "hello"))).to_string()));

    // Reads first: every grade posted below makes /students longer, on both.
    for path in ["/students", "/students/1"] {
        rows.push(versus(&format!("grading GET {path}"), &format!("{grading}{path}"), 6000, path, None, Some(1.5)));
    }
    // The original's Grade: {Title, Type, Score}; it seeds students 1 to 5.
    let grade = r#"{"Title":"Bench","Type":"Quiz","Score":80}"#;
    let path = "/students/2/grades";
    rows.push(versus(
        &format!("grading POST {path} (ours durable, original in memory)"),
        &format!("{grading}{path}"),
        6000,
        path,
        Some(("application/json", grade)),
        Some(0.5),
    ));
    // The original's log takes any non-empty body as the line.
    let line = "[GradingService] - Student 3 got 87 on Quiz 4";
    rows.push(versus(
        "log POST one text line (ours durable, original appends without fsync)",
        &format!("{log}/log"),
        4000,
        "/log",
        Some(("text/plain", line)),
        None,
    ));
    rows
}

/// One endpoint under wrk, ours then the original's, and their ratio.
fn versus(what: &str, ours: &str, go_port: u16, go_path: &str, post: Option<(&str, &str)>, goal: Option<f64>) -> Row {
    let both = InTurn::measure(&format!("http://{ours}"), &format!("http://127.0.0.1:{go_port}{go_path}"), post);
    let ratio = both.ratio;
    let verdict = match goal {
        Some(goal) if ratio >= goal => format!(" (meets the goal of ≥ {goal}×)"),
        Some(goal) => format!(" (misses the goal of ≥ {goal}×)"),
        None => String::new(),
    };
    row(what, format!("median {ratio:.2}×{verdict}, in turn (ours/original: {both})"))
}

/// The original Go program built into a temporary copy (its folder is
/// read-only where it is mounted; it writes its log file into the copy).
struct GoProgram {
    dir: TempDir,
}

impl GoProgram {
    fn source() -> PathBuf {
        std::env::var_os("GRADEBOOK_GO_ORIGINAL")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/go-original"))
    }

    fn build() -> Self {
        let source = Self::source();
        assert!(source.is_dir(), "the original Go program is not at {} (set GRADEBOOK_GO_ORIGINAL)", source.display());
        let go = Command::new("go").arg("version").output();
        assert!(
            go.is_ok_and(|o| o.status.success()),
            "`go` is not installed: the original Go program cannot be built (scripts/setup.sh installs golang-go)"
        );
        let dir = TempDir::new("bench-go-original");
        let mut source_contents = source.into_os_string();
        source_contents.push("/.");
        run_ok(Command::new("cp").arg("-R").arg(source_contents).arg(dir.path()));
        run_ok(Command::new("chmod").arg("-R").arg("u+w").arg(dir.path()));
        for binary in ["registryservice", "logservice", "gradingservice"] {
            run_ok(
                Command::new("go")
                    .args(["build", "-trimpath", "-o", &format!("bin/{binary}"), &format!("./cmd/{binary}")])
                    .current_dir(dir.path())
                    .envs([
                        ("GOFLAGS", "-mod=mod"),
                        ("GO111MODULE", "on"),
                        ("GOPROXY", "off"),
                        ("GOTOOLCHAIN", "local"),
                    ]),
            );
        }
        Self { dir }
    }

    /// Starts `binary` from its `cmd/` folder, as the tutorial does, and
    /// returns once it listens on `port` and is still there after its
    /// registration. The original registers before its server listens and
    /// exits when the registry's first patch finds nothing there (its
    /// NOTES.md, R8): such a start is tried again.
    async fn start(&self, binary: &str, port: u16) -> GoProc {
        let addr = format!("127.0.0.1:{port}");
        let free_by = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(&addr).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < free_by,
                "port {port} is in use (another run of the Go program?): cannot start the original {binary}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let output = self.dir.path().join(format!("{binary}.out"));
        for _attempt in 0..5 {
            let out = std::fs::OpenOptions::new().create(true).append(true).open(&output).unwrap();
            let mut child = Command::new(self.dir.path().join("bin").join(binary))
                .current_dir(self.dir.path().join("cmd").join(binary))
                .stdin(Stdio::piped())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("the original {binary} starts: {e}"));
            // Any line on stdin, or its end, stops it: hold it open.
            let stdin = child.stdin.take();
            let mut proc = GoProc { child, _stdin: stdin };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while proc.child.try_wait().unwrap().is_none() && tokio::time::Instant::now() < deadline {
                if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    if proc.child.try_wait().unwrap().is_none() {
                        return proc;
                    }
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proc.kill();
        }
        panic!("the original {binary} did not start: {}", std::fs::read_to_string(&output).unwrap_or_default());
    }
}

fn run_ok(command: &mut Command) {
    let status = command.status().unwrap_or_else(|e| panic!("{command:?} runs: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
}

/// A process of the original, killed on drop.
struct GoProc {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl GoProc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GoProc {
    fn drop(&mut self) {
        self.kill();
    }
}
