//! Grading figures on SQLite: reads and writes beside a bare hello-world
//! measured in the same run (again right before each read figure).

use std::time::Duration;

use gradebook_tests::TempDir;
use gradebook_tests::process::{Proc, wait_listening};

use crate::load::{InTurn, hello_world, wrk};
use crate::{Row, row};

pub async fn run() -> Vec<Row> {
    let mut rows = vec![];
    let hello = hello_world().await;
    let limit = wrk(&hello, None);
    rows.push(row("hello-world GET (machine limit)", limit.to_string()));

    let dir = TempDir::new("bench-grading");
    let addr = format!("127.0.0.1:{}", gradebook_tests::free_port());
    let db = format!("sqlite://{}/grading.db", dir.path().display());
    let _grading = Proc::start(
        &[
            "grading",
            "--addr",
            &addr,
            "--database-url",
            &db,
            "--registry-url",
            "http://127.0.0.1:9",
            "--ship-level",
            "off",
        ],
        false,
    );
    wait_listening(&addr, Duration::from_secs(10)).await;
    for (what, path) in [("grading GET /students", "/students"), ("grading GET /students/1", "/students/1")] {
        let read = InTurn::measure(&format!("http://{addr}{path}"), &hello, None);
        rows.push(row(
            what,
            format!("median {:.0} % of hello-world, in turn (ours/hello-world: {read})", read.ratio * 100.0),
        ));
    }
    let grade = r#"{"Title":"Bench","Type":"Quiz","Score":80}"#;
    let m = wrk(&format!("http://{addr}/students/2/grades"), Some(("application/json", grade)));
    rows.push(row("grading POST /students/2/grades (SQLite, group commit: one fsync per group)", m.to_string()));
    rows
}
