//! The grading service's wire types and the validation rules shared by the
//! service (which enforces them) and the portal (which checks early).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ErrorBody, printable};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GradeType {
    Quiz,
    Test,
    Exam,
    Homework,
}

impl GradeType {
    pub const ALL: [GradeType; 4] = [GradeType::Quiz, GradeType::Test, GradeType::Exam, GradeType::Homework];

    pub fn as_str(self) -> &'static str {
        match self {
            GradeType::Quiz => "Quiz",
            GradeType::Test => "Test",
            GradeType::Exam => "Exam",
            GradeType::Homework => "Homework",
        }
    }
}

impl fmt::Display for GradeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GradeType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        GradeType::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

/// A stored grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grade {
    /// Extension: identifies the grade so a mistaken one can be removed.
    #[serde(rename = "ID", default)]
    pub id: i64,
    #[serde(rename = "Title")]
    pub title: String,
    /// As stored. Ours stores only the [`GradeType`]s, but a grading service
    /// of the original design stores any text, and readers show it as it is.
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Score", serialize_with = "score")]
    pub score: f64,
}

/// Whole scores are written as integers (`85`, not `85.0`), as the
/// original's integer scores were.
fn score<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 { s.serialize_i64(*value as i64) } else { s.serialize_f64(*value) }
}

/// A grade as submitted, already validated (see [`NewGrade::validate`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewGrade {
    #[serde(rename = "Title")]
    pub title: String,
    #[serde(rename = "Type")]
    pub kind: GradeType,
    #[serde(rename = "Score", serialize_with = "score")]
    pub score: f64,
}

pub const TITLE_MAX_CHARS: usize = 200;
pub const NAME_MAX_CHARS: usize = 100;

/// A failed validation, naming the offending field.
pub fn field_error(field: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody { error: message.into(), field: Some(field.to_owned()) }
}

impl NewGrade {
    /// Checks a submitted grade given as JSON, so that every problem is
    /// reported with the field it concerns (serde's own messages do not).
    /// `Score` is a JSON number, as in the original design.
    pub fn validate(body: &serde_json::Value) -> Result<NewGrade, ErrorBody> {
        let obj =
            body.as_object().ok_or_else(|| ErrorBody::new("expected a JSON object with Title, Type and Score"))?;
        let text = |field: &str, hint: &str| match obj.get(field) {
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err(field_error(field, format!("{field} must be a string{hint}"))),
            None => Err(field_error(field, format!("{field} is required"))),
        };
        let title = text("Title", "")?;
        let kind = text("Type", ": Quiz, Test, Exam or Homework")?;
        let score = match obj.get("Score") {
            Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(serde_json::Value::String(s)) => {
                return Err(field_error("Score", format!("Score must be a JSON number, not a string (got {s:?})")));
            }
            Some(_) => return Err(field_error("Score", "Score must be a number")),
            None => return Err(field_error("Score", "Score is required")),
        };
        Self::check(title, kind, score)
    }

    /// Checks a grade typed into a form, where every field is text.
    pub fn from_form(title: &str, kind: &str, score: &str) -> Result<NewGrade, ErrorBody> {
        let score = score.trim();
        if score.is_empty() {
            return Err(field_error("Score", "Score is required"));
        }
        let score = score
            .parse::<f64>()
            .map_err(|_| field_error("Score", format!("Score must be a number (got {score:?})")))?;
        Self::check(title, kind, score)
    }

    /// The rules themselves, shared by both ways in.
    fn check(title: &str, kind: &str, score: f64) -> Result<NewGrade, ErrorBody> {
        let title = title.trim();
        let chars = title.chars().count();
        if chars == 0 {
            return Err(field_error("Title", "Title must not be empty"));
        }
        if chars > TITLE_MAX_CHARS {
            return Err(field_error("Title", format!("Title must be at most {TITLE_MAX_CHARS} characters")));
        }
        // A NUL hurt most: SQLite's `length()` stops at it (a title starting
        // with one broke the table's check and read as "database
        // unavailable"), PostgreSQL refuses it, and stored it reached the
        // portal's HTML raw.
        printable("Title", title)?;
        let kind = kind.parse::<GradeType>().map_err(|_| {
            field_error("Type", format!("Type must be one of Quiz, Test, Exam, Homework (got {kind:?})"))
        })?;
        if !score.is_finite() || !(0.0..=100.0).contains(&score) {
            return Err(field_error("Score", "Score must be a number from 0 to 100"));
        }
        Ok(NewGrade { title: title.to_owned(), kind, score })
    }
}

/// A student with their grades, in insertion order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Student {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "FirstName")]
    pub first_name: String,
    #[serde(rename = "LastName")]
    pub last_name: String,
    #[serde(rename = "Grades")]
    pub grades: Vec<Grade>,
    /// Mean score, `null` when there are no grades.
    #[serde(rename = "Average", default)]
    pub average: Option<f64>,
}

impl Student {
    /// The average as sent, or computed from the grades when the sender
    /// leaves it out (the original's grading service does).
    pub fn mean(&self) -> Option<f64> {
        self.average.or_else(|| Self::average_of(&self.grades))
    }

    pub fn average_of(grades: &[Grade]) -> Option<f64> {
        if grades.is_empty() { None } else { Some(grades.iter().map(|g| g.score).sum::<f64>() / grades.len() as f64) }
    }
}

/// `POST /students` body, already validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewStudent {
    #[serde(rename = "FirstName")]
    pub first_name: String,
    #[serde(rename = "LastName")]
    pub last_name: String,
}

impl NewStudent {
    pub fn validate(body: &serde_json::Value) -> Result<NewStudent, ErrorBody> {
        let obj =
            body.as_object().ok_or_else(|| ErrorBody::new("expected a JSON object with FirstName and LastName"))?;
        let name = |field: &str| -> Result<String, ErrorBody> {
            let s = match obj.get(field) {
                Some(serde_json::Value::String(s)) => s.trim(),
                Some(_) => return Err(field_error(field, format!("{field} must be a string"))),
                None => return Err(field_error(field, format!("{field} is required"))),
            };
            match s.chars().count() {
                0 => Err(field_error(field, format!("{field} must not be empty"))),
                n if n > NAME_MAX_CHARS => {
                    Err(field_error(field, format!("{field} must be at most {NAME_MAX_CHARS} characters")))
                }
                _ => printable(field, s).map(|()| s.to_owned()),
            }
        };
        Ok(NewStudent { first_name: name("FirstName")?, last_name: name("LastName")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_valid_grade_is_trimmed_and_accepted() {
        let g = NewGrade::validate(&json!({"Title": "  Quiz 3 ", "Type": "Quiz", "Score": 90})).unwrap();
        assert_eq!(g, NewGrade { title: "Quiz 3".into(), kind: GradeType::Quiz, score: 90.0 });
    }

    #[test]
    fn every_invalid_grade_names_its_field() {
        let cases = [
            (json!({"Type": "Quiz", "Score": 1}), "Title"),
            (json!({"Title": "   ", "Type": "Quiz", "Score": 1}), "Title"),
            (json!({"Title": "x".repeat(201), "Type": "Quiz", "Score": 1}), "Title"),
            (json!({"Title": 5, "Type": "Quiz", "Score": 1}), "Title"),
            (json!({"Title": "a", "Type": "Essay", "Score": 1}), "Type"),
            (json!({"Title": "a", "Score": 1}), "Type"),
            (json!({"Title": "a", "Type": "Quiz", "Score": 100.5}), "Score"),
            (json!({"Title": "a", "Type": "Quiz", "Score": -1}), "Score"),
            (json!({"Title": "a", "Type": "Quiz", "Score": "NaN"}), "Score"),
            (json!({"Title": "a", "Type": "Quiz", "Score": "lots"}), "Score"),
            (json!({"Title": "a", "Type": "Quiz", "Score": "50"}), "Score"),
            (json!({"Title": "a", "Type": "Quiz"}), "Score"),
        ];
        for (body, field) in cases {
            let err = NewGrade::validate(&body).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{body}");
        }
    }

    #[test]
    fn control_characters_in_a_title_or_a_name_are_refused_naming_the_field() {
        // Leading NUL, inner NUL, only NUL, escape sequences, inner line
        // breaks and a right-to-left override; surrounding whitespace is
        // trimmed first, so a form's trailing newline is not refused.
        for bad in
            ["\0Quiz", "Qu\0iz", "\0", "\u{1b}[31mQuiz", "Quiz\n3", "Quiz\t3", "\u{7f}", "\u{202E}ziuQ", "a\u{2066}b"]
        {
            let err = NewGrade::validate(&json!({"Title": bad, "Type": "Quiz", "Score": 1})).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("Title"), "{bad:?}");
            assert!(err.error.contains("control characters"), "{bad:?}: {}", err.error);
            let err = NewGrade::from_form(bad, "Quiz", "1").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("Title"), "form {bad:?}");
            let err = NewStudent::validate(&json!({"FirstName": bad, "LastName": "Lovelace"})).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("FirstName"), "{bad:?}");
            let err = NewStudent::validate(&json!({"FirstName": "Ada", "LastName": bad})).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("LastName"), "{bad:?}");
        }
        let err = NewGrade::validate(&json!({"Title": "Qu\0iz", "Type": "Quiz", "Score": 1})).unwrap_err();
        assert_eq!(err.error, "Title must not contain control characters (U+0000 at character 3)");
        // What stays allowed: trimmed whitespace, accents, other scripts.
        assert_eq!(NewGrade::from_form(" Quiz 3\r\n", "Quiz", "1").unwrap().title, "Quiz 3");
        let s = NewStudent::validate(&json!({"FirstName": "Zoë", "LastName": "\u{5D0}\u{5D1}"})).unwrap();
        assert_eq!(s.last_name, "\u{5D0}\u{5D1}");
    }

    #[test]
    fn a_form_grade_is_checked_by_the_same_rules_with_its_score_parsed() {
        let g = NewGrade::from_form(" Quiz 3 ", "Quiz", " 90.5 ").unwrap();
        assert_eq!(g, NewGrade { title: "Quiz 3".into(), kind: GradeType::Quiz, score: 90.5 });
        for (title, kind, score, field) in [
            ("", "Quiz", "1", "Title"),
            ("a", "Essay", "1", "Type"),
            ("a", "Quiz", "", "Score"),
            ("a", "Quiz", "x", "Score"),
            ("a", "Quiz", "101", "Score"),
        ] {
            let err = NewGrade::from_form(title, kind, score).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{title:?} {kind:?} {score:?}");
        }
    }

    #[test]
    fn a_new_grade_is_sent_with_a_numeric_score() {
        let g = NewGrade { title: "Quiz".into(), kind: GradeType::Quiz, score: 90.0 };
        assert_eq!(serde_json::to_value(&g).unwrap(), json!({"Title": "Quiz", "Type": "Quiz", "Score": 90}));
    }

    #[test]
    fn a_student_of_the_original_gets_a_computed_average_and_keeps_unknown_types() {
        let body = json!({"ID": 1, "FirstName": "Nick", "LastName": "Carter",
            "Grades": [{"Title": "Essay", "Type": "Essay", "Score": 80}, {"Title": "Quiz 1", "Type": "Quiz", "Score": 90.5}]});
        let s: Student = serde_json::from_value(body).unwrap();
        assert_eq!(s.mean(), Some(85.25));
        assert_eq!(s.grades[0].kind, "Essay");
    }

    #[test]
    fn average_is_none_without_grades() {
        assert_eq!(Student::average_of(&[]), None);
    }
}

/// Grading's change feed, an extension of ours (`GET /changes`, for the
/// cluster's members): asked for with `Upgrade: gradebook-changes`, then held
/// off HTTP. Each side writes lines ending in `\n`, at most [`MAX_LINE`]
/// bytes:
/// - grading writes `changed N` whenever what it serves may have changed
///   (once right after the 101; `N` only grows), and `pong K` for each
///   `ping K` it read;
/// - the subscriber writes `ack N` once it dropped what it kept from before
///   `changed N`, and `ping K` to learn that the feed still flows.
///
/// Grading answers a write only once every subscriber has acknowledged it,
/// or was cut off for not doing so within [`ACK_LIMIT`], so a subscriber may
/// trust what it kept as long as it hears a `pong` to a `ping` sent less than
/// [`LEASE`] ago (less than the limit: a subscriber cut off has stopped
/// trusting by then, whether or not it noticed the cut).
pub mod changes {
    use std::time::Duration;

    pub const PROTOCOL: &str = "gradebook-changes";
    pub const PATH: &str = "/changes";
    /// Longest line either side writes.
    pub const MAX_LINE: usize = 64;
    /// How long grading waits for a subscriber's acknowledgement.
    pub const ACK_LIMIT: Duration = Duration::from_millis(500);
    /// How long after sending a `ping` its `pong` lets a subscriber trust.
    pub const LEASE: Duration = Duration::from_millis(250);

    /// A line of the feed, either way.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Line {
        Changed(u64),
        Ack(u64),
        Ping(u64),
        Pong(u64),
    }

    impl Line {
        /// A line as read, its `\n` included or not; `None` for anything else.
        pub fn parse(line: &[u8]) -> Option<Line> {
            let line = std::str::from_utf8(line).ok()?;
            let (word, n) = line.strip_suffix('\n').unwrap_or(line).split_once(' ')?;
            let n = n.parse().ok()?;
            Some(match word {
                "changed" => Line::Changed(n),
                "ack" => Line::Ack(n),
                "ping" => Line::Ping(n),
                "pong" => Line::Pong(n),
                _ => return None,
            })
        }

        /// The line as written, `\n` included.
        pub fn to_bytes(self) -> Vec<u8> {
            let (word, n) = match self {
                Line::Changed(n) => ("changed", n),
                Line::Ack(n) => ("ack", n),
                Line::Ping(n) => ("ping", n),
                Line::Pong(n) => ("pong", n),
            };
            format!("{word} {n}\n").into_bytes()
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lines_read_back_as_written_and_nothing_else_reads() {
            for line in [Line::Changed(0), Line::Ack(7), Line::Ping(u64::MAX), Line::Pong(12)] {
                assert_eq!(Line::parse(&line.to_bytes()), Some(line));
            }
            for other in ["", "\n", "changed", "changed x\n", "ack -1\n", "pong 1 2\n", "hello 1\n", "changed  1\n"] {
                assert_eq!(Line::parse(other.as_bytes()), None, "{other:?}");
            }
        }
    }
}
