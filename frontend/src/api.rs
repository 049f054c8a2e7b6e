//! How pages get their data. In the browser (`hydrate`, `csr`) through the
//! portal's JSON API with gloo-net; while rendering on the server (`ssr`)
//! by calling the services directly through discovery (see
//! `crate::backends::Backends`), with the same results and errors.

use gradebook_shared::grading::{Grade, NewGrade, Student};
use gradebook_shared::log::LogRecord;
use gradebook_shared::registry::ServiceStatus;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::encoding::encode;
pub use crate::error::ApiError;

/// Filters of the log view.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The page after this seq (newer), instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// The page before this seq (older), instead of the newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
}

impl LogFilter {
    /// The query of these filters and cursor.
    pub fn query(&self) -> String {
        let mut parts = vec![self.filters()];
        if let Some(after) = self.after {
            parts.push(format!("after={after}"));
        }
        if let Some(before) = self.before {
            parts.push(format!("before={before}"));
        }
        parts.retain(|p| !p.is_empty());
        parts.join("&")
    }

    /// The query of these filters alone, without the cursor.
    pub fn filters(&self) -> String {
        let mut parts = vec![];
        if let Some(s) = self.service.as_deref().filter(|s| !s.is_empty()) {
            parts.push(format!("service={}", encode(s)));
        }
        if let Some(l) = self.level.as_deref().filter(|l| !l.is_empty()) {
            parts.push(format!("level={}", encode(l)));
        }
        parts.join("&")
    }
}

/// The data source of the current build. Cheap to clone; get one with
/// [`Api::current`] while rendering.
#[derive(Clone)]
pub struct Api {
    #[cfg(feature = "ssr")]
    backends: Option<crate::backends::Backends>,
    /// Grading's answer the page cache already fetched for this page.
    #[cfg(feature = "ssr")]
    prefetched: Option<crate::backends::Prefetched>,
}

impl Api {
    pub fn current() -> Self {
        Self {
            #[cfg(feature = "ssr")]
            backends: leptos::prelude::use_context(),
            #[cfg(feature = "ssr")]
            prefetched: leptos::prelude::use_context::<axum::http::request::Parts>()
                .and_then(|request| request.extensions.get().cloned()),
        }
    }

    pub async fn students(&self) -> Result<Vec<Student>, ApiError> {
        #[cfg(feature = "ssr")]
        if let Some(answer) = self.prefetched("/students") {
            return answer;
        }
        #[cfg(feature = "ssr")]
        return self.server()?.students().await;
        #[cfg(not(feature = "ssr"))]
        get("/api/students").await
    }

    pub async fn student(&self, id: i64) -> Result<Student, ApiError> {
        #[cfg(feature = "ssr")]
        if let Some(answer) = self.prefetched(&format!("/students/{id}")) {
            return answer.map_err(|e| crate::backends::no_student(id, e));
        }
        #[cfg(feature = "ssr")]
        return self.server()?.student(id).await;
        #[cfg(not(feature = "ssr"))]
        get(&format!("/api/students/{id}")).await
    }

    pub async fn services(&self) -> Result<Vec<ServiceStatus>, ApiError> {
        #[cfg(feature = "ssr")]
        return self.server()?.services().await;
        #[cfg(not(feature = "ssr"))]
        get("/api/services").await
    }

    pub async fn logs(&self, filter: LogFilter) -> Result<Vec<LogRecord>, ApiError> {
        #[cfg(feature = "ssr")]
        return self.server()?.logs(&filter.query()).await;
        #[cfg(not(feature = "ssr"))]
        get(&format!("/api/logs?{}", filter.query())).await
    }

    #[cfg(feature = "ssr")]
    fn prefetched<T: DeserializeOwned>(&self, path: &str) -> Option<Result<T, ApiError>> {
        let prefetched = self.prefetched.as_ref().filter(|p| p.path == path)?;
        Some(match &prefetched.answer {
            Ok(body) => crate::backends::interpret(
                axum::http::StatusCode::OK,
                body,
                crate::backends::human(gradebook_shared::names::GRADING),
            ),
            Err(e) => Err(e.clone()),
        })
    }

    #[cfg(feature = "ssr")]
    fn server(&self) -> Result<&crate::backends::Backends, ApiError> {
        self.backends.as_ref().ok_or_else(|| ApiError::unavailable("portal server"))
    }
}

/// Adds a grade as typed into the form (browser only: the server-rendered
/// form posts natively). Checked here by grading's own rules first, so a
/// mistake is shown without a round trip.
pub async fn add_grade(student: i64, title: &str, kind: &str, score: &str) -> Result<Grade, ApiError> {
    let grade = NewGrade::from_form(title, kind, score).map_err(ApiError::invalid)?;
    send_json(&format!("/api/students/{student}/grades"), &grade).await
}

#[cfg(feature = "client")]
async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    let path = path.to_owned();
    send_wrapper::SendWrapper::new(async move {
        let response = gloo_net::http::Request::get(&path).send().await.map_err(|_| ApiError::unavailable("portal"))?;
        read(response).await
    })
    .await
}

#[cfg(feature = "client")]
async fn send_json<T: DeserializeOwned>(path: &str, body: &impl Serialize) -> Result<T, ApiError> {
    let path = path.to_owned();
    let request = gloo_net::http::Request::post(&path).json(body).map_err(|e| ApiError::new(400, e.to_string()));
    send_wrapper::SendWrapper::new(async move {
        let response = request?.send().await.map_err(|_| ApiError::unavailable("portal"))?;
        read(response).await
    })
    .await
}

#[cfg(feature = "client")]
async fn read<T: DeserializeOwned>(response: gloo_net::http::Response) -> Result<T, ApiError> {
    let status = response.status();
    let text = response.text().await.map_err(|_| ApiError::unavailable("portal"))?;
    if (200..300).contains(&status) {
        serde_json::from_str(&text).map_err(|e| ApiError::new(502, format!("unexpected answer: {e}")))
    } else {
        Err(serde_json::from_str::<ApiError>(&text)
            .map(|e| ApiError { status, ..e })
            .unwrap_or_else(|_| ApiError::new(status, format!("the portal answered {status}"))))
    }
}

// Builds without a browser client (the server, and plain `cargo test`) never
// fetch through the portal's own API.
#[cfg(not(feature = "client"))]
#[allow(dead_code)]
async fn get<T: DeserializeOwned>(_path: &str) -> Result<T, ApiError> {
    Err(ApiError::unavailable("portal API"))
}

#[cfg(not(feature = "client"))]
async fn send_json<T: DeserializeOwned>(_path: &str, _body: &impl Serialize) -> Result<T, ApiError> {
    Err(ApiError::unavailable("portal API"))
}
