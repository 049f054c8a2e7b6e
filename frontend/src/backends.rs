//! The portal server's typed client of the services it discovers through the
//! registry: grading (students, grades), the log service (queries, the live
//! tail) and the registry itself (the service list). Pooled connections,
//! deadlines and failover come from the runtime; every answer is turned into
//! data or an [`ApiError`] here, the same way for pages and for the JSON API.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use gradebook_runtime::{CallError, Runtime};
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::{Grade, NewGrade, Student};
use gradebook_shared::log::LogRecord;
use gradebook_shared::names;
use gradebook_shared::registry::ServiceStatus;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// What the portal talks to. Cheap to clone.
#[derive(Clone)]
pub struct Backends {
    pub runtime: Runtime,
    pub registry_url: String,
    /// For the live log tail: no overall deadline (it streams), only a
    /// connect deadline.
    stream_client: reqwest::Client,
}

/// Grading's answer to the page being rendered, fetched by the page cache
/// and read by the page's data calls instead of asking again (so the page
/// matches the tag it is kept under). Travels in the request's extensions.
#[derive(Clone)]
pub struct Prefetched {
    pub path: String,
    /// The body of a 200, or what the page should say instead.
    pub answer: Result<Bytes, ApiError>,
}

/// How readers call a service.
pub fn human(service: &str) -> &str {
    match service {
        names::GRADING => "grading service",
        names::LOG => "log service",
        _ => "service",
    }
}

impl Backends {
    pub fn new(runtime: Runtime, registry_url: String) -> Self {
        let stream_client = gradebook_runtime::http::open_ended_client(Duration::from_secs(2));
        Self { runtime, registry_url: registry_url.trim_end_matches('/').to_owned(), stream_client }
    }

    /// Sends a request to a provider of `service`; no provider, or none
    /// reachable, is "unavailable" as readers see it.
    pub async fn send(
        &self,
        service: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        self.runtime.call(service, build).await.map_err(|e| {
            tracing::warn!(%service, error = %e, "backend call failed");
            match e {
                CallError::NoProvider(_) | CallError::Unreachable { .. } => ApiError::unavailable(human(service)),
            }
        })
    }

    /// Sends a request to a provider of `service` and reads its JSON answer;
    /// the service's own 4xx errors come back as they were.
    async fn call<T: DeserializeOwned>(
        &self,
        service: &str,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        read(self.send(service, build).await?, human(service)).await
    }

    pub async fn students(&self) -> Result<Vec<Student>, ApiError> {
        self.call(names::GRADING, |c, base| c.get(format!("{base}/students"))).await
    }

    pub async fn student(&self, id: i64) -> Result<Student, ApiError> {
        self.call(names::GRADING, |c, base| c.get(format!("{base}/students/{id}"))).await.map_err(|e| no_student(id, e))
    }

    pub async fn add_grade(&self, id: i64, grade: &NewGrade) -> Result<Grade, ApiError> {
        self.call(names::GRADING, |c, base| c.post(format!("{base}/students/{id}/grades")).json(grade)).await
    }

    pub async fn services(&self) -> Result<Vec<ServiceStatus>, ApiError> {
        let response = self
            .runtime
            .client()
            .get(format!("{}/services", self.registry_url))
            .send()
            .await
            .map_err(|_| ApiError::unavailable("registry"))?;
        read(response, "registry").await.map_err(|e| original_cannot(e, NO_SERVICE_LIST))
    }

    pub async fn logs(&self, query: &str) -> Result<Vec<LogRecord>, ApiError> {
        self.call(names::LOG, |c, base| c.get(format!("{base}/log?{query}")))
            .await
            .map_err(|e| original_cannot(e, NO_LOG_QUERIES))
    }

    /// The log service's live tail, as its streaming answer.
    pub async fn log_stream(&self, query: String) -> Result<reqwest::Response, ApiError> {
        let client = self.stream_client.clone();
        let upstream = self.send(names::LOG, move |_, base| client.get(format!("{base}/log/stream?{query}"))).await?;
        if !upstream.status().is_success() {
            let refused = read::<()>(upstream, human(names::LOG)).await.err();
            return Err(original_cannot(
                refused.unwrap_or_else(|| ApiError::unavailable(human(names::LOG))),
                NO_LOG_QUERIES,
            ));
        }
        Ok(upstream)
    }
}

const NO_SERVICE_LIST: &str =
    "This registry does not list its services: it speaks only the original protocol (registration and patches).";
const NO_LOG_QUERIES: &str =
    "This log service does not answer queries: it speaks only the original protocol (it stores what it is sent).";

/// A service of the original design has no route for what ours can list or
/// query (it answers 404 or 405): say so, rather than "something went wrong".
fn original_cannot(e: ApiError, what: &str) -> ApiError {
    if matches!(e.status, 404 | 405) { ApiError::new(501, what) } else { e }
}

/// Grading's 404 for a student, said for the portal's readers.
pub fn no_student(id: i64, e: ApiError) -> ApiError {
    if e.status == 404 { ApiError::new(404, format!("There is no student with ID {id}.")) } else { e }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response, what: &str) -> Result<T, ApiError> {
    let status = response.status();
    let body = response.bytes().await.map_err(|_| ApiError::unavailable(what))?;
    interpret(status, &body, what)
}

/// A service's answer as the portal passes it on: its data, its own 4xx
/// message, or "unavailable" for anything else.
pub fn interpret<T: DeserializeOwned>(status: StatusCode, body: &[u8], what: &str) -> Result<T, ApiError> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| ApiError::new(502, format!("The {what} gave an unreadable answer: {e}")));
    }
    if status.is_client_error() {
        let body = serde_json::from_slice::<ErrorBody>(body)
            .unwrap_or_else(|_| ErrorBody::new(format!("The {what} answered {status}")));
        return Err(ApiError { status: status.as_u16(), error: body.error, field: body.field });
    }
    Err(ApiError::unavailable(what))
}
