//! A read's answer as kept in memory: its serialized body and its `ETag`
//! (derived from the content, equal on every instance), answered `200` with
//! the body, or a bodiless `304` when the request's `If-None-Match` matches.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use headers::{ETag, HeaderMapExt, IfNoneMatch};

/// A read's serialized body and its validator.
#[derive(Clone)]
pub struct Answer {
    body: Bytes,
    etag: ETag,
}

impl Answer {
    pub fn new<T: serde::Serialize>(value: &T) -> Self {
        // Our own types always serialize.
        let body = Bytes::from(serde_json::to_vec(value).expect("wire types serialize"));
        // FNV-1a: stable across builds and machines, so every instance gives
        // the same content the same tag.
        let hash =
            body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let etag = format!("\"{hash:016x}\"").parse().expect("a quoted hex string is an entity tag");
        Self { body, etag }
    }

    /// The answer to a request with `request`'s headers.
    pub fn respond(self, request: &HeaderMap) -> Response {
        let matches = request.typed_get::<IfNoneMatch>().is_some_and(|tags| !tags.precondition_passes(&self.etag));
        let mut response = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.body).into_response()
        };
        response.headers_mut().typed_insert(self.etag);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(if_none_match: &[&str]) -> (StatusCode, Option<HeaderValue>) {
        let mut request = HeaderMap::new();
        for tag in if_none_match {
            request.append(header::IF_NONE_MATCH, HeaderValue::from_str(tag).expect("a valid header"));
        }
        let response = Answer::new(&[1, 2, 3]).respond(&request);
        (response.status(), response.headers().get(header::ETAG).cloned())
    }

    #[test]
    fn a_matching_tag_weak_or_strong_or_any_gets_a_bodiless_304_with_the_tag() {
        let (status, tag) = answered(&[]);
        assert_eq!(status, StatusCode::OK);
        let tag = tag.expect("an ETag").to_str().expect("ASCII").to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18, "{tag}");
        for matching in [tag.clone(), format!("W/{tag}"), "*".to_owned(), format!("\"other\", {tag}")] {
            let (status, again) = answered(&[&matching]);
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{matching}");
            assert_eq!(again.as_ref().and_then(|v| v.to_str().ok()), Some(tag.as_str()));
        }
        assert_eq!(answered(&["\"other\"", &tag]).0, StatusCode::NOT_MODIFIED, "in a second header");
        assert_eq!(answered(&["\"other\""]).0, StatusCode::OK);
    }
}
