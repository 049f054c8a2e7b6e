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
    #[error("missing or wrong bearer token")]
    Unauthorized,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            RegistryError::Invalid { field, .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorBody { error: message, field: Some(field) })
            }
            RegistryError::UnknownService(_) => error_response(StatusCode::NOT_FOUND, ErrorBody::new(message)),
            RegistryError::Unauthorized => {
                let mut r = error_response(StatusCode::UNAUTHORIZED, ErrorBody::new(message));
                r.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
                r
            }
        }
    }
}
