//! The registry's errors and their JSON answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gradebook_shared::ErrorBody;

use gradebook_runtime::http::error_response;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("no service is registered at {0:?}")]
    UnknownService(String),
    #[error("the registry holds as many {0} as it takes ({1})")]
    Full(&'static str, usize),
    #[error("{url} is registered as {name}: deregister it first")]
    TakenUrl { url: String, name: String },
    #[error(
        "{url} is not on the caller's own address ({peer}); the registry is started with --allow-foreign-urls for that"
    )]
    ForeignUrl { url: String, peer: std::net::IpAddr },
    #[error("{caller} may register and deregister only as {caller}, not as {name}")]
    NotYourName { caller: String, name: String },
    #[error("this registration is over: register again")]
    SessionEnded,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            RegistryError::NotYourName { .. } => {
                error_response(StatusCode::FORBIDDEN, ErrorBody { error: message, field: Some("ServiceName".into()) })
            }
            RegistryError::ForeignUrl { .. } => {
                error_response(StatusCode::FORBIDDEN, ErrorBody { error: message, field: Some("ServiceURL".into()) })
            }
            RegistryError::Invalid { field, .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorBody { error: message, field: Some(field) })
            }
            RegistryError::UnknownService(_) | RegistryError::SessionEnded => {
                error_response(StatusCode::NOT_FOUND, ErrorBody::new(message))
            }
            RegistryError::TakenUrl { .. } => {
                error_response(StatusCode::CONFLICT, ErrorBody { error: message, field: Some("ServiceURL".into()) })
            }
            RegistryError::Full(..) => error_response(StatusCode::TOO_MANY_REQUESTS, ErrorBody::new(message)),
        }
    }
}
