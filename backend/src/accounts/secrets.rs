//! The accounts' secrets: generated passwords, personal API tokens (which
//! read `gb_<name>_<random>`, so the server finds the account by name and
//! verifies one hash, never scanning), and their Argon2id hashes, made and
//! checked by `password-auth` off the async threads.

use rand::Rng;
use rand::distr::Alphanumeric;

use super::validate::validate_name;

/// Length of generated passwords: 20 alphanumerics, about 119 bits.
const PASSWORD_LEN: usize = 20;
/// Length of a token's random part: 40 alphanumerics, about 238 bits.
const TOKEN_SECRET_LEN: usize = 40;
/// What every personal API token starts with.
pub const TOKEN_PREFIX: &str = "gb_";

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::validate::validate_password;

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
