//! `gradebook up` as a real process, read from what it prints: the order it
//! starts and stops its children in, a killed child restarted while the rest
//! keeps running, and giving up on a child that keeps failing.
//!
//! `up` runs its children from its own executable, so the test binary
//! (`gradebook-under-test`) starts real registry, log and grading processes;
//! `--no-portal` leaves the portal out unless a test names its address (`make test-rust` builds its binary).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gradebook_runtime::credential::{Credential, REGISTRY, from_registry, operator_bearer, pair, root};
use gradebook_tests::TempDir;
use gradebook_tests::process::{self, Signal, binary};

const LIMIT: Duration = Duration::from_secs(30);

/// An address on a port that was free a moment ago: `up` must be told its
/// children's addresses before they bind them.
fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
    format!("127.0.0.1:{}", listener.local_addr().expect("a bound listener has an address").port())
}

/// A running `gradebook up`, with every line it prints (stdout and stderr).
struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for the assertions and their messages.
    seen: Vec<String>,
    registry_url: String,
    grading_url: String,
    log_url: String,
    _data: TempDir,
}

impl Up {
    /// `gradebook up --no-portal` on free ports, with a data folder of its own.
    fn start(extra: &[&str]) -> Up {
        Self::start_at(&free_addr(), extra)
    }

    /// The log service's URL, as `up` was told it.
    fn log_url(&self) -> String {
        self.log_url.clone()
    }

    /// Open (`--open`): these tests are about supervision; closing is tried
    /// by the tests that give a token or read the one `up` made.
    fn start_at(registry_addr: &str, extra: &[&str]) -> Up {
        Self::start_with(registry_addr, &[&["--open"], extra].concat(), &[])
    }

    fn start_with(registry_addr: &str, extra: &[&str], env: &[(&str, &str)]) -> Up {
        let data = TempDir::new("up");
        let grading_addr = free_addr();
        let log_addr = free_addr();
        // A test that names the portal's address runs the portal too.
        let portal: &[&str] = if extra.contains(&"--portal-addr") { &[] } else { &["--no-portal"] };
        let mut child = Command::new(binary())
            .arg("up")
            .args(portal)
            .args(["--registry-addr", registry_addr, "--log-addr", &log_addr])
            .args(["--grading-addr", &grading_addr, "--data-dir"])
            .arg(data.path())
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gradebook binary starts");
        let (tx, lines) = mpsc::channel();
        for stream in [child.stdout.take().map(boxed), child.stderr.take().map(boxed)].into_iter().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Up {
            child,
            lines,
            seen: vec![],
            registry_url: format!("http://{registry_addr}"),
            grading_url: format!("http://{grading_addr}"),
            log_url: format!("http://{log_addr}"),
            _data: data,
        }
    }

    /// Reads lines until one satisfies `check`, and returns it.
    fn wait_for(&mut self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if check(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("no line saying {what} within {LIMIT:?}; up printed:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn wait_until_up(&mut self) {
        self.wait_for("that the system is up", |l| l.contains("Gradebook is up"));
    }

    /// What `up` itself said (its lines read `up | ...`), in order.
    fn notes(&self) -> Vec<&str> {
        self.seen.iter().filter_map(|l| note(l)).collect()
    }

    /// The PID of the latest start of `name`, from "NAME started (pid N)".
    fn pid_of(&self, name: &str) -> u32 {
        let prefix = format!("{name} started (pid ");
        self.notes()
            .iter()
            .rev()
            .find_map(|n| n.strip_prefix(&prefix)?.strip_suffix(')')?.parse().ok())
            .unwrap_or_else(|| panic!("up never said it started {name}"))
    }

    fn signal(&self, sig: Signal, pid: u32) {
        process::send(pid, sig);
    }

    /// Waits for `up` to exit, then reads what it printed last.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("up can be waited for") {
                break status;
            }
            assert!(Instant::now() < deadline, "up did not exit within {LIMIT:?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        // Its pipes are closed now: the readers end once they have sent all.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // SIGTERM, so that `up` stops its children (SIGKILL would orphan them).
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + LIMIT;
            while let Ok(None) = self.child.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.wait();
    }
}

fn boxed(r: impl Read + Send + 'static) -> Box<dyn Read + Send> {
    Box::new(r)
}

/// The text of a line `up` printed about its children: `up | TEXT`.
fn note(line: &str) -> Option<&str> {
    line.strip_prefix("up")?.trim_start().strip_prefix("| ")
}

/// Names of the children whose notes end in `verb (…)`, in order.
fn named<'a>(notes: &[&'a str], verb: &str) -> Vec<&'a str> {
    notes.iter().filter_map(|n| n.split_once(&format!(" {verb} ("))).map(|(name, _)| name).collect()
}

async fn registered(registry_url: &str, name: &str, url: &str) -> bool {
    let Ok(r) = reqwest::get(format!("{registry_url}/services/{name}")).await else { return false };
    let providers: Vec<serde_json::Value> = r.json().await.unwrap_or_default();
    providers.iter().any(|p| p["URL"] == url)
}

#[test]
fn up_starts_registry_then_log_then_grading_and_on_sigterm_stops_them_in_reverse_order() {
    let mut up = Up::start(&[]);
    up.wait_until_up();
    assert_eq!(named(&up.notes(), "started"), ["registry", "log", "grading"]);

    up.signal(Signal::SIGTERM, up.child.id());
    let status = up.wait_exit();

    assert!(status.success(), "up exited with {status}");
    let notes = up.notes();
    assert_eq!(named(&notes, "stopped"), ["grading", "log", "registry"], "{notes:#?}");
    for name in ["grading", "log", "registry"] {
        // Exit status 0: each one handled its SIGTERM (deregistered, drained).
        assert!(notes.contains(&format!("{name} stopped (exit status: 0)").as_str()), "{notes:#?}");
    }
    assert!(!up.seen.iter().any(|l| l.contains("unexpectedly")), "{:#?}", up.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_restarts_a_child_killed_with_sigkill_and_the_rest_keeps_running() {
    let mut up = Up::start(&[]);
    up.wait_until_up();
    let (registry, log, grading) = (up.pid_of("registry"), up.pid_of("log"), up.pid_of("grading"));
    let killed_at = Instant::now();

    up.signal(Signal::SIGKILL, grading);

    up.wait_for("the restart of grading", |l| {
        note(l) == Some("grading exited unexpectedly (signal: 9 (SIGKILL)); restarting it in 500ms (restart 1)")
    });
    up.wait_for("that grading started again", |l| note(l).is_some_and(|n| n.starts_with("grading started")));
    assert_ne!(up.pid_of("grading"), grading);
    let (registry_url, grading_url) = (up.registry_url.clone(), up.grading_url.clone());
    gradebook_tests::eventually_async(LIMIT, "grading registered again", || {
        registered(&registry_url, "GradingService", &grading_url)
    })
    .await;
    // The registry may still list the old process's registration (same URL)
    // for a moment, so serving is waited for, not assumed from the listing.
    let students = format!("{grading_url}/students");
    gradebook_tests::eventually_async(LIMIT, "grading serves again", || async {
        reqwest::get(&students).await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    eprintln!("grading registered again {:?} after kill -9", killed_at.elapsed());
    assert_eq!((up.pid_of("registry"), up.pid_of("log")), (registry, log), "the rest was left running");
    assert!(up.child.try_wait().is_ok_and(|s| s.is_none()), "up keeps running");

    up.signal(Signal::SIGTERM, up.child.id());
    let status = up.wait_exit();
    assert!(status.success(), "up exited with {status}");
    assert_eq!(named(&up.notes(), "stopped"), ["grading", "log", "registry"]);
}

#[test]
fn up_gives_up_on_a_child_that_keeps_failing_and_says_which_one_and_where_its_output_is() {
    // Taken, so the registry cannot listen there and exits at every start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on loopback");
    let taken_addr = taken.local_addr().expect("a bound listener has an address").to_string();
    let mut up = Up::start_at(&taken_addr, &[]);
    let started = Instant::now();

    let status = up.wait_exit();

    let elapsed = started.elapsed();
    assert!(!status.success(), "up exited with {status}");
    let all = up.seen.join("\n");
    // Four waits of 0.5 + 1 + 2 + 4 s between five quick failures.
    assert!(elapsed >= Duration::from_millis(7_500), "gave up after {elapsed:?}:\n{all}");
    assert_eq!(named(&up.notes(), "started"), ["registry"; 5], "{all}");
    let message = up.seen.iter().find(|l| l.starts_with("gradebook: ")).map(String::as_str).unwrap_or_default();
    assert!(
        message.starts_with("gradebook: registry exited 5 times within 1m (the last time: exit status: 1)"),
        "{all}"
    );
    assert!(all.contains("cannot listen on"), "its last lines say why: {all}");
    let log = up._data.path().join("up").join("registry.log");
    assert!(all.contains(&format!("Its whole output is in {}", log.display())), "{all}");
    let written = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(written.matches("cannot listen on").count(), 5, "{written}");
}

/// With a cluster token every endpoint but liveness and metrics is closed:
/// tried without a credential, with wrong ones, and with the master secret
/// itself, which `up` keeps (no child accepts it); the operator's key works.
#[tokio::test]
async fn with_a_cluster_token_every_endpoint_of_every_service_refuses_a_caller_without_it() {
    const TOKEN: &str = "closed-cluster-token-for-the-test";
    const SCRAPE: &str = "scrape-credential-for-the-test";
    let mut up = Up::start_with(&free_addr(), &[], &[("GRADEBOOK_TOKEN", TOKEN), ("GRADEBOOK_METRICS_TOKEN", SCRAPE)]);
    up.wait_until_up();
    let (registry, log, grading) = (up.registry_url.clone(), up.log_url(), up.grading_url.clone());
    let client = reqwest::Client::new();
    let json = |v: serde_json::Value| v.to_string();
    let registration = json(serde_json::json!({
        "ServiceName": "Stranger", "ServiceURL": "http://127.0.0.1:9", "HeartbeatURL": "http://127.0.0.1:9/heartbeat"
    }));
    let grade = json(serde_json::json!({"Title": "Forged", "Type": "Quiz", "Score": 100}));
    let patch =
        json(serde_json::json!({"Added": [{"Name": "GradingService", "URL": "http://127.0.0.1:9"}], "Removed": []}));
    let closed: Vec<(&str, String, Option<String>)> = vec![
        ("POST", format!("{registry}/services"), Some(registration.clone())),
        ("DELETE", format!("{registry}/services"), Some(grading.clone())),
        ("GET", format!("{registry}/services"), None),
        ("GET", format!("{registry}/services/GradingService"), None),
        ("POST", format!("{registry}/sessions?url={grading}"), Some(String::new())),
        ("POST", format!("{log}/log"), Some("[Forger] - forged".into())),
        ("GET", format!("{log}/log"), None),
        ("GET", format!("{log}/log/stream"), None),
        ("GET", format!("{log}/log/stats"), None),
        ("POST", format!("{log}/registry/update"), Some(patch.clone())),
        ("GET", format!("{grading}/students"), None),
        ("GET", format!("{grading}/students/1"), None),
        ("POST", format!("{grading}/students/1/grades"), Some(grade.clone())),
        ("POST", format!("{grading}/students"), Some(json(serde_json::json!({"FirstName": "A", "LastName": "B"})))),
        ("DELETE", format!("{grading}/students/1/grades/1"), None),
        ("GET", format!("{grading}/changes"), None),
        ("POST", format!("{grading}/registry/update"), Some(patch.clone())),
        (
            "POST",
            format!("{grading}/accounts/verify"),
            Some(json(serde_json::json!({"name": "admin", "password": "x"}))),
        ),
        ("POST", format!("{grading}/accounts/verify-token"), Some(json(serde_json::json!({"token": "gb_admin_x"})))),
        ("GET", format!("{grading}/accounts/admin"), None),
    ];
    let send = |method: &str, url: &str, body: &Option<String>, token: Option<&str>| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = client.request(method, url).header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body.clone());
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.timeout(Duration::from_secs(5)).send()
    };

    for (method, url, body) in &closed {
        let almost = operator_bearer("closed-cluster-token-for-the-tesT", "GradingService");
        for token in [None, Some("wrong"), Some(TOKEN), Some("Operator:00"), Some(almost.as_str())] {
            let answer = send(method, url, body, token).await.expect("the service answers");
            assert_eq!(answer.status(), 401, "{method} {url} with token {token:?}");
            let error: serde_json::Value = answer.json().await.expect("a JSON error");
            assert!(error["error"].is_string(), "{method} {url}: {error}");
        }
    }
    // Nothing a stranger sent took effect; the holder of the token gets through.
    let operator = |service: &str| operator_bearer(TOKEN, service);
    let students = send("GET", &format!("{grading}/students/1"), &None, Some(&operator("GradingService")))
        .await
        .expect("grading answers");
    assert_eq!(students.status(), 200);
    let nick: serde_json::Value = students.json().await.expect("a student");
    assert!(!nick.to_string().contains("Forged"));
    let listed = send("GET", &format!("{registry}/services/GradingService"), &None, Some(&operator(REGISTRY)))
        .await
        .expect("answers");
    assert_eq!(
        listed.json::<Vec<serde_json::Value>>().await.expect("providers"),
        vec![serde_json::json!({"Name": "GradingService", "URL": grading})]
    );
    for url in [
        format!("{registry}/healthz"),
        format!("{log}/heartbeat"),
        format!("{log}/healthz"),
        format!("{grading}/heartbeat"),
    ] {
        assert_eq!(send("GET", &url, &None, None).await.expect("answers").status(), 200, "{url} stays open");
    }
    // `/metrics` takes its own scrape credential (or the operator's key).
    for (service, url) in [
        (REGISTRY, format!("{registry}/metrics")),
        ("LogService", format!("{log}/metrics")),
        ("GradingService", format!("{grading}/metrics")),
    ] {
        let status = |bearer: Option<String>| {
            let (url, bearer) = (url.clone(), bearer.clone());
            let send = &send;
            async move { send("GET", &url, &None, bearer.as_deref()).await.expect("answers").status() }
        };
        assert_eq!(status(None).await, 401, "{url} open to anyone");
        assert_eq!(status(Some(TOKEN.to_owned())).await, 401, "{url} takes the master secret");
        let another = Credential::derive(TOKEN, "LogService", &[service]).bearer_to(service);
        assert_eq!(status(another).await, 401, "{url} takes a service's key");
        assert_eq!(status(Some(SCRAPE.to_owned())).await, 200, "{url} refuses the scrape credential");
        assert_eq!(status(Some(operator(service))).await, 200, "{url} refuses the operator");
    }
    // Each child's credential reached it through its environment only, and
    // the master secret reached no child at all.
    for name in ["registry", "log", "grading"] {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", up.pid_of(name))).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN), "{name}'s command line shows the token");
        let environ =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/environ", up.pid_of(name))).unwrap_or_default())
                .into_owned();
        assert!(!environ.contains(TOKEN), "{name} was handed the master secret");
        assert!(environ.contains("GRADEBOOK_CREDENTIAL="), "{name} was handed no credential");
    }
}

#[tokio::test]
async fn on_first_start_up_closes_the_cluster_with_a_new_token_only_its_owner_can_read() {
    let mut up = Up::start_with(&free_addr(), &[], &[]);
    up.wait_until_up();
    let path = up._data.path().join("cluster-token");

    let token = std::fs::read_to_string(&path).expect("up keeps the token it made");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).expect("the token file").permissions());
    let client = reqwest::Client::new();
    let list = format!("{}/services", up.registry_url);
    let anonymous = client.get(&list).send().await.expect("the registry answers");
    let holder = client.get(&list).bearer_auth(operator_bearer(token.trim(), REGISTRY)).send().await.expect("answers");

    assert_eq!(mode & 0o777, 0o600, "the token file is readable by its owner only");
    assert!(token.trim().len() >= 32, "a long random token");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(holder.status(), 200);
}

/// The credential `up` handed the child `name`, read from its environment.
fn credential_of(up: &Up, name: &str) -> Credential {
    let environ = std::fs::read(format!("/proc/{}/environ", up.pid_of(name))).expect("the child's environment");
    let text = environ
        .split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(b"GRADEBOOK_CREDENTIAL="))
        .unwrap_or_else(|| panic!("{name} has no credential"));
    Credential::parse(&String::from_utf8_lossy(text)).expect("a credential")
}

/// Sends `method url` with `body` and the bearer `auth`: the answer's status.
async fn status_of(method: &str, url: &str, body: &str, auth: &str) -> u16 {
    answer_of(method, url, body, auth).await.0
}

/// Whether the gate (not the endpoint) refused `method url` for `auth`.
async fn gate_refuses(method: &str, url: &str, body: &str, auth: &str) -> (bool, u16) {
    let (status, body) = answer_of(method, url, body, auth).await;
    (body.contains("may not call") || body.contains("missing or wrong credential"), status)
}

/// Sends `method url` with `body` and the bearer `auth`: status and body.
async fn answer_of(method: &str, url: &str, body: &str, auth: &str) -> (u16, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let request = reqwest::Client::new().request(method, url).header("content-type", "application/json");
    let answer = request.bearer_auth(auth).body(body.to_owned()).timeout(Duration::from_secs(5)).send().await;
    let answer = answer.expect("the service answers");
    (answer.status().as_u16(), answer.text().await.unwrap_or_default())
}

/// Finding 1 and its kin: the log service's own credential (the one `up`
/// handed it) cannot register as grading, ask grading to check a password,
/// or post a patch to anyone.
#[tokio::test]
async fn the_log_services_credential_cannot_pose_as_grading_check_a_password_or_post_a_patch() {
    let mut up = Up::start_with(&free_addr(), &[], &[("GRADEBOOK_TOKEN", "least-privilege-cluster-token")]);
    up.wait_until_up();
    let (registry, grading, log) = (up.registry_url.clone(), up.grading_url.clone(), up.log_url());
    let own = credential_of(&up, "log");
    assert_eq!(own.name, "LogService");
    let patch = serde_json::json!({"Added": [{"Name": "GradingService", "URL": "http://127.0.0.1:9"}], "Removed": []});
    let posing = serde_json::json!({
        "ServiceName": "GradingService", "ServiceURL": "http://127.0.0.1:18383",
        "HeartbeatURL": "http://127.0.0.1:18383/heartbeat", "ServiceUpdateURL": "http://127.0.0.1:18383/registry/update"
    });
    let to_registry = own.bearer_to(REGISTRY).expect("the log service may call the registry");

    let registered = status_of("POST", &format!("{registry}/services"), &posing.to_string(), &to_registry).await;
    let removed = status_of("DELETE", &format!("{registry}/services"), &grading, &to_registry).await;
    // It holds no key for grading; the key it would need is refused anyway.
    assert!(own.bearer_to("GradingService").is_none(), "the log service was handed a key for grading");
    let key = format!(
        "LogService:{}",
        hex::encode(pair(&root("least-privilege-cluster-token", "GradingService"), "LogService"))
    );
    let verify = serde_json::json!({"name": "admin", "password": "guess"}).to_string();
    let verified = status_of("POST", &format!("{grading}/accounts/verify"), &verify, &key).await;
    let patched = status_of("POST", &format!("{grading}/registry/update"), &patch.to_string(), &key).await;
    let self_patched = status_of("POST", &format!("{log}/registry/update"), &patch.to_string(), &to_registry).await;

    assert_eq!(registered, 403, "registered as GradingService with the log service's credential");
    assert_eq!(removed, 403, "deregistered grading with the log service's credential");
    assert_eq!(verified, 403, "asked grading to verify a password");
    assert_eq!(patched, 403, "posted a patch to grading");
    assert_eq!(self_patched, 401, "posted a patch to itself with a key meant for the registry");
    let listed: Vec<serde_json::Value> = reqwest::Client::new()
        .get(format!("{registry}/services/GradingService"))
        .bearer_auth(operator_bearer("least-privilege-cluster-token", REGISTRY))
        .send()
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("providers");
    assert_eq!(listed, vec![serde_json::json!({"Name": "GradingService", "URL": grading})]);
}

/// Every endpoint of every service, called with each service's key for it:
/// exactly the policy of docs/operations.md lets a call through.
#[tokio::test]
async fn each_endpoint_answers_exactly_the_callers_its_policy_names() {
    const K: &str = "policy-matrix-cluster-token";
    let mut up = Up::start_with(&free_addr(), &[], &[("GRADEBOOK_TOKEN", K)]);
    up.wait_until_up();
    let (registry, grading, log) = (up.registry_url.clone(), up.grading_url.clone(), up.log_url());
    let callers = [REGISTRY, "LogService", "GradingService", "Portal"];
    // What `caller` would send `receiver` (the registry's patch key toward
    // the services; everyone's pairwise key otherwise).
    let bearer = |caller: &str, receiver: &str| {
        let key = if caller == REGISTRY && receiver != REGISTRY {
            from_registry(&root(K, REGISTRY), receiver)
        } else {
            pair(&root(K, receiver), caller)
        };
        format!("{caller}:{}", hex::encode(key))
    };
    let empty_patch = serde_json::json!({"Added": [], "Removed": []}).to_string();
    let verify = serde_json::json!({"name": "admin", "password": "guess"}).to_string();
    let record = serde_json::json!([{"service": "Matrix", "level": "info", "message": "matrix"}]).to_string();
    // (receiver, method, url, body, callers allowed)
    let endpoints: Vec<(&str, &str, String, String, &[&str])> = vec![
        (REGISTRY, "GET", format!("{registry}/services"), String::new(), &callers),
        ("LogService", "GET", format!("{log}/log"), String::new(), &["Portal"]),
        ("LogService", "GET", format!("{log}/log/stats"), String::new(), &["Portal"]),
        ("LogService", "POST", format!("{log}/log"), record, &callers),
        ("LogService", "POST", format!("{log}/registry/update"), empty_patch.clone(), &[REGISTRY]),
        ("GradingService", "GET", format!("{grading}/students"), String::new(), &["Portal"]),
        ("GradingService", "POST", format!("{grading}/accounts/verify"), verify, &["Portal"]),
        ("GradingService", "GET", format!("{grading}/accounts/admin"), String::new(), &["Portal"]),
        ("GradingService", "POST", format!("{grading}/registry/update"), empty_patch, &[REGISTRY]),
    ];

    let mut wrong = vec![];
    for (receiver, method, url, body, allowed) in &endpoints {
        for caller in callers.iter().filter(|c| *c != receiver) {
            let (refused, status) = gate_refuses(method, url, body, &bearer(caller, receiver)).await;
            if refused == allowed.contains(caller) {
                wrong.push(format!("{caller} → {method} {url}: {status}"));
            }
        }
    }

    assert!(wrong.is_empty(), "calls answered against the policy:\n{}", wrong.join("\n"));
}

/// Finding 1, end to end: a fake grading registered with the log service's
/// credential is refused, a forged patch to the portal too, and the portal
/// sends no sign-in (an API token here) anywhere but the real grading.
#[tokio::test]
async fn a_fake_grading_with_another_services_credential_gets_no_sign_in_from_the_portal() {
    const K: &str = "finding-one-cluster-token";
    let portal_addr = free_addr();
    let mut up = Up::start_with(&free_addr(), &["--portal-addr", &portal_addr], &[("GRADEBOOK_TOKEN", K)]);
    up.wait_until_up();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let record = seen.clone();
    let fake = axum::Router::new().fallback(move |request: axum::extract::Request| {
        record.lock().unwrap().push(request.uri().to_string());
        async { axum::Json(serde_json::json!({"name": "admin", "role": "teacher"})) }
    });
    let fake_url = gradebook_tests::serve_app(fake).await;
    let log = credential_of(&up, "log");
    let posing = serde_json::json!({
        "ServiceName": "GradingService", "ServiceURL": fake_url,
        "HeartbeatURL": format!("{fake_url}/heartbeat"), "ServiceUpdateURL": format!("{fake_url}/registry/update")
    });
    let patch = serde_json::json!({"Added": [{"Name": "GradingService", "URL": fake_url}], "Removed": []}).to_string();
    let to_registry = log.bearer_to(REGISTRY).expect("a key for the registry");

    let registered =
        status_of("POST", &format!("{}/services", up.registry_url), &posing.to_string(), &to_registry).await;
    let portal = format!("http://{portal_addr}");
    let patched = status_of("POST", &format!("{portal}/registry/update"), &patch, &to_registry).await;
    let mut answers = vec![];
    for i in 0..6 {
        let token = format!("gb_admin_{i:0>40}");
        answers.push(status_of("GET", &format!("{portal}/api/students"), "", &token).await);
    }

    assert_eq!(registered, 403, "the log service's credential registered as GradingService");
    assert_eq!(patched, 401, "a forged patch reached the portal's providers");
    assert!(answers.iter().all(|s| *s == 401 || *s == 429), "a junk token signed in: {answers:?}");
    assert!(seen.lock().unwrap().is_empty(), "the fake grading was asked: {:?}", seen.lock().unwrap());
    let metrics = reqwest::get(format!("{portal}/metrics")).await.expect("the portal answers").status();
    assert_ne!(metrics, 200, "the portal's /metrics is open to anyone");
}
