//! Every route of the registry, the log service and the grading service,
//! tried the way a hostile or careless client would: wrong methods, wrong and
//! missing content types, truncated, invalid and deeply nested JSON, numbers
//! out of range or given as strings, NUL, right-to-left overrides and piles
//! of combining marks, path IDs that are no IDs, bad query parameters, and
//! bodies over the limit.
//!
//! One table, one test. Every case must be refused with its 4xx and a JSON
//! error (or, for an odd but harmless read, answered), the service must still
//! be alive afterwards, and nothing any service stores may have changed. The
//! test runs every case before it judges, so one run lists every failure.

use std::time::Duration;

use gradebook::log::StoreConfig;
use gradebook::registry::Config;
use gradebook_tests::{TempDir, TestGrading, TestLog, TestRegistry, eventually_async};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Registry,
    Log,
    Grading,
}

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused with this status and a JSON error, naming this field when one
    /// is given.
    Refused(u16, Option<&'static str>),
    /// An odd but harmless read, answered with this status.
    Answered(u16),
}

enum Body {
    Empty,
    /// Sent with its length.
    Sized(Vec<u8>),
    /// Sent in chunks without a length, so the limit cannot be checked up
    /// front. Kept just over the limit: a client still writing when the
    /// service stops reading sees its connection reset, not the answer.
    Chunked(Vec<u8>),
}

struct Case {
    service: Service,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Body,
    expect: Option<Expect>,
}

fn to(service: Service, method: &'static str, path: impl Into<String>) -> Case {
    Case { service, method, path: path.into(), content_type: None, body: Body::Empty, expect: None }
}

impl Case {
    fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.typed("application/json", body)
    }

    fn typed(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Body::Sized(body.into());
        self
    }

    /// A body sent without a content type.
    fn untyped(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Body::Sized(body.into());
        self
    }

    fn chunked(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Body::Chunked(body.into());
        self
    }

    fn is(mut self, status: u16) -> Self {
        self.expect = Some(Expect::Refused(status, None));
        self
    }

    /// A 400 whose error names `field`.
    fn naming(mut self, field: &'static str) -> Self {
        self.expect = Some(Expect::Refused(400, Some(field)));
        self
    }

    fn answered(mut self, status: u16) -> Self {
        self.expect = Some(Expect::Answered(status));
        self
    }

    fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Empty => &[],
            Body::Sized(b) | Body::Chunked(b) => b,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{:?} {} {}", self.service, self.method, self.path);
        if let Some(ct) = self.content_type {
            s += &format!(" [{ct}]");
        }
        if let Body::Chunked(_) = self.body {
            s += " (chunked)";
        }
        if !self.body_bytes().is_empty() {
            s += &format!(" {}", preview(self.body_bytes()));
        }
        s
    }
}

/// Text short enough for a failure list, with NULs and overrides escaped.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.chars().take(120).collect();
    if shown.len() < text.len() { format!("{shown:?}… ({} bytes)", bytes.len()) } else { format!("{shown:?}") }
}

fn body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("a json! value serializes")
}

/// `a` followed by `n` combining acute accents: one letter on screen.
fn zalgo(n: usize) -> String {
    format!("a{}", "\u{301}".repeat(n))
}

/// The same in a URL.
fn zalgo_query(n: usize) -> String {
    format!("a{}", "%CC%81".repeat(n))
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn grade(title: Value, kind: Value, score: Value) -> Vec<u8> {
    body(json!({"Title": title, "Type": kind, "Score": score}))
}

fn good_grade() -> Vec<u8> {
    grade(json!("Quiz 9"), json!("Quiz"), json!(90))
}

fn score(score: Value) -> Vec<u8> {
    grade(json!("Quiz 9"), json!("Quiz"), score)
}

fn title(title: Value) -> Vec<u8> {
    grade(title, json!("Quiz"), json!(90))
}

fn student(first: Value, last: Value) -> Vec<u8> {
    body(json!({"FirstName": first, "LastName": last}))
}

fn grading_cases() -> Vec<Case> {
    use Service::Grading as G;
    let grades = "/students/1/grades";
    let mut cases = vec![
        // Methods and routes that do not exist.
        to(G, "PUT", "/students").json(student(json!("Ada"), json!("Lovelace"))).is(405),
        to(G, "DELETE", "/students").is(405),
        to(G, "PATCH", "/students/1").json(student(json!("Ada"), json!("Lovelace"))).is(405),
        to(G, "POST", "/students/1").json(student(json!("Ada"), json!("Lovelace"))).is(405),
        to(G, "DELETE", "/students/1").is(405),
        to(G, "GET", grades).is(405),
        to(G, "PUT", grades).json(good_grade()).is(405),
        to(G, "GET", "/students/1/grades/1").is(405),
        to(G, "POST", "/students/1/grades/1").json(good_grade()).is(405),
        to(G, "POST", "/healthz").is(405),
        to(G, "OPTIONS", "/students").is(405),
        to(G, "BREW", "/students").is(405),
        to(G, "GET", "/students/1/grades/1/extra").is(404),
        to(G, "GET", "/nope").is(404),
        // Wrong and missing content types.
        to(G, "POST", grades).untyped(good_grade()).is(415),
        to(G, "POST", grades).typed("text/plain", good_grade()).is(415),
        to(G, "POST", grades).typed("application/x-www-form-urlencoded", "Title=Quiz&Type=Quiz&Score=90").is(415),
        to(G, "POST", grades).typed("application/xml", "<grade><Title>Quiz</Title></grade>").is(415),
        to(G, "POST", grades).typed("multipart/form-data; boundary=x", "--x--").is(415),
        to(G, "POST", "/students").untyped(student(json!("Ada"), json!("Lovelace"))).is(415),
        to(G, "POST", "/students").typed("text/plain", student(json!("Ada"), json!("Lovelace"))).is(415),
        // Truncated, invalid and deeply nested JSON.
        to(G, "POST", grades).json("").is(400),
        to(G, "POST", grades).json("{").is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz","Type":"Quiz","Score":"#).is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz","Type":"Quiz","Score":90} and more"#).is(400),
        to(G, "POST", grades).json("{'Title':'Quiz','Type':'Quiz','Score':90}").is(400),
        to(G, "POST", grades).json([b"\xEF\xBB\xBF".as_slice(), &good_grade()].concat()).is(400),
        to(G, "POST", grades).json(b"{\"Title\":\"Q\xFF\xFEz\",\"Type\":\"Quiz\",\"Score\":90}".to_vec()).is(400),
        to(G, "POST", grades).json(r#"{"Title":"\ud800","Type":"Quiz","Score":90}"#).is(400),
        to(G, "POST", grades).json("null").is(400),
        to(G, "POST", grades).json("[]").is(400),
        to(G, "POST", grades).json(r#""Quiz""#).is(400),
        to(G, "POST", grades).json("42").is(400),
        to(G, "POST", grades).json(nested_arrays(7_000)).is(400),
        to(G, "POST", grades)
            .json(format!(r#"{{"Title":{},"Type":"Quiz","Score":90}}"#, nested_objects(2_000)))
            .is(400),
        to(G, "POST", "/students").json(r#"{"FirstName":"Ada","LastName":"#).is(400),
        to(G, "POST", "/students").json(nested_arrays(7_000)).is(400),
        to(G, "POST", "/students").json("[]").is(400),
        // Numbers: given as strings, not numbers at all, out of range.
        to(G, "POST", grades).json(score(json!("50"))).naming("Score"),
        to(G, "POST", grades).json(score(json!("NaN"))).naming("Score"),
        to(G, "POST", grades).json(score(json!("Infinity"))).naming("Score"),
        to(G, "POST", grades).json(score(json!(""))).naming("Score"),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":NaN}"#).is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":Infinity}"#).is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":-Infinity}"#).is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":1e400}"#).is(400),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":0x32}"#).is(400),
        to(G, "POST", grades).json(score(json!(1e308))).naming("Score"),
        to(G, "POST", grades).json(score(json!(-1))).naming("Score"),
        to(G, "POST", grades).json(score(json!(-0.0001))).naming("Score"),
        to(G, "POST", grades).json(score(json!(100.0001))).naming("Score"),
        to(G, "POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":18446744073709551616}"#).naming("Score"),
        to(G, "POST", grades).json(score(json!(i64::MIN))).naming("Score"),
        to(G, "POST", grades).json(score(json!(true))).naming("Score"),
        to(G, "POST", grades).json(score(json!(null))).naming("Score"),
        to(G, "POST", grades).json(score(json!([50]))).naming("Score"),
        to(G, "POST", grades).json(score(json!({"value": 50}))).naming("Score"),
        to(G, "POST", grades).json(body(json!({"Title": "Quiz 9", "Type": "Quiz"}))).naming("Score"),
        // Titles and types: missing, wrong type, empty, too long, and text
        // that is no text (NUL anywhere, escapes, overrides, line breaks).
        to(G, "POST", grades).json(body(json!({"Type": "Quiz", "Score": 90}))).naming("Title"),
        to(G, "POST", grades).json(title(json!(null))).naming("Title"),
        to(G, "POST", grades).json(title(json!(42))).naming("Title"),
        to(G, "POST", grades).json(title(json!(["Quiz"]))).naming("Title"),
        to(G, "POST", grades).json(title(json!(""))).naming("Title"),
        to(G, "POST", grades).json(title(json!("   "))).naming("Title"),
        to(G, "POST", grades).json(title(json!("x".repeat(201)))).naming("Title"),
        to(G, "POST", grades).json(title(json!("\u{0}Quiz"))).naming("Title"),
        to(G, "POST", grades).json(title(json!("Qu\u{0}iz"))).naming("Title"),
        to(G, "POST", grades).json(title(json!("\u{0}"))).naming("Title"),
        to(G, "POST", grades).json(title(json!("\u{202E}9 ziuQ"))).naming("Title"),
        to(G, "POST", grades).json(title(json!("\u{1b}[31mQuiz"))).naming("Title"),
        to(G, "POST", grades).json(title(json!("Quiz\n9"))).naming("Title"),
        to(G, "POST", grades).json(title(json!(zalgo(7_000)))).naming("Title"),
        // 10,000 combining marks are 20 KB: over grading's 16 KB limit.
        to(G, "POST", grades).json(title(json!(zalgo(10_000)))).is(413),
        to(G, "POST", grades).json(grade(json!("Quiz 9"), json!("Essay"), json!(90))).naming("Type"),
        to(G, "POST", grades).json(grade(json!("Quiz 9"), json!("quiz"), json!(90))).naming("Type"),
        to(G, "POST", grades).json(grade(json!("Quiz 9"), json!("Quiz\u{0}"), json!(90))).naming("Type"),
        to(G, "POST", grades).json(grade(json!("Quiz 9"), json!(null), json!(90))).naming("Type"),
        to(G, "POST", grades).json(grade(json!("Quiz 9"), json!(["Quiz"]), json!(90))).naming("Type"),
        // Student IDs that are not one of the students, or not IDs.
        to(G, "POST", "/students/0/grades").json(good_grade()).is(404),
        to(G, "POST", "/students/-1/grades").json(good_grade()).is(404),
        to(G, "POST", "/students/0099/grades").json(good_grade()).is(404),
        to(G, "POST", "/students/9223372036854775807/grades").json(good_grade()).is(404),
        to(G, "POST", "/students/99999999999999999999/grades").json(good_grade()).is(400),
        to(G, "POST", "/students/abc/grades").json(good_grade()).is(400),
        to(G, "POST", "/students/1.5/grades").json(good_grade()).is(400),
        to(G, "POST", "/students/%00/grades").json(good_grade()).is(400),
        to(G, "POST", "/students/%E2%80%AE1/grades").json(good_grade()).is(400),
        to(G, "POST", "/students//grades").json(good_grade()).is(400),
        to(G, "GET", "/students/0").is(404),
        to(G, "GET", "/students/-1").is(404),
        to(G, "GET", "/students/000099").is(404),
        to(G, "GET", "/students/-9223372036854775808").is(404),
        to(G, "GET", "/students/99999999999999999999").is(400),
        to(G, "GET", "/students/abc").is(400),
        to(G, "GET", "/students/1e2").is(400),
        to(G, "GET", "/students/0x1").is(400),
        to(G, "GET", "/students/%00").is(400),
        to(G, "GET", "/students/%20").is(400),
        to(G, "GET", "/students/%D9%A1").is(400),
        // Grades that are not there: another student's, zero, negative.
        to(G, "DELETE", "/students/2/grades/1").is(404),
        to(G, "DELETE", "/students/99/grades/1").is(404),
        to(G, "DELETE", "/students/1/grades/0").is(404),
        to(G, "DELETE", "/students/1/grades/-1").is(404),
        to(G, "DELETE", "/students/1/grades/0004").is(404),
        to(G, "DELETE", "/students/1/grades/abc").is(400),
        to(G, "DELETE", "/students/1/grades/1.0").is(400),
        to(G, "DELETE", "/students/1/grades/99999999999999999999").is(400),
        to(G, "DELETE", "/students/abc/grades/1").is(400),
        // New students that are no students.
        to(G, "POST", "/students").json("{}").naming("FirstName"),
        to(G, "POST", "/students").json(body(json!({"LastName": "Lovelace"}))).naming("FirstName"),
        to(G, "POST", "/students").json(body(json!({"FirstName": "Ada"}))).naming("LastName"),
        to(G, "POST", "/students").json(student(json!(42), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!("Ada"), json!(null))).naming("LastName"),
        to(G, "POST", "/students").json(student(json!(""), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!("x".repeat(101)), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!("\u{0}"), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!("\u{0}Ada"), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!("Ada"), json!("Love\u{0}lace"))).naming("LastName"),
        to(G, "POST", "/students").json(student(json!("\u{202E}adA"), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!(zalgo(7_000)), json!("Lovelace"))).naming("FirstName"),
        to(G, "POST", "/students").json(student(json!(zalgo(10_000)), json!("Lovelace"))).is(413),
        // Bodies over the limit, with and without a length.
        to(G, "POST", grades).json(title(json!("x".repeat(17 * 1024)))).is(413),
        to(G, "POST", grades).json(title(json!("x".repeat(1 << 20)))).is(413),
        to(G, "POST", grades).chunked("application/json", title(json!("x".repeat(20 * 1024)))).is(413),
        to(G, "POST", "/students").json(student(json!("x".repeat(17 * 1024)), json!("Lovelace"))).is(413),
        // Query parameters grading does not take are ignored.
        to(G, "GET", "/students?limit=-1&id=%00").answered(200),
        to(G, "GET", "/students/1?x=%E2%80%AE").answered(200),
    ];
    // The same broken grade is refused the same way for every student.
    for id in ["2", "5"] {
        cases.push(to(G, "POST", format!("/students/{id}/grades")).json(title(json!("\u{0}Quiz"))).naming("Title"));
    }
    cases
}

/// A registration that would be taken if nothing else were wrong with it,
/// at an address where nothing listens.
fn registration(name: Value) -> Value {
    json!({"ServiceName": name, "ServiceURL": "http://127.0.0.1:9", "HeartbeatURL": "http://127.0.0.1:9/heartbeat"})
}

fn registry_cases() -> Vec<Case> {
    use Service::Registry as R;
    let valid = || body(registration(json!("Hostile")));
    let with = |key: &str, value: Value| {
        let mut r = registration(json!("Hostile"));
        r[key] = value;
        body(r)
    };
    vec![
        to(R, "PUT", "/services").json(valid()).is(405),
        to(R, "PATCH", "/services").json(valid()).is(405),
        to(R, "POST", "/services/GradingService").json(valid()).is(405),
        to(R, "DELETE", "/services/GradingService").is(405),
        to(R, "GET", "/sessions").is(405),
        to(R, "DELETE", "/sessions").is(405),
        to(R, "POST", "/healthz").is(405),
        to(R, "GET", "/nope").is(404),
        to(R, "POST", "/services").untyped(valid()).is(415),
        to(R, "POST", "/services").typed("text/plain", valid()).is(415),
        to(R, "POST", "/services").typed("application/x-www-form-urlencoded", "ServiceName=Hostile").is(415),
        to(R, "POST", "/services").json("").is(400),
        to(R, "POST", "/services").json(r#"{"ServiceName":"Hostile","ServiceURL":"#).is(400),
        to(R, "POST", "/services").json("[]").is(400),
        to(R, "POST", "/services").json("null").is(400),
        to(R, "POST", "/services").json("{}").is(400),
        to(R, "POST", "/services").json(nested_arrays(20_000)).is(400),
        // Deep nesting in a field the registry would otherwise ignore.
        to(R, "POST", "/services")
            .json(format!(r#"{{"ServiceName":"Hostile","Extra":{}}}"#, nested_arrays(20_000)))
            .is(400),
        to(R, "POST", "/services").json(b"{\"ServiceName\":\"\xFF\"}".to_vec()).is(400),
        to(R, "POST", "/services").json(body(registration(json!("")))).naming("ServiceName"),
        to(R, "POST", "/services").json(body(registration(json!("   ")))).naming("ServiceName"),
        to(R, "POST", "/services").json(body(registration(json!(42)))).is(400),
        to(R, "POST", "/services").json(body(registration(json!(zalgo(10_000))))).naming("ServiceName"),
        to(R, "POST", "/services").json(body(registration(json!("\u{0}")))).naming("ServiceName"),
        to(R, "POST", "/services").json(body(registration(json!("Grading\u{0}Service")))).naming("ServiceName"),
        to(R, "POST", "/services").json(with("ServiceURL", json!("not a url"))).naming("ServiceURL"),
        to(R, "POST", "/services").json(with("ServiceURL", json!("file:///etc/passwd"))).naming("ServiceURL"),
        to(R, "POST", "/services").json(with("ServiceURL", json!("http://"))).naming("ServiceURL"),
        to(R, "POST", "/services").json(with("ServiceURL", json!("http://127.0.0.1:99999"))).naming("ServiceURL"),
        to(R, "POST", "/services").json(with("ServiceURL", json!("http://127.0.0.1:9/\u{0}"))).naming("ServiceURL"),
        to(R, "POST", "/services").json(with("HeartbeatURL", json!("http://10.0.0.1/heartbeat"))).naming("HeartbeatURL"),
        to(R, "POST", "/services").json(with("RequiredServices", json!([""]))).naming("RequiredServices"),
        to(R, "POST", "/services").json(with("RequiredServices", json!(["LogService"]))).naming("ServiceUpdateURL"),
        to(R, "POST", "/services").json(with("RequiredServices", json!("LogService"))).is(400),
        to(R, "POST", "/services")
            .json(r#"{"ServiceName":"Hostile","ServiceURL":"http://127.0.0.1:9","HeartbeatURL":"http://127.0.0.1:9/h","RequiredServices":[1e400]}"#)
            .is(400),
        to(R, "POST", "/services").json(with("KnownProviders", json!([{"Name": 1}]))).is(400),
        to(R, "POST", "/services").json(with("ServiceName", json!("x".repeat(70 * 1024)))).is(413),
        to(R, "DELETE", "/services").typed("text/plain", "").is(404),
        to(R, "DELETE", "/services").typed("text/plain", "http://127.0.0.1:9").is(404),
        to(R, "DELETE", "/services").typed("text/plain", "\u{0}").is(404),
        to(R, "DELETE", "/services").typed("text/plain", zalgo(10_000)).is(404),
        to(R, "DELETE", "/services").json(valid()).is(404),
        to(R, "DELETE", "/services").typed("text/plain", b"http://\xFF\xFE".to_vec()).is(400),
        to(R, "DELETE", "/services").typed("text/plain", "x".repeat(70 * 1024)).is(413),
        to(R, "DELETE", "/services").chunked("text/plain", "x".repeat(68 * 1024)).is(413),
        to(R, "POST", "/sessions").is(400),
        to(R, "POST", "/sessions?uri=http://127.0.0.1:9").is(400),
        to(R, "POST", "/sessions?url=").is(404),
        to(R, "POST", "/sessions?url=%00").is(404),
        to(R, "POST", "/sessions?url=%ZZ").is(404),
        to(R, "POST", "/sessions?url=http://127.0.0.1:9").is(404),
        to(R, "GET", "/services/%00").answered(200),
        to(R, "GET", "/services/%E2%80%AEgol").answered(200),
        to(R, "GET", format!("/services/{}", zalgo_query(10_000))).answered(200),
        to(R, "GET", "/services?state=critical&limit=-1").answered(200),
    ]
}

fn record(fields: Value) -> Value {
    let mut r = json!({"service": "Hostile", "message": "hello"});
    if let (Some(r), Some(fields)) = (r.as_object_mut(), fields.as_object()) {
        r.extend(fields.clone());
    }
    r
}

fn log_cases() -> Vec<Case> {
    use Service::Log as L;
    let one = |fields: Value| body(record(fields));
    vec![
        to(L, "PUT", "/log").typed("text/plain", "[Hostile] - hello").is(405),
        to(L, "DELETE", "/log").is(405),
        to(L, "POST", "/log/stream").json(one(json!({}))).is(405),
        to(L, "POST", "/log/stats").is(405),
        to(L, "DELETE", "/healthz").is(405),
        to(L, "GET", "/log/nope").is(404),
        to(L, "POST", "/log").typed("application/xml", "<log>hello</log>").is(415),
        to(L, "POST", "/log").typed("image/png", b"\x89PNG\r\n\x1a\n".to_vec()).is(415),
        to(L, "POST", "/log").json("[Hostile] - hello").is(400),
        to(L, "POST", "/log").typed("text/plain", "").is(400),
        to(L, "POST", "/log").typed("text/plain", "  \r\n").is(400),
        to(L, "POST", "/log").typed("text/plain", b"[Hostile] - \xFF\xFE".to_vec()).is(400),
        to(L, "POST", "/log").json("").is(400),
        to(L, "POST", "/log").json("{").is(400),
        to(L, "POST", "/log").json(r#"[{"service":"Hostile","message":"hello"}"#).is(400),
        to(L, "POST", "/log").json("[]").is(400),
        to(L, "POST", "/log").json("{}").is(400),
        to(L, "POST", "/log").json("null").is(400),
        to(L, "POST", "/log").json(r#""hello""#).is(400),
        to(L, "POST", "/log").json(nested_arrays(100_000)).is(400),
        to(L, "POST", "/log")
            .json(format!(r#"{{"service":"Hostile","message":"hello","fields":{}}}"#, nested_objects(1_000)))
            .is(400),
        to(L, "POST", "/log").json(one(json!({"service": ""}))).naming("service"),
        to(L, "POST", "/log").json(one(json!({"service": "  "}))).naming("service"),
        to(L, "POST", "/log").json(one(json!({"service": "\u{0}"}))).naming("service"),
        to(L, "POST", "/log").json(one(json!({"message": ""}))).naming("message"),
        to(L, "POST", "/log").json(one(json!({"level": "loud"}))).is(400),
        to(L, "POST", "/log").json(one(json!({"level": 5}))).is(400),
        to(L, "POST", "/log").json(one(json!({"level": "\u{0}"}))).is(400),
        to(L, "POST", "/log").json(one(json!({"level": "loud", "message": zalgo(10_000)}))).is(400),
        to(L, "POST", "/log").json(one(json!({"timestamp": "yesterday"}))).naming("timestamp"),
        to(L, "POST", "/log").json(one(json!({"timestamp": "2026-13-45T99:99:99Z"}))).naming("timestamp"),
        to(L, "POST", "/log").json(one(json!({"timestamp": "\u{202E}Z00:00:00T10-10-6202"}))).naming("timestamp"),
        to(L, "POST", "/log").json(one(json!({"timestamp": 1_700_000_000}))).is(400),
        to(L, "POST", "/log").json(one(json!({"extra": true}))).is(400),
        to(L, "POST", "/log").json(one(json!({"fields": "not a map"}))).is(400),
        to(L, "POST", "/log").json(one(json!({"fields": {"n": 1}, "message": 1e308, "level": "info"}))).is(400),
        // One bad record spoils the batch: nothing of it is stored.
        to(L, "POST", "/log").json(body(json!([record(json!({})), record(json!({"level": "loud"}))]))).is(400),
        to(L, "POST", "/log").json(body(json!([record(json!({})), record(json!({"service": ""}))]))).naming("service"),
        to(L, "POST", "/log").json(one(json!({"message": "x".repeat(100 * 1024)}))).is(413),
        to(L, "POST", "/log").json(one(json!({"message": "x".repeat(2 << 20)}))).is(413),
        to(L, "POST", "/log").typed("text/plain", "x".repeat(2 << 20)).is(413),
        to(L, "POST", "/log")
            .chunked("application/json", one(json!({"message": "x".repeat((1 << 20) + 1024)})))
            .is(413),
        to(L, "GET", "/log?limit=abc").is(400),
        to(L, "GET", "/log?limit=-1").is(400),
        to(L, "GET", "/log?limit=1e3").is(400),
        to(L, "GET", "/log?limit=99999999999999999999999").is(400),
        to(L, "GET", "/log?after=-5").is(400),
        to(L, "GET", "/log?after=abc").is(400),
        to(L, "GET", "/log?level=loud").naming("level"),
        to(L, "GET", "/log?level=%00").naming("level"),
        to(L, "GET", "/log?since=yesterday").naming("since"),
        to(L, "GET", "/log?since=%00").naming("since"),
        to(L, "GET", "/log?since=2026-02-30T00:00:00Z").naming("since"),
        to(L, "GET", "/log/stream?level=loud").naming("level"),
        to(L, "GET", "/log/stream?since=%E2%80%AE").naming("since"),
        to(L, "GET", "/log/stream?after=abc").is(400),
        to(L, "GET", "/log?contains=%00").answered(200),
        to(L, "GET", "/log?contains=%E2%80%AE").answered(200),
        to(L, "GET", format!("/log?contains={}", zalgo_query(10_000))).answered(200),
        to(L, "GET", "/log?service=%00").answered(200),
        to(L, "GET", "/log?limit=1000000").naming("limit"),
        to(L, "GET", "/log?after=18446744073709551615").answered(200),
    ]
}

/// The three services on port 0, sharing one registry.
struct System {
    registry: TestRegistry,
    log: TestLog,
    grading: TestGrading,
    client: reqwest::Client,
    _dir: TempDir,
}

/// Everything the services store, as their own APIs show it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    /// Grading's `GET /students`, byte for byte.
    students: String,
    /// The log's `GET /log?limit=1000`, byte for byte.
    log: String,
    /// The registry's registrations (their health and probe times move on
    /// by themselves, so only what a registration says is compared).
    registrations: Vec<Registered>,
}

/// What one registration says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Registered {
    url: String,
    name: String,
    /// What it requires and where it is probed and patched.
    rest: String,
}

/// What a service answered.
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl System {
    async fn start() -> Self {
        let dir = TempDir::new("hostile");
        let registry = TestRegistry::spawn(Config::default());
        let log = TestLog::spawn(&registry.url, StoreConfig { dir: dir.path().join("log"), ..StoreConfig::default() });
        let grading = TestGrading::spawn(&registry.url, &format!("sqlite://{}/grading.db", dir.path().display()));
        // A new connection for every request: the services close one whose
        // oversized body they did not read, and a request sent on it next
        // would fail for the client's reason, not the service's.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(0)
            .build()
            .expect("a client builds");
        let system = Self { registry, log, grading, client, _dir: dir };
        eventually_async(LIMIT, "the log and grading services are registered", || async {
            let listed = system.registrations().await.unwrap_or_default();
            ["LogService", "GradingService"].iter().all(|n| listed.iter().any(|r| r.name == *n))
        })
        .await;
        // A few records, so that the log has something to lose.
        let seed = json!([
            {"service": "Seed", "message": "one"},
            {"service": "Seed", "level": "warn", "message": "two", "fields": {"n": 2}},
            {"service": "Seed", "level": "error", "message": "three"},
        ]);
        let r = system.client.post(format!("{}/log", system.log.url)).json(&seed).send().await.unwrap();
        assert_eq!(r.status(), 200, "the seed records are taken");
        system
    }

    fn base(&self, service: Service) -> &str {
        match service {
            Service::Registry => &self.registry.url,
            Service::Log => &self.log.url,
            Service::Grading => &self.grading.url,
        }
    }

    async fn send(&self, case: &Case) -> Result<Answer, String> {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).map_err(|e| e.to_string())?;
        let url = format!("{}{}", self.base(case.service), case.path);
        // An Accept header, so grading answers a missing student with JSON
        // (clients of the original, sending none, get its bodiless 404).
        let mut request = self.client.request(method, url).header("accept", "application/json");
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        request = match &case.body {
            Body::Empty => request,
            Body::Sized(b) => request.body(b.clone()),
            Body::Chunked(b) => {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = b.chunks(8 * 1024).map(|c| Ok(c.to_vec())).collect();
                request.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            }
        };
        let response =
            request.send().await.map_err(|e| format!("no answer: {}", gradebook_runtime::http::describe(&e)))?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.bytes().await.map_err(|e| format!("answer cut off: {e}"))?.to_vec();
        Ok(Answer { status, content_type, body })
    }

    /// The service's answer to `case`. A service may stop reading a body
    /// over its limit and close the connection once it has answered 413;
    /// when that close reaches the client while it is still writing, the
    /// client reports a broken connection instead of the answer. Such a case
    /// is sent again (twice at most) until the answer itself is read.
    async fn answer(&self, case: &Case) -> Result<Answer, String> {
        let mut tries = 1;
        loop {
            match self.send(case).await {
                Err(e) if tries < 3 && matches!(case.expect, Some(Expect::Refused(413, _))) => {
                    eprintln!("{}: sent again after {e}", case.describe());
                    tries += 1;
                }
                answered => return answered,
            }
        }
    }

    async fn text(&self, url: String) -> Result<String, String> {
        let r = self.client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if r.status() != 200 {
            return Err(format!("GET {url}: {}", r.status()));
        }
        r.text().await.map_err(|e| format!("GET {url}: {e}"))
    }

    async fn registrations(&self) -> Result<Vec<Registered>, String> {
        let text = self.text(format!("{}/services", self.registry.url)).await?;
        let list: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("GET /services: {e}"))?;
        let mut rows: Vec<Registered> = list
            .iter()
            .map(|s| Registered {
                url: s["ServiceURL"].as_str().unwrap_or_default().to_owned(),
                name: s["ServiceName"].as_str().unwrap_or_default().to_owned(),
                rest: ["RequiredServices", "HeartbeatURL", "ServiceUpdateURL"].map(|k| s[k].to_string()).join(" "),
            })
            .collect();
        rows.sort();
        Ok(rows)
    }

    async fn stored(&self) -> Result<Stored, String> {
        Ok(Stored {
            students: self.text(format!("{}/students", self.grading.url)).await?,
            log: self.text(format!("{}/log?limit=1000", self.log.url)).await?,
            registrations: self.registrations().await?,
        })
    }

    /// Whether the service still answers its health check, or why not.
    async fn alive(&self, service: Service) -> Result<(), String> {
        match self.client.get(format!("{}/healthz", self.base(service))).send().await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("GET /healthz answered {}", r.status())),
            Err(e) => Err(format!("GET /healthz: {}", gradebook_runtime::http::describe(&e))),
        }
    }

    /// Takes back registrations a case managed to add, so that one accepted
    /// registration is reported once, not again by every case after it.
    async fn undo_registrations(&self, before: &Stored, now: &Stored) {
        for added in now.registrations.iter().filter(|r| !before.registrations.contains(r)) {
            let _ = self.client.delete(format!("{}/services", self.registry.url)).body(added.url.clone()).send().await;
        }
    }
}

/// Everything wrong with `answer` as the answer to `case`.
fn judge(case: &Case, answer: &Answer) -> Vec<String> {
    let mut wrong = vec![];
    let expect = case.expect.expect("every case says what it expects");
    let (status, field) = match expect {
        Expect::Refused(status, field) => (status, field),
        Expect::Answered(status) => (status, None),
    };
    if answer.status != status {
        wrong.push(format!("status {} (expected {status})", answer.status));
    }
    if answer.status >= 400 {
        if !answer.content_type.starts_with("application/json") {
            wrong.push(format!("content-type {:?}, not application/json", answer.content_type));
        }
        match serde_json::from_slice::<Value>(&answer.body) {
            Ok(Value::Object(o)) => {
                if o.get("error").and_then(Value::as_str).is_none_or(|e| e.is_empty()) {
                    wrong.push("no \"error\" message".to_owned());
                }
                if let Some(extra) = o.keys().find(|k| !matches!(k.as_str(), "error" | "field")) {
                    wrong.push(format!("unexpected key {extra:?}"));
                }
                match (o.get("field"), field) {
                    (Some(Value::String(got)), Some(want)) if got != want => {
                        wrong.push(format!("names field {got:?}, not {want:?}"))
                    }
                    (None | Some(Value::Null), Some(want)) => wrong.push(format!("names no field (expected {want:?})")),
                    (Some(v), _) if !v.is_string() => wrong.push(format!("field is {v}, not a string")),
                    _ => {}
                }
            }
            _ => wrong.push("the body is not a JSON object".to_owned()),
        }
    }
    wrong
}

#[tokio::test]
async fn every_bad_input_to_every_service_gets_a_4xx_and_changes_nothing() {
    let system = System::start().await;
    let cases: Vec<Case> = [grading_cases(), registry_cases(), log_cases()].into_iter().flatten().collect();
    assert!(cases.iter().all(|c| c.expect.is_some()), "every case says what it expects");

    let mut stored = system.stored().await.expect("the services answer before the first case");
    let students: Vec<Value> = serde_json::from_str(&stored.students).unwrap();
    assert_eq!(students.len(), 5, "grading starts with the original's five students");
    assert!(stored.log.contains("three"), "the seed records are queryable: {}", stored.log);

    let mut server_errors = 0;
    let mut failures = vec![];
    for case in &cases {
        let mut wrong = vec![];
        let mut said = String::new();
        match system.answer(case).await {
            Ok(answer) => {
                if answer.status >= 500 {
                    server_errors += 1;
                }
                wrong.extend(judge(case, &answer));
                said = format!("{} {}", answer.status, preview(&answer.body));
            }
            Err(e) => wrong.push(e),
        }
        if let Err(e) = system.alive(case.service).await {
            wrong.push(e);
        }
        match system.stored().await {
            Ok(now) if now == stored => {}
            Ok(now) => {
                for (what, changed) in [
                    ("grading's students", now.students != stored.students),
                    ("the log", now.log != stored.log),
                    ("the registrations", now.registrations != stored.registrations),
                ] {
                    if changed {
                        wrong.push(format!("{what} changed"));
                    }
                }
                system.undo_registrations(&stored, &now).await;
                stored = system.stored().await.expect("the services still answer");
            }
            Err(e) => wrong.push(format!("stored data unreadable: {e}")),
        }
        if !wrong.is_empty() {
            failures.push(format!("{}\n    answered: {said}\n    wrong: {}", case.describe(), wrong.join("; ")));
        }
    }

    println!("hostile: {} cases, {server_errors} answered 5xx", cases.len());
    assert!(cases.len() >= 100, "the table covers the services broadly");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
