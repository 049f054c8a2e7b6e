//! Who is looking: the accounts people sign in with (as grading answers
//! them) and the viewer a page is rendered for. Shared by every build so
//! that pages can ask the same questions ("may this viewer add grades?");
//! only the server knows the answer (see `crate::auth`), the browser builds
//! render as before.

use serde::{Deserialize, Serialize};

/// What every page of an open portal says, first thing.
pub const OPEN_BANNER: &str =
    "This portal is open: there is no sign-in, and anyone who can reach it can see and change grades.";

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every student, adds grades.
    Teacher,
    /// Sees only the student record it is linked to.
    Student,
}

/// An account as grading's `/accounts` endpoints answer it: no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    /// The student record of a student account; `None` for a teacher.
    #[serde(default)]
    pub student: Option<i64>,
    /// Moves on with every password change, so a session signed in under
    /// an older one is no longer honoured.
    pub version: i64,
}

/// Who a request (and the page rendered for it) is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// The cluster runs without a token: no sign-in, anyone may do anything.
    Open,
    /// A signed-in person (session cookie) or a script (personal API token).
    Person {
        account: Account,
        /// The session's CSRF token, put in every form; empty for a script.
        csrf: String,
        /// Authenticated by `Authorization: Bearer`, not by a cookie.
        bearer: bool,
    },
}

impl Viewer {
    /// The viewer of the page being rendered on the server (set by the
    /// server's `auth` middleware); `None` in the browser builds.
    pub fn current() -> Option<Viewer> {
        #[cfg(feature = "ssr")]
        return leptos::prelude::use_context::<axum::http::request::Parts>()
            .and_then(|request| request.extensions.get::<Viewer>().cloned());
        #[cfg(not(feature = "ssr"))]
        None
    }

    pub fn account(&self) -> Option<&Account> {
        match self {
            Viewer::Open => None,
            Viewer::Person { account, .. } => Some(account),
        }
    }

    /// Everyone in open mode, and teachers.
    pub fn sees_everything(&self) -> bool {
        self.account().is_none_or(|a| a.role == Role::Teacher)
    }

    pub fn may_see_student(&self, id: i64) -> bool {
        self.sees_everything() || self.account().is_some_and(|a| a.student == Some(id))
    }

    pub fn may_add_grades(&self) -> bool {
        self.sees_everything()
    }

    /// The student page a student account is shown first.
    pub fn own_student(&self) -> Option<i64> {
        self.account().filter(|a| a.role == Role::Student).and_then(|a| a.student)
    }

    /// What the portal's pages show differently from one viewer to another
    /// (role, name, the forms' CSRF token): the page cache keeps a rendered
    /// page under this, so one viewer's page is never served to another.
    pub fn page_variant(&self) -> String {
        match self {
            Viewer::Open => "open".to_owned(),
            Viewer::Person { account, csrf, .. } => {
                let role = match account.role {
                    Role::Teacher => "teacher",
                    Role::Student => "student",
                };
                format!("{role}\n{}\n{}\n{csrf}", account.name, account.version)
            }
        }
    }
}
