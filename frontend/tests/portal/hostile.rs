//! Every route of the portal — its JSON API, the no-JavaScript form post and
//! the pages — tried with hostile input: wrong methods, wrong and missing
//! content types, broken and deeply nested JSON, numbers out of range or in
//! strings, NUL, right-to-left overrides and piles of combining marks,
//! student IDs that are no IDs, bad query parameters and bodies over the
//! limit.
//!
//! The portal runs in-process (`oneshot`), talking to a stand-in for grading,
//! the log service and the registry on a real socket that refuses what those
//! refuse, with the same shared rules (see `support`). Every case must get
//! its 4xx (JSON for the API, an HTML page for pages) or, for a form the
//! service refused, the 303 back to the page; the portal must still answer
//! afterwards, and nothing stored behind it may have changed.

use std::time::Duration;

use crate::support::{Stored, portal, start_backend};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, header};
use serde_json::{Value, json};
use tower::ServiceExt;

// ---- the cases ----------------------------------------------------------------

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Refused with this status: a JSON error (naming this field, when one
    /// is given) from the API, an HTML page from a page.
    Refused(u16, Option<&'static str>),
    /// An odd but harmless request, answered with this status.
    Answered(u16),
    /// A form the service refused: 303 back to the page, with the message.
    BackTo(&'static str),
}

enum Sent {
    Empty,
    Sized(Vec<u8>),
    /// Without a length, so the limit cannot be checked up front.
    Chunked(Vec<u8>),
}

struct Case {
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Sent,
    expect: Option<Expect>,
}

fn to(method: &'static str, path: impl Into<String>) -> Case {
    Case { method, path: path.into(), content_type: None, body: Sent::Empty, expect: None }
}

impl Case {
    fn json(self, body: impl Into<Vec<u8>>) -> Self {
        self.typed("application/json", body)
    }

    fn form(self, body: impl Into<Vec<u8>>) -> Self {
        self.typed("application/x-www-form-urlencoded", body)
    }

    fn typed(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Sent::Sized(body.into());
        self
    }

    fn untyped(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Sent::Sized(body.into());
        self
    }

    fn chunked(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Sent::Chunked(body.into());
        self
    }

    fn is(mut self, status: u16) -> Self {
        self.expect = Some(Expect::Refused(status, None));
        self
    }

    fn naming(mut self, field: &'static str) -> Self {
        self.expect = Some(Expect::Refused(400, Some(field)));
        self
    }

    fn answered(mut self, status: u16) -> Self {
        self.expect = Some(Expect::Answered(status));
        self
    }

    fn back_to(mut self, page: &'static str) -> Self {
        self.expect = Some(Expect::BackTo(page));
        self
    }

    /// The API and the health check answer JSON; everything else is a page.
    fn is_api(&self) -> bool {
        let path = self.path.split('?').next().unwrap_or("");
        path.starts_with("/api/") || path == "/healthz"
    }

    fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Sent::Empty => &[],
            Sent::Sized(b) | Sent::Chunked(b) => b,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("Portal {} {}", self.method, self.path);
        if let Some(ct) = self.content_type {
            s += &format!(" [{ct}]");
        }
        if let Sent::Chunked(_) = self.body {
            s += " (chunked)";
        }
        if !self.body_bytes().is_empty() {
            s += &format!(" {}", preview(self.body_bytes()));
        }
        s
    }

    fn request(&self) -> Result<Request<Body>, String> {
        let mut request = Request::builder().method(self.method).uri(&self.path);
        if let Some(ct) = self.content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let body = match &self.body {
            Sent::Empty => Body::empty(),
            Sent::Sized(b) => {
                request = request.header(header::CONTENT_LENGTH, b.len());
                Body::from(b.clone())
            }
            Sent::Chunked(b) => {
                let chunks: Vec<Result<Bytes, std::io::Error>> =
                    b.chunks(8 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
                Body::from_stream(futures::stream::iter(chunks))
            }
        };
        request.body(body).map_err(|e| format!("the case is no request: {e}"))
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let shown: String = text.chars().take(70).collect();
    if shown.len() < text.len() { format!("{shown:?}… ({} bytes)", bytes.len()) } else { format!("{shown:?}") }
}

fn body(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).expect("a json! value serializes")
}

fn zalgo(n: usize) -> String {
    format!("a{}", "\u{301}".repeat(n))
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

/// A form post's body, values percent-encoded as a browser sends them.
fn form(title: &str, kind: &str, score: &str) -> String {
    let enc = gradebook_frontend::encoding::encode;
    format!("Title={}&Type={}&Score={}", enc(title), enc(kind), enc(score))
}

fn cases() -> Vec<Case> {
    let grades = "/api/students/1/grades";
    let mut cases = vec![
        // The API: methods and routes that do not exist.
        to("PUT", "/api/students").json(good_grade()).is(405),
        to("POST", "/api/students").json(body(json!({"FirstName": "Ada", "LastName": "Lovelace"}))).is(405),
        to("DELETE", "/api/students/1").is(405),
        to("PATCH", "/api/students/1").json(good_grade()).is(405),
        to("GET", grades).is(405),
        to("PUT", grades).json(good_grade()).is(405),
        to("DELETE", "/api/students/1/grades/1").is(404),
        to("POST", "/api/services").json("{}").is(405),
        to("DELETE", "/api/logs").is(405),
        to("POST", "/api/logs/stream").is(405),
        to("POST", "/healthz").is(405),
        to("GET", "/api/nope").is(404),
        // Student IDs that are no student's: one student has one address.
        to("GET", "/api/students/abc").is(404),
        to("GET", "/api/students/0").is(404),
        to("GET", "/api/students/-1").is(404),
        to("GET", "/api/students/+1").is(404),
        to("GET", "/api/students/01").is(404),
        to("GET", "/api/students/0099").is(404),
        to("GET", "/api/students/1.5").is(404),
        to("GET", "/api/students/1e2").is(404),
        to("GET", "/api/students/9223372036854775807").is(404),
        to("GET", "/api/students/99999999999999999999").is(404),
        to("GET", "/api/students/%00").is(404),
        to("GET", "/api/students/%E2%80%AE1").is(404),
        to("GET", "/api/students/%D9%A1").is(404),
        // Adding a grade: content types.
        to("POST", grades).untyped(good_grade()).is(415),
        to("POST", grades).typed("text/plain", good_grade()).is(415),
        to("POST", grades).form(form("Quiz 9", "Quiz", "90")).is(415),
        to("POST", grades).typed("application/xml", "<grade/>").is(415),
        // Broken, wrong and deeply nested JSON.
        to("POST", grades).json("").is(400),
        to("POST", grades).json("{").is(400),
        to("POST", grades).json(r#"{"Title":"Quiz","Type":"Quiz","Score":"#).is(400),
        to("POST", grades).json(r#"{"Title":"Quiz","Type":"Quiz","Score":90} and more"#).is(400),
        to("POST", grades).json(b"{\"Title\":\"Q\xFFz\",\"Type\":\"Quiz\",\"Score\":90}".to_vec()).is(400),
        to("POST", grades).json(r#"{"Title":"\udc00","Type":"Quiz","Score":90}"#).is(400),
        to("POST", grades).json("null").is(400),
        to("POST", grades).json("[]").is(400),
        to("POST", grades).json("42").is(400),
        to("POST", grades).json(format!("{}{}", "[".repeat(30_000), "]".repeat(30_000))).is(400),
        to("POST", grades)
            .json(format!(r#"{{"Title":{}1{},"Type":"Quiz","Score":90}}"#, "{\"a\":".repeat(5_000), "}".repeat(5_000)))
            .is(400),
        // Numbers.
        to("POST", grades).json(score(json!("50"))).naming("Score"),
        to("POST", grades).json(score(json!("NaN"))).naming("Score"),
        to("POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":NaN}"#).is(400),
        to("POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":Infinity}"#).is(400),
        to("POST", grades).json(r#"{"Title":"Quiz 9","Type":"Quiz","Score":1e400}"#).is(400),
        to("POST", grades).json(score(json!(1e308))).naming("Score"),
        to("POST", grades).json(score(json!(-1))).naming("Score"),
        to("POST", grades).json(score(json!(100.5))).naming("Score"),
        to("POST", grades).json(score(json!(u64::MAX))).naming("Score"),
        to("POST", grades).json(score(json!(null))).naming("Score"),
        // Titles and types.
        to("POST", grades).json(body(json!({"Type": "Quiz", "Score": 90}))).naming("Title"),
        to("POST", grades).json(title(json!(""))).naming("Title"),
        to("POST", grades).json(title(json!(42))).naming("Title"),
        to("POST", grades).json(title(json!("\u{0}Quiz"))).naming("Title"),
        to("POST", grades).json(title(json!("Qu\u{0}iz"))).naming("Title"),
        to("POST", grades).json(title(json!("\u{0}"))).naming("Title"),
        to("POST", grades).json(title(json!("\u{202E}9 ziuQ"))).naming("Title"),
        to("POST", grades).json(title(json!("\u{1b}[2J"))).naming("Title"),
        to("POST", grades).json(title(json!(zalgo(10_000)))).naming("Title"),
        to("POST", grades).json(grade(json!("Quiz 9"), json!("Essay"), json!(90))).naming("Type"),
        to("POST", grades).json(grade(json!("Quiz 9"), json!("Quiz\u{0}"), json!(90))).naming("Type"),
        // Bodies over the portal's 64 KB.
        to("POST", grades).json(title(json!("x".repeat(70 * 1024)))).is(413),
        to("POST", grades).chunked("application/json", title(json!("x".repeat(68 * 1024)))).is(413),
        to("POST", grades).json(title(json!(zalgo(40_000)))).is(413),
        // A valid grade for no student.
        to("POST", "/api/students/0/grades").json(good_grade()).is(404),
        to("POST", "/api/students/-1/grades").json(good_grade()).is(404),
        to("POST", "/api/students/01/grades").json(good_grade()).is(404),
        to("POST", "/api/students/abc/grades").json(good_grade()).is(404),
        to("POST", "/api/students/99999999999999999999/grades").json(good_grade()).is(404),
        to("POST", "/api/students/9223372036854775807/grades").json(good_grade()).is(404),
        // Log queries, passed through and refused by the log service.
        to("GET", "/api/logs?limit=abc").is(400),
        to("GET", "/api/logs?limit=-1").is(400),
        to("GET", "/api/logs?limit=99999999999999999999999").is(400),
        to("GET", "/api/logs?after=abc").is(400),
        to("GET", "/api/logs?level=loud").naming("level"),
        to("GET", "/api/logs?level=%00").naming("level"),
        to("GET", "/api/logs/stream?level=loud").naming("level"),
        to("GET", "/api/logs/stream?limit=abc").is(400),
        to("GET", "/api/logs?contains=%00").answered(200),
        to("GET", "/api/logs?service=%E2%80%AE").answered(200),
        to("GET", "/api/logs?%ZZ=%ZZ&&&=").answered(200),
        to("GET", "/api/logs/stream?service=%00").answered(200),
        to("GET", "/api/services?x=%00").answered(200),
        to("GET", "/api/students?page=-1").answered(200),
        // The form post without JavaScript: a refused grade goes back to the
        // page with the message; no student, or no form at all, is refused.
        to("POST", "/students/1/grades").form(form("\u{0}Quiz", "Quiz", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Qu\u{0}iz", "Quiz", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("\u{202E}9 ziuQ", "Quiz", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form(&zalgo(10_000), "Quiz", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("", "Quiz", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Essay", "90")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "abc")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "NaN")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "inf")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "1e400")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "-1")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form(form("Quiz 9", "Quiz", "")).back_to("/students/1?error="),
        to("POST", "/students/1/grades").form("Title=%ZZ&Type=%FF&Score=%00").back_to("/students/1?error="),
        to("POST", "/students/1/grades").form("&&&=&Title").back_to("/students/1?error="),
        to("POST", "/students/1/grades").untyped(form("Quiz 9", "Quiz", "90")).is(415),
        to("POST", "/students/1/grades").json(good_grade()).is(415),
        to("POST", "/students/1/grades").form(form(&"x".repeat(70 * 1024), "Quiz", "90")).is(413),
        to("POST", "/students/abc/grades").form(form("Quiz 9", "Quiz", "90")).is(404),
        to("POST", "/students/0/grades").form(form("Quiz 9", "Quiz", "90")).is(404),
        to("POST", "/students/01/grades").form(form("Quiz 9", "Quiz", "90")).is(404),
        to("POST", "/students/99999999999999999999/grades").form(form("Quiz 9", "Quiz", "90")).is(404),
        to("GET", "/students/1/grades").is(405),
        // Pages.
        to("GET", "/students/abc").is(404),
        to("GET", "/students/0").is(404),
        to("GET", "/students/-1").is(404),
        to("GET", "/students/01").is(404),
        to("GET", "/students/0099").is(404),
        to("GET", "/students/99999999999999999999").is(404),
        to("GET", "/students/%00").is(404),
        to("GET", "/students/%E2%80%AE1").is(404),
        to("GET", "/students/1/extra").is(404),
        to("GET", "/nope").is(404),
        to("GET", "/logs?level=loud").is(400),
        to("GET", "/logs?level=%00").is(400),
        to("POST", "/students").form(form("Quiz 9", "Quiz", "90")).is(405),
        to("DELETE", "/students/1").is(405),
        to("PUT", "/services").is(405),
        to("POST", "/logs").is(405),
        to("GET", "/students?page=abc").answered(200),
        to("GET", "/students/1?page=-1").answered(200),
        to("GET", "/students/1?page=99999999999999999999").answered(200),
        to("GET", "/students/1?error=%00&title=%E2%80%AE&score=1e400").answered(200),
        to("GET", "/logs?service=%00").answered(200),
        to("GET", "/services?x=%00").answered(200),
    ];
    // The same broken grade is refused the same way for every student.
    for id in ["1", "2"] {
        cases.push(to("POST", format!("/api/students/{id}/grades")).json(title(json!("\u{0}"))).naming("Title"));
    }
    cases
}

// ---- judging ------------------------------------------------------------------

struct Answer {
    status: u16,
    content_type: String,
    location: String,
    body: Vec<u8>,
}

/// Sends `case` to the portal. On a task of its own, so that a handler that
/// panics fails this case instead of ending the whole run.
async fn send(portal: &Router, case: &Case) -> Result<Answer, String> {
    let request = case.request()?;
    let portal = portal.clone();
    let answered = tokio::spawn(async move {
        let response = portal.oneshot(request).await.map_err(|e| format!("no answer: {e}"))?;
        let (status, content_type, location) = {
            let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            (response.status().as_u16(), header(header::CONTENT_TYPE), header(header::LOCATION))
        };
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .map_err(|e| format!("answer cut off: {e}"))?
            .to_vec();
        Ok::<_, String>(Answer { status, content_type, location, body })
    });
    match tokio::time::timeout(Duration::from_secs(30), answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => Err(format!("the portal panicked: {e}")),
        Err(_) => Err("no answer within 30 s".to_owned()),
    }
}

/// Everything wrong with `answer` as the answer to `case`.
fn judge(case: &Case, answer: &Answer) -> Vec<String> {
    let mut wrong = vec![];
    let expect = case.expect.expect("every case says what it expects");
    let (status, field) = match expect {
        Expect::Refused(status, field) => (status, field),
        Expect::Answered(status) => (status, None),
        Expect::BackTo(_) => (303, None),
    };
    if answer.status != status {
        wrong.push(format!("status {} (expected {status})", answer.status));
    }
    if let Expect::BackTo(page) = expect
        && !answer.location.starts_with(page)
    {
        wrong.push(format!("goes to {:?}, not back to {page}", answer.location));
    }
    if answer.content_type.starts_with("text/html") && answer.body.contains(&0) {
        wrong.push("a raw NUL in the HTML".to_owned());
    }
    if answer.status < 400 {
        return wrong;
    }
    if !case.is_api() {
        if !answer.content_type.starts_with("text/html") {
            wrong.push(format!("content-type {:?}, not an HTML page", answer.content_type));
        }
        if answer.body.is_empty() {
            wrong.push("an empty page".to_owned());
        }
        return wrong;
    }
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
                (Some(v), _) if !v.is_string() && !v.is_null() => wrong.push(format!("field is {v}, not a string")),
                _ => {}
            }
        }
        _ => wrong.push("the body is not a JSON object".to_owned()),
    }
    wrong
}

/// Whether the portal still answers, and still reaches what is behind it.
async fn alive(portal: &Router) -> Result<(), String> {
    for path in ["/healthz", "/api/students"] {
        let answer = send(portal, &to("GET", path).answered(200)).await?;
        if answer.status != 200 {
            return Err(format!("GET {path} answered {}", answer.status));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_to_the_portal_gets_a_4xx_and_changes_nothing() {
    let stored = Stored::new();
    let backend = start_backend(stored.clone()).await;
    let portal = portal(&backend);
    let cases = cases();
    assert!(cases.iter().all(|c| c.expect.is_some()), "every case says what it expects");
    alive(&portal).await.expect("the portal answers before the first case");
    let mut before = stored.snapshot();

    let mut server_errors = 0;
    let mut failures = vec![];
    for case in &cases {
        let mut wrong = vec![];
        let mut said = String::new();
        match send(&portal, case).await {
            Ok(answer) => {
                if answer.status >= 500 {
                    server_errors += 1;
                }
                wrong.extend(judge(case, &answer));
                said = format!("{} {}", answer.status, preview(&answer.body));
            }
            Err(e) => wrong.push(e),
        }
        if let Err(e) = alive(&portal).await {
            wrong.push(e);
        }
        let now = stored.snapshot();
        if now != before {
            wrong.push("what grading or the log service holds changed".to_owned());
            before = now;
        }
        if !wrong.is_empty() {
            failures.push(format!("{}\n    answered: {said}\n    wrong: {}", case.describe(), wrong.join("; ")));
        }
    }

    println!("hostile: {} cases, {server_errors} answered 5xx", cases.len());
    assert!(cases.len() >= 50, "the table covers the portal broadly");
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
