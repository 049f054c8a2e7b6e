//! The add-grade form posted without JavaScript: forwarded as JSON, then a
//! 303 back to the student page — carrying the service's message (and what
//! was typed) when it refused the grade, instead of hiding the error.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use gradebook_shared::grading::NewGrade;

use crate::backends::Backends;
use crate::encoding::encode;
use crate::error::ApiError;
use crate::ids::student_id;

pub async fn add_grade(
    State(b): State<Backends>,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(sid) = student_id(&id) else { return ApiError::new(404, "There is no such student.").into_response() };
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let added = match NewGrade::from_form(&field("Title"), &field("Type"), &field("Score")) {
        Ok(grade) => b.add_grade(sid, &grade).await,
        Err(refused) => Err(ApiError::invalid(refused)),
    };
    match added {
        Ok(_) => Redirect::to(&format!("/students/{sid}")).into_response(),
        Err(e) if e.status == 404 => e.into_response(),
        Err(e) => Redirect::to(&format!(
            "/students/{sid}?error={}&title={}&type={}&score={}",
            encode(&e.error),
            encode(&field("Title")),
            encode(&field("Type")),
            encode(&field("Score"))
        ))
        .into_response(),
    }
}
