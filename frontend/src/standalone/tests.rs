//! The standalone pages as browsers and the browser tests read them.

use axum::http::StatusCode;
use leptos::prelude::LeptosOptions;

use super::*;
use crate::people::{OPEN_BANNER, Viewer};

fn options() -> LeptosOptions {
    LeptosOptions::builder().output_name("gradebook").build()
}

#[test]
fn the_sign_in_form_carries_its_fields_escaped_and_says_why_it_was_refused() {
    let form = SignInForm {
        next: "/students/1?a=\"<b>".into(),
        name: "x&y".into(),
        csrf: "c0ffee".into(),
        problem: Some("Wrong <name>".into()),
    };
    let html = sign_in_page(&options(), form);
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<title>Sign in · Grade Book</title>"), "{html}");
    assert!(html.contains(r#"<form method="post" action="/signin">"#), "{html}");
    assert!(html.contains(r#"name="name""#) && html.contains(r#"value="x&amp;y""#), "{html}");
    assert!(html.contains(r#"name="password" type="password""#), "{html}");
    assert!(html.contains(r#"name="next" value="/students/1?a=&quot;&lt;b&gt;""#), "{html}");
    assert!(html.contains(r#"name="csrf" value="c0ffee""#), "{html}");
    assert!(html.contains(r#"<button type="submit">Sign in</button>"#), "{html}");
    assert!(html.contains(r#"class="error""#) && html.contains("Wrong &lt;name&gt;"), "{html}");
    assert!(!html.contains("<script"), "a plain page: {html}");
}

#[test]
fn an_error_page_says_what_went_wrong_and_links_only_where_the_viewer_may_go() {
    let open = error_page(&options(), StatusCode::FORBIDDEN, "no <way>", Some(&Viewer::Open));
    assert!(open.contains("<h2>Not possible</h2>") && open.contains("<p>no &lt;way&gt;</p>"), "{open}");
    assert!(open.contains(OPEN_BANNER) && open.contains(r#"href="/logs""#), "{open}");

    let nobody = error_page(&options(), StatusCode::NOT_FOUND, "gone", None);
    assert!(nobody.contains("<title>Not found · Grade Book</title>"), "{nobody}");
    assert!(nobody.contains(r#"<a href="/signin">Back to the grade book</a>"#), "{nobody}");
    assert!(!nobody.contains(r#"href="/logs""#) && !nobody.contains(OPEN_BANNER), "{nobody}");
}
