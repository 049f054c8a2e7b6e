//! When a started part is ready: its health check answers 2xx and, when it
//! registers, the registry hands it out.

use std::time::Duration;

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use super::parts::Part;

async fn is_ready(client: &reqwest::Client, part: &Part) -> bool {
    let healthy = client.get(&part.ready_url).send().await.is_ok_and(|r| r.status().is_success());
    let Some((name, url)) = &part.registered_as else { return healthy };
    let listed = async {
        let r = client.get(format!("{}/services/{name}", part.registry_url)).send().await.ok()?;
        r.json::<Vec<gradebook_shared::registry::PatchEntry>>().await.ok()
    };
    healthy && listed.await.is_some_and(|providers| providers.iter().any(|p| &p.url == url))
}

/// Waits until `part` is ready, for 60 s at most.
pub(super) async fn wait_ready(
    client: &reqwest::Client,
    part: &Part,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if is_ready(client, part).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{} did not become ready at {} within 60 s", part.name, part.ready_url);
        }
        tokio::select! {
            _ = shutdown.cancelled() => bail!("interrupted while starting {}", part.name),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
