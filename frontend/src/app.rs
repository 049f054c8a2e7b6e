//! The app: its shell (server-rendered HTML around it), layout and routes.

use leptos::prelude::*;
use leptos_meta::{Title, provide_meta_context};
use leptos_router::components::{A, Redirect, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use crate::pages::{LogsPage, NotFound, ServicesPage, StudentPage, StudentsPage};

/// The HTML document the server renders the app into.
#[cfg(feature = "ssr")]
pub fn shell(options: LeptosOptions) -> impl IntoView {
    use leptos_meta::MetaTags;
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href=format!("/{}/{}.css", options.site_pkg_dir, options.output_name)/>
                <link rel="icon" href="data:,"/>
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

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title text="Grade Book"/>
        <Router>
            <header class="top">
                <A href="/students" attr:class="brand">"Gradebook"</A>
                <nav>
                    <A href="/students">"Students"</A>
                    <A href="/services">"Services"</A>
                    <A href="/logs">"Logs"</A>
                </nav>
            </header>
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
