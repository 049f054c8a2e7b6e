//! The grading service's one error type, and the JSON error each variant
//! answers.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gradebook_runtime::http::error_response;
use gradebook_shared::ErrorBody;
use gradebook_shared::grading::changes;

#[derive(Debug, thiserror::Error)]
pub enum GradingError {
    #[error("no student with ID {0}")]
    NoStudent(i64),
    #[error("student {0} has no grade with ID {1}")]
    NoGrade(i64, i64),
    #[error("{}", .0.error)]
    Invalid(ErrorBody),
    #[error("the database is unavailable")]
    Database(#[from] sqlx::Error),
    /// The commit of a group of grades failed (logged once, by the writer).
    #[error("the database is unavailable")]
    Group(Arc<sqlx::Error>),
    #[error("GET /changes is a feed: ask for it with `Upgrade: {}`", changes::PROTOCOL)]
    NotUpgraded,
    #[error("{0}")]
    FeedRefused(&'static str),
}

impl IntoResponse for GradingError {
    fn into_response(self) -> Response {
        match self {
            GradingError::NoStudent(_) | GradingError::NoGrade(..) => {
                error_response(StatusCode::NOT_FOUND, ErrorBody::new(self.to_string()))
            }
            GradingError::Invalid(body) => error_response(StatusCode::BAD_REQUEST, body),
            GradingError::Database(e) => {
                tracing::error!(error = %e, "database error");
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new("the database is unavailable"))
            }
            GradingError::Group(_) => {
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new("the database is unavailable"))
            }
            GradingError::NotUpgraded => error_response(StatusCode::UPGRADE_REQUIRED, ErrorBody::new(self.to_string())),
            GradingError::FeedRefused(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(why)),
        }
    }
}
