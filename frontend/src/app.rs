//! The app: its shell (server-rendered HTML around it), layout and routes.

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{A, Redirect, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use crate::pages::{LogsPage, NotFound, ServicesPage, StudentPage, StudentsPage};
use crate::people::{OPEN_BANNER, Viewer};

/// The HTML document the server renders the app into.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <SiteHead options=options.clone()/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options islands=true/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// What the head of every page of the portal carries, the app's and those
/// the server renders outside it: the character set, the viewport, the
/// site's stylesheet and an empty icon.
#[cfg(feature = "ssr")]
#[component]
pub fn SiteHead(options: LeptosOptions) -> impl IntoView {
    let css = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <link rel="stylesheet" href=css/>
        <link rel="icon" href="data:,"/>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Known only on the server; the browser builds show what they always did.
    let viewer = Viewer::current();
    let own = viewer.as_ref().and_then(Viewer::own_student);
    let banner =
        (viewer == Some(Viewer::Open)).then(|| view! { <p class="open-banner" role="alert">{OPEN_BANNER}</p> });
    // A signed-in person (never a script: pages are for browsers) can sign out.
    let signout = match &viewer {
        Some(Viewer::Person { account, csrf, bearer: false }) => Some(view! {
            <form class="signout" method="post" action="/signout">
                <span class="who">{account.name.clone()}</span>
                <input type="hidden" name="csrf" value=csrf.clone()/>
                // No `type` written (a button submits anyway), so that
                // `button[type=submit]` still finds the page's own form.
                <button>"Sign out"</button>
            </form>
        }),
        _ => None,
    };
    view! {
        <Title text="Grade Book"/>
        <Router>
            <header class="top">
                <A href="/students" attr:class="brand">"Gradebook"</A>
                <nav>
                    {match own {
                        // A student sees only their own page.
                        Some(id) => view! { <A href=format!("/students/{id}")>"My grades"</A> }.into_any(),
                        None => view! {
                            <A href="/students">"Students"</A>
                            <A href="/services">"Services"</A>
                            <A href="/logs">"Logs"</A>
                        }.into_any(),
                    }}
                </nav>
                {signout}
            </header>
            {banner}
            <main>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view=|| view! { <Redirect path="/students"/> } ssr=SsrMode::Async/>
                    <Route path=path!("/students") view=StudentsPage ssr=SsrMode::Async/>
                    <Route path=path!("/students/:id") view=StudentPage ssr=SsrMode::Async/>
                    <Route path=path!("/services") view=ServicesPage ssr=SsrMode::Async/>
                    <Route path=path!("/logs") view=LogsPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}
