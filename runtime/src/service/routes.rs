//! The routes the runtime adds to every service: the heartbeat the
//! registry probes and the endpoint it pushes patches to.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use gradebook_shared::registry::PushedPatch;

use super::Runtime;
use crate::http::ApiJson;

/// Where the registry sends a service its patches.
pub const UPDATE_PATH: &str = "/registry/update";
/// What the registry probes.
pub const HEARTBEAT_PATH: &str = "/heartbeat";

impl Runtime {
    /// The routes the runtime adds to every service.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(HEARTBEAT_PATH, get(heartbeat))
            .route(UPDATE_PATH, post(receive_patch))
            .with_state(self.clone())
    }
}

/// Open to anyone; but only a probe with the registry's fresh proof counts
/// as the registry still knowing us, so a stranger's polling cannot keep a
/// forgotten service from registering again. The proof is no credential:
/// it opens nothing, here or elsewhere.
async fn heartbeat(State(rt): State<Runtime>, headers: axum::http::HeaderMap) -> &'static str {
    let proven = |c: &crate::credential::Credential| {
        let proof = headers.get(crate::credential::PROBE_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        c.accepts_probe(proof, crate::credential::unix_now())
    };
    if rt.inner.credential.as_ref().is_none_or(proven) {
        rt.heard();
    }
    "ok"
}

async fn receive_patch(State(rt): State<Runtime>, ApiJson(pushed): ApiJson<PushedPatch>) -> axum::response::Response {
    if pushed.seq.is_some_and(|seq| !crate::providers::seq_is_plausible(seq)) {
        return crate::http::error_response(
            axum::http::StatusCode::BAD_REQUEST,
            gradebook_shared::ErrorBody {
                error: "Seq is past any number a registry could have sent".into(),
                field: Some("Seq".into()),
            },
        );
    }
    let patch = &pushed.patch;
    tracing::debug!(added = ?patch.added, removed = ?patch.removed, seq = ?pushed.seq, "patch received");
    let applied = rt.inner.providers.apply_pushed(&pushed);
    axum::response::IntoResponse::into_response(Json(serde_json::json!({ "applied": applied })))
}
