//! A probe through the shared client: for `https` heartbeats, and URLs the
//! plain path does not take.

use super::PROBE_BODY_LIMIT;

/// A probe through the shared client (which follows no redirects and
/// carries no credential), with the registry's probe proof.
pub(super) async fn probe(client: &reqwest::Client, url: &reqwest::Url, proof: Option<&str>) -> Result<(), String> {
    let describe = |e: reqwest::Error| gradebook_runtime::http::describe(&e);
    let mut request = client.get(url.clone());
    if let Some(proof) = proof {
        request = request.header(gradebook_runtime::credential::PROBE_HEADER, proof);
    }
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status();
    // Reading the (tiny) body lets the connection go back to the pool; a
    // huge or endless one is cut off (and its connection dropped).
    let mut read = 0;
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        read += chunk.len();
        if read > PROBE_BODY_LIMIT {
            break;
        }
    }
    if status.is_success() { Ok(()) } else { Err(format!("heartbeat answered {status}")) }
}
