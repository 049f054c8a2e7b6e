//! Accounts of the people who sign in to the portal: teachers, and students
//! linked to one student record. They live in grading's database (see
//! [`store`]), so every portal instance shares them, on SQLite as on
//! PostgreSQL.
//!
//! Passwords and personal API tokens are kept only as Argon2id hashes,
//! made and checked by `password-auth` off the async threads ([`hash`],
//! [`verify`]). A personal token reads `gb_<name>_<random>`: the server finds
//! its account by name and verifies one hash, never scanning.
//!
//! Each account has a `version` that moves on with every password change;
//! the portal keeps it in a session and drops the session once
//! `GET /accounts/{name}` answers another version, or 404 ([`http`]).

pub mod cli;
pub mod http;
pub mod store;

use std::fmt;

use gradebook_shared::ErrorBody;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};

pub use cli::AccountsArgs;
pub use http::{AccountsError, router};
pub use store::Store;

/// Longest account name.
pub const MAX_NAME: usize = 64;
/// Shortest password taken from standard input.
pub const MIN_PASSWORD: usize = 8;
/// Longest password taken (longer ones are refused, never truncated).
pub const MAX_PASSWORD: usize = 1024;
/// Length of generated passwords: 20 alphanumerics, about 119 bits.
const PASSWORD_LEN: usize = 20;
/// Length of a token's random part: 40 alphanumerics, about 238 bits.
const TOKEN_SECRET_LEN: usize = 40;
/// What every personal API token starts with.
pub const TOKEN_PREFIX: &str = "gb_";

/// What an account may do in the portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every student, adds and removes grades, adds students.
    Teacher,
    /// Sees only their own student record.
    Student,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Student => "student",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "teacher" => Some(Role::Teacher),
            "student" => Some(Role::Student),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An account as the endpoints answer it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// The student record of a student account; `null` for a teacher.
    pub student: Option<i64>,
    /// Moves on with every password change (and never repeats for a
    /// re-created account of the same name).
    pub version: i64,
}

/// Refuses a name that is not 1–64 characters of lowercase ASCII letters,
/// digits, `.`, `-` and `_`, starting with a letter or digit. Names end up
/// in tokens, URLs and command lines; this keeps them plain and keeps
/// `Admin` from impersonating `admin`.
pub fn validate_name(name: &str) -> Result<(), ErrorBody> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_');
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(plain)
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ErrorBody {
            error: format!(
                "a name is 1-{MAX_NAME} lowercase letters, digits, '.', '-' or '_', starting with a letter or digit"
            ),
            field: Some("name".to_owned()),
        })
    }
}

/// Refuses a password shorter than [`MIN_PASSWORD`] or longer than
/// [`MAX_PASSWORD`] characters.
pub fn validate_password(password: &str) -> Result<(), ErrorBody> {
    let n = password.chars().count();
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        Ok(())
    } else {
        Err(ErrorBody {
            error: format!("a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
            field: Some("password".to_owned()),
        })
    }
}

/// `len` random alphanumerics from the thread's CSPRNG (seeded by the OS).
fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

/// A strong random password (20 alphanumerics).
pub fn random_password() -> String {
    random_alphanumeric(PASSWORD_LEN)
}

/// A new personal API token for `name`: `gb_<name>_<40 alphanumerics>`.
pub fn new_token(name: &str) -> String {
    format!("{TOKEN_PREFIX}{name}_{}", random_alphanumeric(TOKEN_SECRET_LEN))
}

/// The account name a token names, when it has the shape of one of ours.
/// The random part holds no `_`, so the name is everything up to the last.
pub fn token_name(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (name, secret) = rest.rsplit_once('_')?;
    let shaped = secret.len() == TOKEN_SECRET_LEN && secret.chars().all(|c| c.is_ascii_alphanumeric());
    (shaped && validate_name(name).is_ok()).then_some(name)
}

/// An Argon2id hash made with the same parameters as [`hash`] makes (checked
/// by a test), of a throwaway password: verifying against it when a name is
/// unknown makes that answer take as long as a wrong password. It never
/// signs anyone in, even with that password ([`verify`] answers false for it).
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$8sB6m8ZkP99A+BPMEXhK/g$Oz88+nzSC3jn8wJMqDOrY+zWd6nWo86vWGcr18+e1/E";

/// Hashes `secret` (Argon2id, a random salt, the library's parameters) on a
/// blocking thread.
pub async fn hash(secret: String) -> anyhow::Result<String> {
    Ok(tokio::task::spawn_blocking(move || password_auth::generate_hash(secret)).await?)
}

/// Whether `secret` matches `stored` (`None`: verify against the dummy hash
/// and answer false, taking the same time), on a blocking thread. A stored
/// hash that does not parse never matches, and is logged.
pub async fn verify(secret: String, stored: Option<String>) -> anyhow::Result<bool> {
    Ok(tokio::task::spawn_blocking(move || verify_now(&secret, stored.as_deref())).await?)
}

fn verify_now(secret: &str, stored: Option<&str>) -> bool {
    match password_auth::verify_password(secret, stored.unwrap_or(DUMMY_HASH)) {
        Ok(()) => stored.is_some(),
        Err(password_auth::VerifyError::PasswordInvalid) => false,
        Err(e) => {
            tracing::error!(error = %e, "a stored password or token hash does not parse");
            false
        }
    }
}

/// When the database at `database_url` holds no account at all, creates the
/// teacher `admin` with a random password and returns that password (for
/// `gradebook up` to print once); otherwise `None`. Safe to race: of
/// several callers at most one creates it.
pub async fn ensure_admin(database_url: &str) -> anyhow::Result<Option<String>> {
    let db = crate::db::Db::connect(database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database {database_url}: {e}"))?;
    let created = ensure_admin_in(&Store::new(&db)).await;
    db.close().await;
    created
}

/// [`ensure_admin`] on an open store.
pub async fn ensure_admin_in(store: &Store) -> anyhow::Result<Option<String>> {
    if store.count().await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let created = store.add_first("admin", &hash(password.clone()).await?).await?;
    Ok(created.then_some(password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_lowercase_and_bounded() {
        for good in ["admin", "a", "ada.lovelace", "nick-carter_2", "9lives", &"x".repeat(MAX_NAME)] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "Admin", "_admin", ".x", "-x", "a b", "é", "a/b", "a\nb", &"x".repeat(MAX_NAME + 1)] {
            let error = validate_name(bad).expect_err(bad);
            assert_eq!(error.field.as_deref(), Some("name"));
        }
    }

    #[test]
    fn passwords_are_between_eight_and_1024_characters() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password("ééééééé").is_err(), "counted in characters, not bytes");
        assert!(validate_password(&"p".repeat(MAX_PASSWORD)).is_ok());
        assert_eq!(validate_password(&"p".repeat(MAX_PASSWORD + 1)).unwrap_err().field.as_deref(), Some("password"));
    }

    #[test]
    fn generated_passwords_are_long_random_and_valid() {
        let a = random_password();
        let b = random_password();
        assert_eq!(a.len(), 20);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(validate_password(&a).is_ok());
    }

    #[test]
    fn a_token_names_its_account_even_when_the_name_holds_underscores() {
        for name in ["admin", "nick_carter", "a_b_c", "x.y-z"] {
            let token = new_token(name);
            assert!(token.starts_with(&format!("gb_{name}_")), "{token}");
            assert_eq!(token_name(&token), Some(name));
        }
        assert_ne!(new_token("admin"), new_token("admin"));
    }

    #[test]
    fn strings_not_shaped_like_our_tokens_name_no_account() {
        let secret = "A".repeat(TOKEN_SECRET_LEN);
        for bad in [
            String::new(),
            "gb_".to_owned(),
            format!("gb_{secret}"),
            format!("gb__{secret}"),
            format!("xx_admin_{secret}"),
            format!("gb_Admin_{secret}"),
            format!("gb_admin_{}", &secret[1..]),
            format!("gb_admin_{secret}A"),
            format!("gb_admin_{}-", &secret[1..]),
        ] {
            assert_eq!(token_name(&bad), None, "{bad:?}");
        }
        assert_eq!(token_name(&format!("gb_admin_{secret}")), Some("admin"));
    }

    #[test]
    fn roles_read_back_what_they_write() {
        for role in [Role::Teacher, Role::Student] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            assert_eq!(serde_json::to_value(role).unwrap(), serde_json::json!(role.as_str()));
        }
        assert_eq!(Role::parse("Teacher"), None);
    }

    #[test]
    fn the_account_json_has_exactly_name_role_student_and_version() {
        let a = Account { name: "ada".into(), role: Role::Student, student: Some(3), version: 7 };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"name": "ada", "role": "student", "student": 3, "version": 7})
        );
        let t = Account { name: "t".into(), role: Role::Teacher, student: None, version: 1 };
        assert_eq!(serde_json::to_value(&t).unwrap()["student"], serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse".into(), Some(stored.clone())).await.unwrap());
        assert!(!verify("correct hors".into(), Some(stored)).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_parameters_of_a_real_one_and_never_matches() {
        let real = hash("whatever".into()).await.unwrap();
        let params = |h: &str| h.rsplitn(3, '$').nth(2).map(str::to_owned);
        assert_eq!(params(DUMMY_HASH), params(&real), "same algorithm, version and cost");
        assert!(!verify(String::new(), None).await.unwrap());
        assert!(!verify("password".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_stored_hash_that_does_not_parse_matches_nothing() {
        assert!(!verify("x".into(), Some("not a hash".into())).await.unwrap());
        assert!(!verify("".into(), Some(String::new())).await.unwrap());
    }
}
