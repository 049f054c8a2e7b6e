//! The portal's pages. Each renders on the server (waiting for its data, so
//! the first answer is complete and carries the right status), then becomes
//! interactive once the WebAssembly client hydrates it.

mod logs;
mod services;
mod student;
mod students;

pub use logs::LogsPage;
pub use services::ServicesPage;
pub use student::StudentPage;
pub use students::StudentsPage;

use leptos::prelude::*;

use crate::error::ApiError;

/// Sets the status of the server's answer (no-op in the browser).
pub fn set_status(status: u16) {
    #[cfg(feature = "ssr")]
    if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        );
    }
    #[cfg(not(feature = "ssr"))]
    let _ = status;
}

/// A failed load, said plainly, with the page's status set to match.
#[component]
pub fn Problem(error: ApiError) -> impl IntoView {
    set_status(error.status);
    let title = match error.status {
        404 => "Not found",
        501 => "Not available here",
        503 => "Service unavailable",
        _ => "Something went wrong",
    };
    view! {
        <section class="problem" role="alert">
            <h2>{title}</h2>
            <p>{error.error}</p>
        </section>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    set_status(404);
    view! {
        <section class="problem">
            <h2>"Not found"</h2>
            <p>"There is no such page. "<a href="/students">"Back to the grade book"</a></p>
        </section>
    }
}

/// `87.25` → `"87.3 %"`; no grades → `"–"`.
pub fn percent(average: Option<f64>) -> String {
    average.map_or_else(|| "–".to_owned(), |a| format!("{a:.1} %"))
}

/// Formats a score without a needless `.0`.
pub fn score(s: f64) -> String {
    if s.fract() == 0.0 { format!("{s:.0}") } else { format!("{s}") }
}
