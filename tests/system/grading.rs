//! The grading service over real sockets: the API and its validation, the
//! durability of a 201 across `kill -9`, on SQLite and PostgreSQL, concurrent
//! writers, and its place in the system (discovery, shipped logs).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gradebook::registry::Config;
use gradebook_shared::grading::{Grade, Student};
use gradebook_tests::process::{Proc, Signal, wait_listening};
use gradebook_tests::{
    TempDir, TestGrading, TestLog, TestRegistry, TestService, eventually, eventually_async, postgres_database,
};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

fn sqlite_url(dir: &TempDir) -> String {
    format!("sqlite://{}/grading.db", dir.path().display())
}

/// A typed client of the grading API.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: &str) -> Self {
        Self { base: base.to_owned(), client: reqwest::Client::new() }
    }

    async fn students(&self) -> Vec<Student> {
        let r = self.client.get(format!("{}/students", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn student(&self, id: &str) -> reqwest::Response {
        self.client.get(format!("{}/students/{id}", self.base)).send().await.unwrap()
    }

    async fn add_grade(&self, id: i64, body: Value) -> reqwest::Response {
        self.client.post(format!("{}/students/{id}/grades", self.base)).json(&body).send().await.unwrap()
    }

    async fn grade_count(&self) -> usize {
        self.students().await.iter().map(|s| s.grades.len()).sum()
    }
}

struct App {
    api: Api,
    _grading: TestGrading,
    _registry: TestRegistry,
    _dir: TempDir,
}

async fn spawn_app() -> App {
    let dir = TempDir::new("grading");
    let registry = TestRegistry::spawn(Config::default());
    let grading = TestGrading::spawn(&registry.url, &sqlite_url(&dir));
    App { api: Api::new(&grading.url), _grading: grading, _registry: registry, _dir: dir }
}

#[tokio::test]
async fn the_initial_grade_book_lists_five_students_with_their_grades_in_order() {
    let app = spawn_app().await;

    let students = app.api.students().await;

    let names: Vec<(&str, &str)> = students.iter().map(|s| (s.first_name.as_str(), s.last_name.as_str())).collect();
    assert_eq!(
        names,
        [("Nick", "Carter"), ("Roberto", "Baggio"), ("Emma", "Stone"), ("zhangsan", "san"), ("xiaoqiao", "qiao")]
    );
    let nick: Vec<(&str, f64)> = students[0].grades.iter().map(|g| (g.title.as_str(), g.score)).collect();
    assert_eq!(nick, [("Quiz 1", 85.0), ("Final Exam", 94.0), ("Quiz 2", 82.0)]);
    assert_eq!(students[0].average, Some(87.0));
}

#[tokio::test]
async fn one_student_is_served_with_the_original_field_names() {
    let app = spawn_app().await;

    let r = app.api.student("2").await;

    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ID"], 2);
    assert_eq!(body["FirstName"], "Roberto");
    assert_eq!(body["LastName"], "Baggio");
    assert_eq!(body["Grades"][0], json!({"ID": 4, "Title": "Quiz 1", "Type": "Quiz", "Score": 100}));
}

#[tokio::test]
async fn unknown_or_malformed_student_ids_are_client_errors() {
    let app = spawn_app().await;
    for (id, status) in [("99", 404), ("abc", 400), ("1.5", 400), ("-1", 404), ("99999999999999999999", 400)] {
        let r = app.api.student(id).await;
        assert_eq!(r.status().as_u16(), status, "/students/{id}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"].is_string(), "/students/{id}: {body}");
    }
}

#[tokio::test]
async fn an_added_grade_is_answered_201_and_shows_in_the_student() {
    let app = spawn_app().await;

    let r = app.api.add_grade(3, json!({"Title": "  Quiz 3 ", "Type": "Quiz", "Score": 91.5})).await;

    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/json");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let grade: Grade = r.json().await.unwrap();
    assert_eq!((grade.title.as_str(), grade.score), ("Quiz 3", 91.5));
    assert_eq!(location, format!("/students/3/grades/{}", grade.id));
    let emma: Student = app.api.student("3").await.json().await.unwrap();
    assert_eq!(emma.grades.last().unwrap(), &grade);
    assert_eq!(emma.average, Some((67.0 + 0.0 + 75.0 + 91.5) / 4.0));
    let listed = app.api.students().await;
    assert_eq!(listed[2].grades.len(), 4, "the list sees the write too");
}

#[tokio::test]
async fn invalid_grades_are_rejected_naming_the_field_and_never_stored() {
    let app = spawn_app().await;
    let before = app.api.grade_count().await;
    let cases = [
        (json!({"Type": "Quiz", "Score": 5}), "Title"),
        (json!({"Title": "", "Type": "Quiz", "Score": 5}), "Title"),
        (json!({"Title": "x".repeat(201), "Type": "Quiz", "Score": 5}), "Title"),
        (json!({"Title": "a", "Type": "Essay", "Score": 5}), "Type"),
        (json!({"Title": "a", "Type": "Quiz", "Score": 101}), "Score"),
        (json!({"Title": "a", "Type": "Quiz", "Score": -0.5}), "Score"),
        (json!({"Title": "a", "Type": "Quiz", "Score": "NaN"}), "Score"),
        (json!({"Title": "a", "Type": "Quiz", "Score": null}), "Score"),
    ];
    for (body, field) in cases {
        let r = app.api.add_grade(1, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["field"], field, "{body}");
        assert!(err["error"].as_str().unwrap().contains(field), "{err}");
    }
    let raw = app
        .api
        .client
        .post(format!("{}/students/1/grades", app.api.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    assert_eq!(app.api.add_grade(99, json!({"Title": "a", "Type": "Quiz", "Score": 1})).await.status(), 404);
    assert_eq!(app.api.grade_count().await, before);
}

#[tokio::test]
async fn students_can_be_added_and_mistaken_grades_removed() {
    let app = spawn_app().await;
    let r = app
        .api
        .client
        .post(format!("{}/students", app.api.base))
        .json(&json!({"FirstName": "Ada", "LastName": "Lovelace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let ada: Student = r.json().await.unwrap();
    assert_eq!((ada.grades.len(), ada.average), (0, None));
    let body: Value = app.api.student(&ada.id.to_string()).await.json().await.unwrap();
    assert_eq!(body["Average"], Value::Null, "null, not NaN, without grades");

    let bad = app
        .api
        .client
        .post(format!("{}/students", app.api.base))
        .json(&json!({"FirstName": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let grade: Grade =
        app.api.add_grade(ada.id, json!({"Title": "Oops", "Type": "Test", "Score": 3})).await.json().await.unwrap();
    let url = format!("{}/students/{}/grades/{}", app.api.base, ada.id, grade.id);
    assert_eq!(app.api.client.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(app.api.client.delete(&url).send().await.unwrap().status(), 404);
    let ada_now: Student = app.api.student(&ada.id.to_string()).await.json().await.unwrap();
    assert!(ada_now.grades.is_empty());
}

/// GETs `path` with `If-None-Match: tag` (when given): the status and the ETag.
async fn revalidate(api: &Api, path: &str, tag: Option<&str>) -> (u16, String) {
    let mut get = api.client.get(format!("{}{path}", api.base));
    if let Some(tag) = tag {
        get = get.header("if-none-match", tag);
    }
    let r = get.send().await.unwrap();
    let etag = r.headers().get("etag").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (r.status().as_u16(), etag)
}

#[tokio::test]
async fn reads_carry_an_etag_that_answers_304_until_a_write_changes_the_data() {
    let app = spawn_app().await;
    for path in ["/students", "/students/2"] {
        let (status, tag) = revalidate(&app.api, path, None).await;
        assert_eq!((status, tag.starts_with('"')), (200, true), "{path}: {tag}");
        assert_eq!(revalidate(&app.api, path, Some(&tag)).await, (304, tag.clone()), "{path}");

        let r = app.api.add_grade(2, json!({"Title": "Retake", "Type": "Test", "Score": 91})).await;
        assert_eq!(r.status(), 201);

        let (status, new_tag) = revalidate(&app.api, path, Some(&tag)).await;
        assert_eq!(status, 200, "{path}: a write makes the old tag stale");
        assert_ne!(new_tag, tag);
    }
}

/// Runs the grading binary with `database_url`, posts a grade, kills it with
/// SIGKILL right after the 201 and checks the grade after a restart.
async fn a_201_survives_kill_9(database_url: &str) {
    let args = |addr: &str| {
        ["grading", "--addr", addr, "--database-url", database_url, "--registry-url", "http://127.0.0.1:9"]
            .into_iter()
            .chain(["--ship-level", "off"])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (mut grading, addr) = Proc::start_listening(args).await;
    let api = Api::new(&format!("http://{addr}"));
    let r = api.add_grade(5, json!({"Title": "Durable", "Type": "Homework", "Score": 77})).await;
    assert_eq!(r.status(), 201);

    grading.kill9();

    let _grading = Proc::start(&args(&addr).iter().map(String::as_str).collect::<Vec<_>>(), false);
    wait_listening(&addr, LIMIT).await;
    let qiao: Student = api.student("5").await.json().await.unwrap();
    assert_eq!(qiao.grades.last().map(|g| g.title.as_str()), Some("Durable"));
    assert_eq!(qiao.grades.len(), 4, "seeded once, not again on restart");
}

#[tokio::test]
async fn an_acknowledged_grade_survives_kill_9_on_sqlite() {
    let dir = TempDir::new("grading-kill");
    a_201_survives_kill_9(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn an_acknowledged_grade_survives_kill_9_on_postgres() {
    let Some(url) = postgres_database("kill").await else { return };
    a_201_survives_kill_9(&url).await;
}

/// 1,000 concurrent POSTs spread over the students and over `bases`.
async fn thousand_concurrent_grades(bases: &[String]) {
    let apis: Vec<Api> = bases.iter().map(|b| Api::new(b)).collect();
    let before = apis[0].grade_count().await;
    let posts = (0..1000).map(|i| {
        let api = &apis[i % apis.len()];
        async move {
            let r = api
                .add_grade((i % 5 + 1) as i64, json!({"Title": format!("Load {i}"), "Type": "Quiz", "Score": i % 101}))
                .await;
            assert_eq!(r.status(), 201);
            r.json::<Grade>().await.unwrap().id
        }
    });
    let ids: HashSet<i64> = futures::future::join_all(posts).await.into_iter().collect();
    assert_eq!(ids.len(), 1000, "every grade got its own ID");
    for api in &apis {
        assert_eq!(api.grade_count().await, before + 1000, "exactly 1000 new grades, seen by every instance");
    }
}

#[tokio::test]
async fn a_thousand_concurrent_grades_are_all_stored_exactly_once_on_sqlite() {
    let app = spawn_app().await;
    thousand_concurrent_grades(std::slice::from_ref(&app.api.base)).await;
}

#[tokio::test]
async fn a_thousand_concurrent_grades_over_two_instances_on_postgres() {
    let Some(url) = postgres_database("concurrency").await else { return };
    let registry = TestRegistry::spawn(Config::default());
    let a = TestGrading::spawn(&registry.url, &url);
    let b = TestGrading::spawn(&registry.url, &url);
    thousand_concurrent_grades(&[a.url.clone(), b.url.clone()]).await;
    // One instance's write is visible through the other at once: no stale cache.
    let r = Api::new(&a.url).add_grade(1, json!({"Title": "Fresh", "Type": "Exam", "Score": 60})).await;
    assert_eq!(r.status(), 201);
    let nick: Student = Api::new(&b.url).student("1").await.json().await.unwrap();
    assert_eq!(nick.grades.last().unwrap().title, "Fresh");
}

/// The arguments of a `gradebook grading` process on `database_url`, with
/// no registry or log service to talk to.
fn grading_args(database_url: &str) -> impl Fn(&str) -> Vec<String> {
    move |addr| {
        ["grading", "--addr", addr, "--database-url", database_url, "--registry-url", "http://127.0.0.1:9"]
            .into_iter()
            .chain(["--ship-level", "off"])
            .map(str::to_owned)
            .collect()
    }
}

/// Every grade stored: its ID and title.
async fn stored_grades(api: &Api) -> HashMap<i64, String> {
    api.students().await.into_iter().flat_map(|s| s.grades).map(|g| (g.id, g.title)).collect()
}

/// Posts 2,000 grades at once to a real `gradebook grading` process on
/// `database_url`, kills it with SIGKILL while the last answers arrive,
/// restarts it: every grade answered 201 is there, under its ID.
async fn acknowledged_grades_survive_kill_9_under_load(database_url: &str) {
    const POSTS: usize = 2000;
    /// Killed once this many are acknowledged: the rest are in flight.
    const KILL_AT: usize = 1800;
    let args = grading_args(database_url);
    let (mut grading, addr) = Proc::start_listening(&args).await;
    let api = Api::new(&format!("http://{addr}"));
    let before = stored_grades(&api).await;
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let posts: Vec<_> = (0..POSTS)
        .map(|i| {
            let (client, base, acked_tx) = (api.client.clone(), api.base.clone(), acked_tx.clone());
            tokio::spawn(async move {
                let body = json!({"Title": format!("Load {i}"), "Type": "Quiz", "Score": i % 101});
                let Ok(r) = client.post(format!("{base}/students/{}/grades", i % 5 + 1)).json(&body).send().await
                else {
                    return; // cut off by the kill: not acknowledged
                };
                if r.status() == 201
                    && let Ok(grade) = r.json::<Grade>().await
                {
                    let _ = acked_tx.send(grade);
                }
            })
        })
        .collect();
    drop(acked_tx);
    let mut acknowledged = vec![];
    while acknowledged.len() < KILL_AT {
        let grade = tokio::time::timeout(LIMIT, acked.recv()).await.expect("grades are acknowledged");
        acknowledged.push(grade.expect("the posts are still running"));
    }

    grading.kill9();

    for post in posts {
        post.await.unwrap();
    }
    while let Some(grade) = acked.recv().await {
        acknowledged.push(grade);
    }
    let _grading = Proc::start(&args(&addr).iter().map(String::as_str).collect::<Vec<_>>(), false);
    wait_listening(&addr, LIMIT).await;
    // A new client: the old one's pooled connections went with the process.
    let after = stored_grades(&Api::new(&api.base)).await;
    eprintln!("{} of {POSTS} acknowledged before the kill; {} stored", acknowledged.len(), after.len() - before.len());
    for grade in &acknowledged {
        assert_eq!(after.get(&grade.id), Some(&grade.title), "acknowledged grade {} is stored", grade.id);
    }
    let new: Vec<&String> = after.iter().filter(|(id, _)| !before.contains_key(id)).map(|(_, t)| t).collect();
    assert!(new.len() >= acknowledged.len() && new.len() <= POSTS, "{} new grades", new.len());
    assert_eq!(new.iter().collect::<HashSet<_>>().len(), new.len(), "no grade stored twice");
}

#[tokio::test]
async fn every_acknowledged_grade_of_2000_concurrent_ones_survives_kill_9_on_sqlite() {
    let dir = TempDir::new("grading-kill-load");
    acknowledged_grades_survive_kill_9_under_load(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn every_acknowledged_grade_of_2000_concurrent_ones_survives_kill_9_on_postgres() {
    let Some(url) = postgres_database("kill_load").await else { return };
    acknowledged_grades_survive_kill_9_under_load(&url).await;
}

#[tokio::test]
async fn a_write_on_one_instance_is_read_at_once_on_another_sharing_postgres() {
    let Some(url) = postgres_database("snapshots").await else { return };
    let registry = TestRegistry::spawn(Config::default());
    let (a, b) = (TestGrading::spawn(&registry.url, &url), TestGrading::spawn(&registry.url, &url));
    let (a, b) = (Api::new(&a.url), Api::new(&b.url));
    for round in 0..40 {
        let (writer, reader) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        // The reader's snapshots are warm: a stale one would be served.
        let (_, one_tag) = revalidate(reader, "/students/1", None).await;
        let (_, list_tag) = revalidate(reader, "/students", None).await;
        assert_eq!(revalidate(reader, "/students/1", Some(&one_tag)).await.0, 304);

        let r = writer.add_grade(1, json!({"Title": format!("Round {round}"), "Type": "Test", "Score": 50})).await;
        assert_eq!(r.status(), 201);
        let grade: Grade = r.json().await.unwrap();

        let nick: Student = reader.student("1").await.json().await.unwrap();
        assert_eq!(nick.grades.last(), Some(&grade), "round {round}: the other instance's student");
        let listed = reader.students().await;
        assert_eq!(listed[0].grades.last(), Some(&grade), "round {round}: the other instance's list");
        for path in ["/students/1", "/students"] {
            let (status, tag) = revalidate(reader, path, None).await;
            assert_eq!(status, 200);
            assert_ne!(&tag, if path == "/students" { &list_tag } else { &one_tag }, "{path}: a new tag");
            assert_eq!(revalidate(writer, path, None).await, (200, tag), "{path}: the same ETag on both");
        }
    }
}

#[tokio::test]
async fn grading_is_discovered_through_the_registry_and_ships_its_logs() {
    let dir = TempDir::new("grading-system");
    let log_dir = TempDir::new("grading-system-log");
    let (_registry, registry_addr) =
        Proc::start_listening(|addr| vec!["registry".into(), "--addr".into(), addr.into()]).await;
    let registry_url = format!("http://{registry_addr}");
    let log = TestLog::spawn(
        &registry_url,
        gradebook::log::StoreConfig { dir: log_dir.path().to_path_buf(), ..Default::default() },
    );
    let db = sqlite_url(&dir);
    let (_grading, grading_addr) = Proc::start_listening(|addr| {
        ["grading", "--addr", addr, "--database-url", &db, "--registry-url", &registry_url].map(str::to_owned).to_vec()
    })
    .await;
    let portal = TestService::spawn(
        gradebook_runtime::ServiceSpec::new("Portal", registry_url.clone()).requires(&["GradingService"]),
    );
    let grading_url = format!("http://{grading_addr}");
    eventually(LIMIT, "the dependent discovers grading", || {
        portal.providers("GradingService") == vec![grading_url.clone()]
    })
    .await;

    let r = portal
        .runtime
        .call("GradingService", |c, base| {
            c.post(format!("{base}/students/4/grades"))
                .json(&json!({"Title": "Via discovery", "Type": "Test", "Score": 70}))
        })
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    eventually_async(LIMIT, "grading's log line reaches the log service", || async {
        let found: Vec<Value> = reqwest::get(format!("{}/log?service=GradingService&contains=grade%20added", log.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        found.iter().any(|r| r["fields"]["title"] == "Via discovery")
    })
    .await;
}

/// A subscription to grading's change feed over a bare socket, as the
/// portal holds it.
struct Subscriber {
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Subscriber {
    async fn subscribe(base: &str) -> Subscriber {
        Subscriber::try_subscribe(base).await.expect("grading takes the subscriber")
    }

    /// `None` when grading refuses the subscriber.
    async fn try_subscribe(base: &str) -> Option<Subscriber> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("grading listens");
        let (read, mut write) = stream.into_split();
        let ask = format!(
            "GET /changes HTTP/1.1\r\nHost: {addr}\r\nConnection: upgrade\r\nUpgrade: gradebook-changes\r\n\r\n"
        );
        write.write_all(ask.as_bytes()).await.expect("sent");
        let mut lines = tokio::io::BufReader::new(read).lines();
        let status = lines.next_line().await.expect("an answer").expect("a status line");
        if !status.starts_with("HTTP/1.1 101") {
            return None;
        }
        while !lines.next_line().await.expect("headers").expect("headers end").is_empty() {}
        Some(Subscriber { lines, write })
    }

    async fn next(&mut self) -> Option<gradebook_shared::grading::changes::Line> {
        let line = tokio::time::timeout(LIMIT, self.lines.next_line()).await.expect("a line in time").ok()??;
        gradebook_shared::grading::changes::Line::parse(line.as_bytes())
    }

    async fn changed(&mut self) -> u64 {
        match self.next().await {
            Some(gradebook_shared::grading::changes::Line::Changed(n)) => n,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    /// Reads the change `write` makes and holds its acknowledgement back
    /// for 100 ms: `write` is not answered meanwhile, and is answered 201
    /// within `limit` of the acknowledgement. The change's number.
    async fn held_until_acknowledged(
        &mut self,
        write: tokio::task::JoinHandle<reqwest::StatusCode>,
        limit: Duration,
    ) -> u64 {
        let change = self.changed().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!write.is_finished(), "answered before the subscriber heard of the write");
        self.ack(change).await;
        let status = tokio::time::timeout(limit, write).await.expect("answered once acknowledged");
        assert_eq!(status.expect("no panic"), 201);
        change
    }

    async fn ack(&mut self, n: u64) {
        use tokio::io::AsyncWriteExt;
        let line = gradebook_shared::grading::changes::Line::Ack(n).to_bytes();
        self.write.write_all(&line).await.expect("grading reads");
    }
}

#[tokio::test]
async fn a_write_is_answered_only_once_the_change_feed_subscriber_has_acknowledged_it() {
    let app = spawn_app().await;
    let mut portal = Subscriber::subscribe(&app.api.base).await;
    let first = portal.changed().await;
    portal.ack(first).await;

    let base = app.api.base.clone();
    let write = tokio::spawn(async move {
        Api::new(&base).add_grade(3, json!({"Title": "Told first", "Type": "Quiz", "Score": 64})).await.status()
    });

    let change = portal.held_until_acknowledged(write, Duration::from_millis(400)).await;

    assert!(change > first);
}

#[tokio::test]
async fn a_subscriber_that_never_acknowledges_holds_writes_up_only_briefly_and_is_cut_off() {
    let app = spawn_app().await;
    let mut portal = Subscriber::subscribe(&app.api.base).await;
    portal.changed().await;

    let started = std::time::Instant::now();
    let r = app.api.add_grade(3, json!({"Title": "Unheard", "Type": "Quiz", "Score": 10})).await;

    assert_eq!(r.status(), 201);
    let waited = started.elapsed();
    let limit = gradebook_shared::grading::changes::ACK_LIMIT;
    assert!(waited >= limit && waited < limit * 3, "waited {waited:?}");
    portal.changed().await;
    assert_eq!(portal.next().await, None, "cut off");
    let started = std::time::Instant::now();
    let r = app.api.add_grade(3, json!({"Title": "Unheld", "Type": "Quiz", "Score": 11})).await;
    assert_eq!(r.status(), 201);
    assert!(started.elapsed() < limit, "a subscriber cut off is not waited for again");
}

#[tokio::test]
async fn the_change_feed_must_be_asked_for_as_an_upgrade() {
    let app = spawn_app().await;

    let r = app.api.client.get(format!("{}/changes", app.api.base)).send().await.unwrap();

    assert_eq!(r.status(), 426);
    let error: Value = r.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("Upgrade: gradebook-changes"), "{error}");
}

#[tokio::test]
async fn a_write_on_one_instance_is_answered_only_once_the_other_instances_subscribers_heard_of_it() {
    let Some(url) = postgres_database("feed-chain").await else { return };
    let registry = TestRegistry::spawn(Config::default());
    let (a, b) = (TestGrading::spawn(&registry.url, &url), TestGrading::spawn(&registry.url, &url));
    // B takes subscribers once it hears the other instances' writes.
    let mut portal = loop {
        if let Some(portal) = Subscriber::try_subscribe(&b.url).await {
            break portal;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let a_api = Api::new(&a.url);
    // A waits for B once it has seen B listening; a first write, acknowledged
    // as it comes, settles that.
    let warm_up = a_api.add_grade(4, json!({"Title": "Warm-up", "Type": "Quiz", "Score": 1}));
    tokio::pin!(warm_up);
    loop {
        tokio::select! {
            r = &mut warm_up => {
                assert_eq!(r.status(), 201);
                break;
            }
            n = portal.changed() => portal.ack(n).await,
        }
    }
    while let Ok(n) = tokio::time::timeout(Duration::from_millis(200), portal.changed()).await {
        portal.ack(n).await;
    }

    let base = a.url.clone();
    let write = tokio::spawn(async move {
        Api::new(&base).add_grade(4, json!({"Title": "Heard on B", "Type": "Quiz", "Score": 2})).await.status()
    });

    portal.held_until_acknowledged(write, Duration::from_millis(900)).await;
}

#[tokio::test]
async fn an_instance_paused_while_another_answers_a_write_serves_that_write_once_it_resumes() {
    // Real processes on one PostgreSQL: only a real SIGSTOP freezes a
    // process's listener with it.
    let Some(url) = postgres_database("paused-reader").await else { return };
    let (_a, a_addr) = Proc::start_listening(grading_args(&url)).await;
    let (b, b_addr) = Proc::start_listening(grading_args(&url)).await;
    let (a, b_api) = (Api::new(&format!("http://{a_addr}")), Api::new(&format!("http://{b_addr}")));
    // Both listen (each has seen the other's write go by), and B's snapshot of
    // student 1 is warm.
    for api in [&a, &b_api] {
        assert_eq!(api.add_grade(1, json!({"Title": "Warm-up", "Type": "Quiz", "Score": 1})).await.status(), 201);
    }
    for _ in 0..3 {
        assert_eq!(b_api.student("1").await.status(), 200);
    }

    b.signal(Signal::SIGSTOP);
    let r = a.add_grade(1, json!({"Title": "While B slept", "Type": "Test", "Score": 42})).await;
    assert_eq!(r.status(), 201, "A answers, not waiting for B for ever");
    b.signal(Signal::SIGCONT);

    let nick: Student = b_api.student("1").await.json().await.unwrap();
    assert_eq!(nick.grades.last().map(|g| g.title.as_str()), Some("While B slept"), "B served its old snapshot");
}
