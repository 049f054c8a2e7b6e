//! Load generation with wrk (Debian's package), and a bare axum hello-world
//! that gives the machine's loopback limit for the same load.

use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

/// What a wrk run measured.
pub struct Measured {
    pub rps: f64,
    /// Answers that were not 2xx/3xx, plus socket errors.
    pub errors: u64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0} req/s", self.rps)?;
        if self.errors > 0 {
            write!(f, " ({} errors)", self.errors)?;
        }
        Ok(())
    }
}

pub const CONNECTIONS: usize = 32;
pub const DURATION: Duration = Duration::from_secs(5);

/// Runs `load` (a wrk run) and, halfway through it, `sample` (an RSS
/// reading, say): what the processes hold while under load.
pub fn sampled_halfway<L, S: Send>(load: impl FnOnce() -> L, sample: impl FnOnce() -> S + Send) -> (L, S) {
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            std::thread::sleep(DURATION / 2);
            sample()
        });
        let loaded = load();
        (loaded, sampler.join().expect("the sampler does not panic"))
    })
}

/// Runs wrk against `url`; with a body, as a POST of `content_type`.
pub fn wrk(url: &str, post: Option<(&str, &str)>) -> Measured {
    let script = std::env::temp_dir().join(format!("gradebook-wrk-{}.lua", std::process::id()));
    let lua = match post {
        Some((content_type, body)) => format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"{content_type}\"\n",
            lua_string(body)
        ),
        None => String::new(),
    };
    std::fs::write(&script, lua).expect("temp dir is writable");
    let out = Command::new("wrk")
        .args(["-t", "2", "-c", &CONNECTIONS.to_string(), "-d", &format!("{}s", DURATION.as_secs())])
        .arg("-s")
        .arg(&script)
        .arg(url)
        .output()
        .expect("wrk is installed (scripts/setup.sh bench)");
    let text = String::from_utf8_lossy(&out.stdout);
    let number_after = |key: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    let socket_errors: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|rest| rest.split(',').filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Measured {
        rps: number_after("Requests/sec:").unwrap_or(0.0),
        errors: number_after("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64 + socket_errors,
    }
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// A bare axum server answering "hello" to GET and POST: the same stack with
/// no work, i.e. what loopback and this machine allow.
pub async fn hello_world() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/", get(|| async { "hello" })).route("/", post(|| async { "hello" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Two endpoints under wrk in turn, three times each: this machine's speed
/// drifts between runs, so a ratio of two single runs says little.
pub struct InTurn {
    /// The median of ours/theirs.
    pub ratio: f64,
    /// Each run's req/s, ours and theirs.
    pub runs: Vec<(f64, f64)>,
}

impl InTurn {
    pub fn measure(ours: &str, theirs: &str, post: Option<(&str, &str)>) -> Self {
        let runs: Vec<(f64, f64)> = (0..3).map(|_| (wrk(ours, post).rps, wrk(theirs, post).rps)).collect();
        let mut ratios: Vec<f64> = runs.iter().map(|(ours, theirs)| ours / theirs).collect();
        ratios.sort_by(f64::total_cmp);
        Self { ratio: ratios[1], runs }
    }
}

impl std::fmt::Display for InTurn {
    /// The runs, as `ours/theirs req/s, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs: Vec<String> = self.runs.iter().map(|(ours, theirs)| format!("{ours:.0}/{theirs:.0}")).collect();
        write!(f, "{} req/s", runs.join(", "))
    }
}
