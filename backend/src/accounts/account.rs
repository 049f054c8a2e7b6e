//! An account as the endpoints answer it, and its role.

use std::fmt;

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
