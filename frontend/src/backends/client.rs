//! The portal server's typed client of the services it discovers through the
//! registry: grading (students, grades, accounts), the log service (queries,
//! the live tail) and the registry itself (the service list). Pooled
//! connections, deadlines and failover come from the runtime; every answer
//! is read in `answer`, the same way for pages and for the JSON API.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use gradebook_runtime::{CallError, Runtime};
use gradebook_shared::grading::{Grade, NewGrade, Student};
use gradebook_shared::log::LogRecord;
use gradebook_shared::names;
use gradebook_shared::registry::ServiceStatus;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::answer::{
    ANSWER_LIMIT, LOG_ANSWER_LIMIT, NO_LOG_QUERIES, NO_SERVICE_LIST, human, no_student, original_cannot, read,
};
use super::relay::{LogStream, STREAM_IDLE, relay};
use crate::encoding::encode;
use crate::error::ApiError;
use crate::people::Account;

/// What the portal talks to. Cheap to clone (middleware state is cloned for
/// every request): every field is shared.
#[derive(Clone)]
pub struct Backends {
    pub runtime: Runtime,
    pub registry_url: Arc<str>,
    /// For the live log tail: no overall deadline (it streams), only a
    /// connect deadline; the runtime's credentials.
    stream_client: reqwest::Client,
    /// How long the live tail may go without a byte from the log service.
    stream_idle: Duration,
    /// Cancelled when the portal shuts down (a token's own clone takes a lock).
    shutdown: Arc<CancellationToken>,
}

impl Backends {
    pub fn new(runtime: Runtime, registry_url: String) -> Self {
        let stream_client = runtime.open_ended_client().clone();
        Self {
            runtime,
            registry_url: registry_url.trim_end_matches('/').into(),
            stream_client,
            stream_idle: STREAM_IDLE,
            shutdown: Arc::default(),
        }
    }

    /// What ends the portal's long-lived work (streams, subscriptions).
    pub fn shutdown(&self) -> CancellationToken {
        (*self.shutdown).clone()
    }

    /// Ends what streams (the live log tail) once `shutdown` is cancelled.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = Arc::new(shutdown);
        self
    }

    /// How long the live log tail may go without a byte from the log service.
    pub fn with_stream_idle_timeout(mut self, idle: Duration) -> Self {
        self.stream_idle = idle;
        self
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
        read(self.send(service, build).await?, human(service), ANSWER_LIMIT).await
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

    /// The account `name` and `password` sign in to; `None` when grading
    /// says they do not (one answer whether or not the account exists).
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<Account>, ApiError> {
        let body = serde_json::json!({ "name": name, "password": password });
        self.account_answer(|c, base| c.post(format!("{base}/accounts/verify")).json(&body)).await
    }

    /// The account a personal API token belongs to; `None` for no account.
    pub async fn verify_token(&self, token: &str) -> Result<Option<Account>, ApiError> {
        let body = serde_json::json!({ "token": token });
        self.account_answer(|c, base| c.post(format!("{base}/accounts/verify-token")).json(&body)).await
    }

    /// The account `name` as it is now (its `version` tells whether a
    /// session is still good); `None` when there is none.
    pub async fn account(&self, name: &str) -> Result<Option<Account>, ApiError> {
        let name = encode(name);
        self.account_answer(|c, base| c.get(format!("{base}/accounts/{name}"))).await
    }

    /// Grading's 401 and 404 say "no such account"; anything else is data
    /// or an error passed on.
    async fn account_answer(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Result<Option<Account>, ApiError> {
        let response = self.send(names::GRADING, build).await?;
        // Grading refusing the portal itself (a wrong cluster token, said
        // with WWW-Authenticate) is not a wrong password: say so, and fail closed.
        if response.status() == StatusCode::UNAUTHORIZED && response.headers().contains_key("www-authenticate") {
            tracing::error!("grading refuses the portal's cluster token; nobody can sign in");
            return Err(ApiError::unavailable(human(names::GRADING)));
        }
        if matches!(response.status(), StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND) {
            return Ok(None);
        }
        read(response, human(names::GRADING), ANSWER_LIMIT).await.map(Some)
    }

    pub async fn services(&self) -> Result<Vec<ServiceStatus>, ApiError> {
        let request = self.runtime.client().get(format!("{}/services", self.registry_url));
        let response = self
            .runtime
            .authorize(request, gradebook_runtime::credential::REGISTRY)
            .send()
            .await
            .map_err(|_| ApiError::unavailable("registry"))?;
        read(response, "registry", ANSWER_LIMIT).await.map_err(|e| original_cannot(e, NO_SERVICE_LIST))
    }

    /// A query of the log service, read up to [`LOG_ANSWER_LIMIT`]: its
    /// records can be large, and a thousand of them must not be held whole.
    pub async fn logs(&self, query: &str) -> Result<Vec<LogRecord>, ApiError> {
        let response = self.send(names::LOG, |c, base| c.get(format!("{base}/log?{query}"))).await?;
        read(response, human(names::LOG), LOG_ANSWER_LIMIT).await.map_err(|e| original_cannot(e, NO_LOG_QUERIES))
    }

    /// The log service's live tail, relayed as it comes. It ends when the log
    /// service goes quiet for longer than its keep-alives allow (a hung
    /// service would otherwise hold the connection forever) and when the
    /// portal shuts down (an open tail would otherwise keep it from exiting).
    pub async fn log_stream(&self, query: String) -> Result<LogStream, ApiError> {
        let client = self.stream_client.clone();
        let idle = self.stream_idle;
        let asked = self.send(names::LOG, move |_, base| client.get(format!("{base}/log/stream?{query}")));
        let upstream = tokio::select! {
            answer = tokio::time::timeout(idle, asked) => match answer {
                Ok(answer) => answer?,
                Err(_) => {
                    tracing::warn!(?idle, "the log service did not answer the live tail");
                    return Err(ApiError::unavailable(human(names::LOG)));
                }
            },
            () = self.shutdown.cancelled() => return Err(ApiError::unavailable(human(names::LOG))),
        };
        if !upstream.status().is_success() {
            let refused = read::<()>(upstream, human(names::LOG), ANSWER_LIMIT).await.err();
            return Err(original_cannot(
                refused.unwrap_or_else(|| ApiError::unavailable(human(names::LOG))),
                NO_LOG_QUERIES,
            ));
        }
        Ok(relay(upstream.bytes_stream(), idle, (*self.shutdown).clone()))
    }
}
