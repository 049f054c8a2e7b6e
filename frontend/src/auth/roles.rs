//! What each role may ask for, and where each starts.

use axum::http::Method;

use crate::ids::student_id;
use crate::people::{Account, Role, Viewer};

/// A teacher may ask for anything; a student only for their own student
/// page and record (reading), the way home and signing out.
pub fn allowed(viewer: &Viewer, method: &Method, path: &str) -> bool {
    let Some(account) = viewer.account() else { return true };
    if account.role == Role::Teacher {
        return true;
    }
    if path == "/signout" {
        return *method == Method::POST;
    }
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let asked = path.strip_prefix("/api/students/").or_else(|| path.strip_prefix("/students/")).and_then(student_id);
    reading && (path == "/" || (asked.is_some() && asked == account.student))
}

/// The page a signed-in account is shown first.
pub fn first_page(account: &Account) -> String {
    match (account.role, account.student) {
        (Role::Student, Some(id)) => format!("/students/{id}"),
        _ => "/students".to_owned(),
    }
}
