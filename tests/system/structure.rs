//! The shape of the code: no file of any crate imports a sibling that imports
//! it back, directly or around a loop (a module may use its parent; helpers
//! several modules share live in a leaf module).

use std::path::{Path, PathBuf};

use gradebook_tests::TempDir;
use gradebook_tests::structure::Graph;

const CRATES: [&str; 5] = ["shared", "runtime", "backend", "frontend", "tests/support"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_path_buf()
}

#[test]
fn no_file_of_any_crate_is_in_an_import_circle() {
    let mut report = vec![];
    for krate in CRATES {
        let src = workspace().join(krate);
        let src = if src.join("src").is_dir() { src.join("src") } else { src };
        let graph = Graph::read(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        for circle in graph.circles() {
            let names: Vec<_> =
                circle.iter().map(|p| p.strip_prefix(workspace()).unwrap_or(p).display().to_string()).collect();
            report.push(names.join(" → "));
        }
    }
    println!("import circles: {}", report.len());

    assert!(report.is_empty(), "files in an import circle:\n{}", report.join("\n"));
}

/// Writes `files` (path, text) under a fresh `src/`.
fn crate_of(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new("structure");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn siblings_that_import_each_other_are_a_circle_and_a_child_using_its_parent_is_not() {
    let dir = crate_of(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub struct Root;\n"),
        ("a/mod.rs", "mod inner;\nuse crate::b::{self, Thing as Other};\npub struct A;\n"),
        ("a/inner.rs", "use super::A;\nuse crate::Root;\n"),
        ("b.rs", "pub struct Thing;\nfn f() { let _ = crate::a::A; }\n"),
    ]);

    let circles = Graph::read(dir.path()).unwrap().circles();

    let names: Vec<Vec<String>> = circles
        .iter()
        .map(|c| c.iter().map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string()).collect())
        .collect();
    assert_eq!(names, [["a/mod.rs", "b.rs"]]);
}

#[test]
fn a_loop_through_a_third_file_is_found_and_comments_strings_and_tests_are_not_imports() {
    let dir = crate_of(&[
        ("lib.rs", "mod x;\nmod y;\nmod z;\n"),
        ("x.rs", "use super::y::Y;\n// use crate::z;\nconst S: &str = \"crate::z::Z\";\n"),
        ("y.rs", "pub struct Y;\nuse crate::z::Z;\n"),
        ("z.rs", "pub struct Z;\nfn f() -> crate::x::X { todo!() }\n#[cfg(test)]\nmod tests { use crate::y::Y; }\n"),
    ]);

    let circles = Graph::read(dir.path()).unwrap().circles();

    assert_eq!(circles.len(), 1, "{circles:?}");
    assert_eq!(circles[0].len(), 3, "{circles:?}");
}

#[test]
fn without_the_closing_edge_there_is_no_circle() {
    let dir = crate_of(&[
        ("lib.rs", "mod x;\nmod y;\n"),
        ("x.rs", "use crate::y::Y;\npub struct X;\n"),
        ("y.rs", "pub struct Y;\n/* fn f() -> crate::x::X */\n#[cfg(test)]\nmod tests { use crate::x::X; }\n"),
    ]);

    assert!(Graph::read(dir.path()).unwrap().circles().is_empty());
}
