//! What account names and passwords may be.

use gradebook_shared::ErrorBody;

/// Longest account name.
pub const MAX_NAME: usize = 64;
/// Shortest password taken from standard input.
pub const MIN_PASSWORD: usize = 8;
/// Longest password taken (longer ones are refused, never truncated).
pub const MAX_PASSWORD: usize = 1024;

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
}
