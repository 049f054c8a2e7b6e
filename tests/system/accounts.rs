//! Accounts: the `gradebook accounts` commands (a real process, passwords on
//! standard input) and the endpoints the portal calls on grading — verify a
//! password, verify a personal token, read an account — on SQLite and, with
//! `scripts/with-postgres.sh`, PostgreSQL.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gradebook::registry::Config;
use gradebook_tests::process::binary;
use gradebook_tests::{TempDir, TestGrading, TestRegistry, postgres_database};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// What one `gradebook accounts ...` printed.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// A grading service on a database, and the CLI on the same database.
struct Setup {
    database_url: String,
    grading: TestGrading,
    client: reqwest::Client,
    _registry: TestRegistry,
    _dir: Option<TempDir>,
}

impl Setup {
    async fn sqlite() -> Setup {
        let dir = TempDir::new("accounts");
        let url = format!("sqlite://{}/grading.db", dir.path().display());
        Self::on(url, Some(dir))
    }

    async fn postgres() -> Option<Setup> {
        let url = postgres_database("accounts").await?;
        Some(Self::on(url, None))
    }

    fn on(database_url: String, dir: Option<TempDir>) -> Setup {
        let registry = TestRegistry::spawn(Config::default());
        let grading = TestGrading::spawn(&registry.url, &database_url);
        Setup { database_url, grading, client: reqwest::Client::new(), _registry: registry, _dir: dir }
    }

    /// Runs `gradebook accounts ARGS --database-url ...`, with `stdin` as its
    /// standard input (a pipe: not a terminal), or an empty one.
    async fn accounts(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut child = tokio::process::Command::new(binary())
            .arg("accounts")
            .args(args)
            .args(["--database-url", &self.database_url])
            .env_remove("GRADEBOOK_DATABASE_URL")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the gradebook binary starts");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.unwrap();
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("gradebook accounts finishes")
            .unwrap();
        Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed.
    async fn accounts_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let ran = self.accounts(args, stdin).await;
        assert!(ran.ok, "gradebook accounts {args:?} failed: {}{}", ran.stdout, ran.stderr);
        ran.stdout
    }

    /// Runs a command that must fail, saying something that contains `says`.
    async fn accounts_fails(&self, args: &[&str], stdin: Option<&str>, says: &str) {
        let ran = self.accounts(args, stdin).await;
        assert!(!ran.ok, "gradebook accounts {args:?} succeeded: {}", ran.stdout);
        assert!(ran.stderr.contains(says), "gradebook accounts {args:?}: {:?} does not say {says:?}", ran.stderr);
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.client.post(format!("{}{path}", self.grading.url)).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn verify(&self, name: &str, password: &str) -> (u16, Value) {
        self.post("/accounts/verify", json!({"name": name, "password": password})).await
    }

    async fn verify_token(&self, token: &str) -> (u16, Value) {
        self.post("/accounts/verify-token", json!({"token": token})).await
    }

    async fn account(&self, name: &str) -> (u16, Value) {
        let r = self.client.get(format!("{}/accounts/{name}", self.grading.url)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn wrong() -> Value {
    json!({"error": "wrong name or password"})
}

/// The account JSON without its version (which is a number).
fn without_version(mut account: Value) -> Value {
    let version = account.as_object_mut().and_then(|a| a.remove("version"));
    assert!(version.as_ref().is_some_and(Value::is_i64), "version is an integer: {version:?}");
    account
}

fn version(account: &Value) -> i64 {
    account["version"].as_i64().expect("the account has a version")
}

// Scenarios, each on its own names, so that PostgreSQL runs them all on one
// database.

async fn the_cli_adds_lists_changes_and_removes_accounts(s: &Setup) {
    let out = s.accounts_ok(&["add", "ms.frizzle", "--role", "teacher"], Some("magic-school-bus\n")).await;
    assert!(out.contains("added teacher account ms.frizzle"), "{out}");
    assert!(!out.contains("magic-school-bus"), "a given password is never printed: {out}");
    s.accounts_ok(&["add", "nick", "--role", "student", "--student", "1"], Some("nick-password")).await;

    s.accounts_fails(&["add", "nick", "--role", "teacher"], Some("another-password"), "already an account").await;
    s.accounts_fails(&["add", "bob", "--role", "student"], Some("bob-password"), "--student").await;
    s.accounts_fails(&["add", "bob", "--role", "teacher", "--student", "1"], Some("bob-password"), "--student").await;
    s.accounts_fails(
        &["add", "bob", "--role", "student", "--student", "999"],
        Some("bob-password"),
        "no student with ID 999",
    )
    .await;
    s.accounts_fails(&["add", "bob", "--role", "teacher"], Some("short\n"), "8 to 1024 characters").await;
    s.accounts_fails(&["add", "bob", "--role", "teacher"], None, "no password on standard input").await;
    s.accounts_fails(&["add", "Bob", "--role", "teacher"], Some("bob-password"), "lowercase").await;

    let listed = s.accounts_ok(&["list"], None).await;
    let rows: Vec<Vec<&str>> = listed.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    let frizzle = rows.iter().find(|r| r[0] == "ms.frizzle").expect("ms.frizzle is listed");
    assert_eq!(frizzle[1..4], ["teacher", "-", "no"], "{listed}");
    let nick = rows.iter().find(|r| r[0] == "nick").expect("nick is listed");
    assert_eq!(nick[1..4], ["student", "1", "no"], "{listed}");
    assert!(!rows.iter().any(|r| r[0] == "bob" || r[0] == "Bob"), "nothing refused was stored: {listed}");
    assert!(!listed.contains("$argon2"), "no hash is listed: {listed}");

    let out = s.accounts_ok(&["passwd", "nick"], Some("nick-password-2\n")).await;
    assert!(out.contains("changed the password of nick"), "{out}");
    s.accounts_fails(&["passwd", "nobody"], Some("any-password"), "no account named").await;
    assert_eq!(s.verify("nick", "nick-password-2").await.0, 200);

    s.accounts_ok(&["remove", "ms.frizzle"], None).await;
    s.accounts_fails(&["remove", "ms.frizzle"], None, "no account named").await;
    let listed = s.accounts_ok(&["list"], None).await;
    assert!(!listed.contains("ms.frizzle"), "{listed}");
    assert!(listed.contains("nick"), "{listed}");
}

async fn the_right_password_verifies_and_a_wrong_or_unknown_one_gets_the_same_401(s: &Setup) {
    s.accounts_ok(&["add", "emma", "--role", "student", "--student", "3"], Some("emma-password\n")).await;
    s.accounts_ok(&["add", "mr.keating", "--role", "teacher"], Some("carpe-diem-1989\n")).await;

    let (status, emma) = s.verify("emma", "emma-password").await;
    assert_eq!(status, 200, "{emma}");
    assert_eq!(without_version(emma), json!({"name": "emma", "role": "student", "student": 3}));
    let (status, keating) = s.verify("mr.keating", "carpe-diem-1989").await;
    assert_eq!(status, 200, "{keating}");
    assert_eq!(without_version(keating), json!({"name": "mr.keating", "role": "teacher", "student": null}));

    for (name, password) in [
        ("emma", "emma-password "),
        ("emma", "Emma-password"),
        ("emma", ""),
        ("emma", "carpe-diem-1989"),
        ("nobody", "emma-password"),
        ("Emma", "emma-password"),
        ("not a name", "emma-password"),
        ("", ""),
    ] {
        assert_eq!(s.verify(name, password).await, (401, wrong()), "{name:?} / {password:?}");
    }

    let (status, body) = s.post("/accounts/verify", json!({"name": "emma"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s.post("/accounts/verify", json!({"name": "emma", "password": 12345678})).await;
    assert_eq!(status, 400, "{body}");
    let r = s.client.post(format!("{}/accounts/verify", s.grading.url)).body("emma").send().await.unwrap();
    assert_eq!(r.status(), 415, "not JSON");
}

/// The time of the fastest of three answers of `verify(name, password)`.
async fn fastest(s: &Setup, name: &str, password: &str) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(s.verify(name, password).await.0, 401);
        best = best.min(started.elapsed());
    }
    best
}

async fn an_unknown_name_takes_as_long_as_a_wrong_password(s: &Setup) {
    s.accounts_ok(&["add", "timed", "--role", "teacher"], Some("timed-password\n")).await;

    let wrong_password = fastest(s, "timed", "not-the-password").await;
    let unknown_name = fastest(s, "untimed", "not-the-password").await;

    // Both run one Argon2 verification; without the dummy one, an unknown
    // name would be answered in a database lookup's time.
    assert!(
        unknown_name * 3 > wrong_password && wrong_password * 3 > unknown_name,
        "wrong password {wrong_password:?}, unknown name {unknown_name:?}"
    );
}

async fn a_password_change_moves_the_version_on_and_the_old_password_stops_working(s: &Setup) {
    s.accounts_ok(&["add", "roberto", "--role", "student", "--student", "2"], Some("old-password\n")).await;
    let (_, before) = s.account("roberto").await;
    let (_, verified) = s.verify("roberto", "old-password").await;
    assert_eq!(version(&verified), version(&before));

    s.accounts_ok(&["passwd", "roberto"], Some("new-password\n")).await;

    let (status, after) = s.account("roberto").await;
    assert_eq!(status, 200);
    assert!(version(&after) > version(&before), "{before} then {after}");
    assert_eq!(s.verify("roberto", "old-password").await, (401, wrong()));
    let (status, verified) = s.verify("roberto", "new-password").await;
    assert_eq!(status, 200);
    assert_eq!(version(&verified), version(&after));

    s.accounts_ok(&["passwd", "roberto"], Some("newer-password\n")).await;
    assert!(version(&s.account("roberto").await.1) > version(&after));
    assert_eq!(s.verify("roberto", "new-password").await, (401, wrong()));
}

async fn an_account_is_read_without_secrets_and_a_removed_one_is_404(s: &Setup) {
    s.accounts_ok(&["add", "xiaoqiao", "--role", "student", "--student", "5"], Some("qiao-password\n")).await;
    s.accounts_ok(&["token", "xiaoqiao"], None).await;

    let (status, account) = s.account("xiaoqiao").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(without_version(account), json!({"name": "xiaoqiao", "role": "student", "student": 5}));

    s.accounts_ok(&["remove", "xiaoqiao"], None).await;

    let (status, body) = s.account("xiaoqiao").await;
    assert_eq!((status, body), (404, json!({"error": "no account named \"xiaoqiao\""})));
    assert_eq!(s.verify("xiaoqiao", "qiao-password").await, (401, wrong()));
    assert_eq!(s.account("No%20Such").await.0, 404);
}

async fn a_re_created_account_never_has_a_version_of_the_removed_one(s: &Setup) {
    s.accounts_ok(&["add", "phoenix", "--role", "teacher"], Some("first-life\n")).await;
    s.accounts_ok(&["passwd", "phoenix"], Some("second-life\n")).await;
    let old = version(&s.account("phoenix").await.1);
    s.accounts_ok(&["remove", "phoenix"], None).await;
    s.accounts_ok(&["add", "phoenix", "--role", "teacher"], Some("third-life\n")).await;
    assert!(version(&s.account("phoenix").await.1) > old, "a session of the old account stays revoked");
}

async fn a_token_verifies_and_a_wrong_or_replaced_one_does_not(s: &Setup) {
    s.accounts_ok(&["add", "zhang_san", "--role", "student", "--student", "4"], Some("zhang-password\n")).await;
    s.accounts_ok(&["add", "tokenless", "--role", "teacher"], Some("tokenless-password\n")).await;

    let ran = s.accounts(&["token", "zhang_san"], None).await;
    assert!(ran.ok, "{}", ran.stderr);
    let token = ran.stdout.trim().to_owned();
    assert!(token.starts_with("gb_zhang_san_"), "{token}");
    assert_eq!(ran.stdout.lines().count(), 1, "only the token is on standard output: {}", ran.stdout);

    let (status, account) = s.verify_token(&token).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(without_version(account), json!({"name": "zhang_san", "role": "student", "student": 4}));

    let invalid = json!({"error": "invalid token"});
    let last = token.chars().last().unwrap();
    let altered = format!("{}{}", &token[..token.len() - 1], if last == 'a' { 'b' } else { 'a' });
    let secret = &token["gb_zhang_san_".len()..];
    for bad in [
        altered,
        format!("gb_tokenless_{secret}"),
        format!("gb_nobody_{secret}"),
        token[..token.len() - 1].to_owned(),
        "zhang-password".to_owned(),
        String::new(),
    ] {
        assert_eq!(s.verify_token(&bad).await, (401, invalid.clone()), "{bad:?}");
    }
    assert_eq!(s.verify("zhang_san", &token).await, (401, wrong()), "a token is not a password");

    let listed = s.accounts_ok(&["list"], None).await;
    assert!(listed.lines().any(|l| l.starts_with("zhang_san ") && l.contains(" yes ")), "{listed}");

    let replaced = s.accounts_ok(&["token", "zhang_san"], None).await.trim().to_owned();
    assert_ne!(replaced, token);
    assert_eq!(s.verify_token(&token).await, (401, invalid.clone()), "the previous token stops working");
    assert_eq!(s.verify_token(&replaced).await.0, 200);
    s.accounts_fails(&["token", "nobody"], None, "no account named").await;
}

async fn the_first_admin_is_created_once_with_a_password_that_verifies(s: &Setup) {
    let password = gradebook::accounts::ensure_admin(&s.database_url).await.unwrap().expect("an empty database");
    assert!(password.len() >= 16, "{password}");

    let (status, admin) = s.verify("admin", &password).await;
    assert_eq!(status, 200, "{admin}");
    assert_eq!(without_version(admin), json!({"name": "admin", "role": "teacher", "student": null}));
    assert_eq!(gradebook::accounts::ensure_admin(&s.database_url).await.unwrap(), None);
    assert_eq!(s.verify("admin", &password).await.0, 200, "the second call changed nothing");
}

#[tokio::test]
async fn the_cli_adds_lists_changes_and_removes_accounts_with_passwords_from_standard_input() {
    the_cli_adds_lists_changes_and_removes_accounts(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn the_right_password_verifies_and_a_wrong_password_or_unknown_name_gets_the_same_401() {
    the_right_password_verifies_and_a_wrong_or_unknown_one_gets_the_same_401(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn an_unknown_name_is_answered_as_slowly_as_a_wrong_password() {
    an_unknown_name_takes_as_long_as_a_wrong_password(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn a_password_change_moves_the_version_on_and_the_old_password_stops_working_on_sqlite() {
    a_password_change_moves_the_version_on_and_the_old_password_stops_working(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn an_account_is_read_without_secrets_and_a_removed_account_gets_404() {
    an_account_is_read_without_secrets_and_a_removed_one_is_404(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn a_re_created_account_starts_past_every_version_of_the_removed_one() {
    a_re_created_account_never_has_a_version_of_the_removed_one(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn a_personal_token_verifies_and_a_wrong_or_replaced_token_does_not() {
    a_token_verifies_and_a_wrong_or_replaced_one_does_not(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn a_new_database_gets_a_teacher_admin_once_whose_password_verifies() {
    the_first_admin_is_created_once_with_a_password_that_verifies(&Setup::sqlite().await).await;
}

#[tokio::test]
async fn accounts_work_the_same_on_postgresql() {
    let Some(s) = Setup::postgres().await else { return };
    // First, while the database holds no account.
    the_first_admin_is_created_once_with_a_password_that_verifies(&s).await;
    the_cli_adds_lists_changes_and_removes_accounts(&s).await;
    the_right_password_verifies_and_a_wrong_or_unknown_one_gets_the_same_401(&s).await;
    an_unknown_name_takes_as_long_as_a_wrong_password(&s).await;
    a_password_change_moves_the_version_on_and_the_old_password_stops_working(&s).await;
    an_account_is_read_without_secrets_and_a_removed_one_is_404(&s).await;
    a_re_created_account_never_has_a_version_of_the_removed_one(&s).await;
    a_token_verifies_and_a_wrong_or_replaced_one_does_not(&s).await;
}
