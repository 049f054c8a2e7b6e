//! The page around what the app does not render: the document head with
//! the site's stylesheet, the top bar with the brand and the links the
//! viewer may follow, and the content in `<main>`; and rendering such a
//! page to a string.

use leptos::prelude::*;

use crate::app::SiteHead;

/// The links in the top bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// Nobody signed in: no links they could not follow.
    Nothing,
    /// A student: their own page.
    Own(i64),
    /// Everything (a teacher, or an open portal).
    All,
}

/// A whole HTML document with the portal's look.
#[component]
pub fn Document(options: LeptosOptions, title: String, nav: Nav, children: Children) -> impl IntoView {
    let links = match nav {
        Nav::Nothing => None,
        Nav::Own(id) => Some(view! { <a href=format!("/students/{id}")>"My grades"</a> }.into_any()),
        Nav::All => Some(
            view! {
                <a href="/students">"Students"</a>
                <a href="/services">"Services"</a>
                <a href="/logs">"Logs"</a>
            }
            .into_any(),
        ),
    };
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <SiteHead options/>
                <title>{format!("{title} · Grade Book")}</title>
            </head>
            <body>
                <header class="top">
                    <a href="/students" class="brand">"Gradebook"</a>
                    <nav>{links}</nav>
                </header>
                <main>{children()}</main>
            </body>
        </html>
    }
}

/// `view` as HTML, rendered under an owner of its own.
pub fn render(view: impl FnOnce() -> AnyView) -> String {
    Owner::new().with(|| view().to_html())
}
