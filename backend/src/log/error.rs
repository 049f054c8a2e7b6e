//! The log service's one error type, answered as the one JSON error shape.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gradebook_runtime::http::error_response;
use gradebook_shared::ErrorBody;

/// Why a request to the log service failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    BadField { field: &'static str, message: String },
    #[error("{message}")]
    TooLarge { field: &'static str, message: String },
    #[error("POST /log takes text/plain or application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Busy(String),
    #[error("the log could not be written: {0}")]
    Storage(#[from] std::io::Error),
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            LogError::BadRequest(_) => error_response(StatusCode::BAD_REQUEST, ErrorBody::new(message)),
            LogError::BadField { field, .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorBody { error: message, field: Some(field.into()) })
            }
            LogError::TooLarge { field, .. } => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, ErrorBody { error: message, field: Some(field.into()) })
            }
            LogError::UnsupportedMediaType(_) => {
                error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorBody::new(message))
            }
            LogError::Busy(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(message)),
            LogError::Storage(e) => {
                tracing::error!(error = %e, "log write failed");
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(message))
            }
        }
    }
}
