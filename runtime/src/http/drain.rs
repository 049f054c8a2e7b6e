//! Graceful shutdown with a deadline.

use std::time::Duration;

/// Waits for a graceful shutdown (`served`), but once `shutdown` has begun
/// at most `drain`: a client that never finishes (or never reads) cannot
/// keep the process from exiting and its last flush from running.
pub async fn drained_within(
    served: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: &tokio_util::sync::CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = served => served,
        () = deadline => {
            tracing::warn!(?drain, "requests still open after the drain deadline; closing them");
            Ok(())
        }
    }
}
