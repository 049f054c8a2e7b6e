//! What a test may count on from where it runs: CI or not, a throwaway
//! PostgreSQL, temporary folders.

/// True under `CI=true`, where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Says that a test is skipped because `why`, and returns so the caller can
/// return; under `CI=true` fails instead: there a skipped test would pass
/// while proving nothing.
pub fn skip(why: &str) {
    assert!(!in_ci(), "cannot run under CI=true: {why}");
    eprintln!("skipped: {why}");
}

/// A new, empty PostgreSQL database on the throwaway server that
/// `scripts/with-postgres.sh` (run by `make test`) provides, or `None` (the
/// caller then skips, saying so) when there is none. Under `CI=true` a
/// missing server fails the test instead.
pub async fn postgres_database(label: &str) -> Option<String> {
    let Ok(admin) = std::env::var("GRADEBOOK_TEST_POSTGRES_URL") else {
        skip("GRADEBOOK_TEST_POSTGRES_URL is not set (make test starts a throwaway PostgreSQL)");
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("the throwaway PostgreSQL answers");
    let name = format!(
        "{label}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{name}"))
}

/// A fresh, empty temporary folder, removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty folder under the system's temporary folder, removed on
    /// drop (a failing test's too), named after `label` to tell whose it is.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("gradebook-{label}-")).tempdir();
        Self(dir.expect("a temporary folder can be made"))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}
