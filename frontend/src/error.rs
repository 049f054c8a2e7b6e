//! The portal's one error type: what a failed call or a refused request
//! looks like to pages and to API clients (a status, a readable message, and
//! the offending field of a 400). Shared by every build; the server turns it
//! into a JSON answer.

use gradebook_shared::ErrorBody;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub status: u16,
    pub error: String,
    #[serde(default)]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self { status, error: error.into(), field: None }
    }

    pub fn unavailable(what: &str) -> Self {
        Self::new(503, format!("The {what} is unavailable right now. Please try again in a moment."))
    }

    /// A request refused before it left the portal, by the same rules the
    /// service would apply.
    pub fn invalid(body: ErrorBody) -> Self {
        Self { status: 400, error: body.error, field: body.field }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let status = axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
        (status, axum::Json(ErrorBody { error: self.error, field: self.field })).into_response()
    }
}
