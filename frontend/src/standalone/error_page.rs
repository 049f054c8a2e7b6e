//! The page for an error no app page renders (a wrong method, a refused
//! request, a form the portal could not take): its title, the message, the
//! open-portal banner where it applies, and the way back.

use axum::http::StatusCode;
use leptos::prelude::*;

use super::document::{Document, Nav, render};
use crate::people::{OPEN_BANNER, Viewer};

/// What the page's heading says for `status`.
fn title(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable",
        s if s.is_client_error() => "Not possible",
        _ => "Something went wrong",
    }
}

#[component]
fn ErrorPage(options: LeptosOptions, status: StatusCode, message: String, viewer: Option<Viewer>) -> impl IntoView {
    let title = title(status);
    let (nav, home) = match &viewer {
        None => (Nav::Nothing, "/signin".to_owned()),
        Some(viewer) => match viewer.own_student() {
            Some(id) => (Nav::Own(id), format!("/students/{id}")),
            None => (Nav::All, "/students".to_owned()),
        },
    };
    let banner =
        (viewer == Some(Viewer::Open)).then(|| view! { <p class="open-banner" role="alert">{OPEN_BANNER}</p> });
    view! {
        <Document options title=title.to_owned() nav>
            {banner}
            <section class="problem" role="alert">
                <h2>{title}</h2>
                <p>{message}</p>
                <p><a href=home>"Back to the grade book"</a></p>
            </section>
        </Document>
    }
}

/// The whole page, as HTML.
pub fn error_page(options: &LeptosOptions, status: StatusCode, message: &str, viewer: Option<&Viewer>) -> String {
    let (options, message, viewer) = (options.clone(), message.to_owned(), viewer.cloned());
    render(move || view! { <ErrorPage options status message viewer/> }.into_any())
}
