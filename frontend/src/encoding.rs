//! Percent-encoding of query values and path segments the portal writes:
//! everything but RFC 3986's unreserved characters is escaped.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What stays as it is: letters, digits and `-`, `_`, `.`, `~`.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a query value (or a path segment).
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn only_unreserved_characters_stay_as_they_are() {
        assert_eq!(encode("Az09-_.~"), "Az09-_.~");
        assert_eq!(encode("/students/1?page=2"), "%2Fstudents%2F1%3Fpage%3D2");
        assert_eq!(encode("a b+é"), "a%20b%2B%C3%A9");
    }
}
