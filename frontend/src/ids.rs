//! Student IDs as the portal's addresses spell them: decimal digits with no
//! sign and no leading zero. Anything else (`01`, `+1`, `-1`, too large) is
//! no student: one student has one address, so pages, the page cache and
//! the API never hold the same student under several names.

use crate::error::ApiError;

/// The student an address segment names, if it names one canonically.
pub fn student_id(s: &str) -> Option<i64> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

/// The student an API path names; a 404 for anything that names none.
pub fn parse_id(id: &str) -> Result<i64, ApiError> {
    student_id(id).ok_or_else(|| ApiError::new(404, format!("There is no student with ID {id:?}.")))
}
