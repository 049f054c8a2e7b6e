//! Serving an app on the runtime: registered while it runs, deregistered
//! before it drains, its logs shipped to the end.

use std::sync::Arc;

use axum::Router;
use gradebook_shared::names;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::Runtime;
use crate::logship;

/// Serves `app` (plus the runtime's routes) on `listener`, registered with
/// the registry, until `shutdown`: then deregisters, stops the background
/// work and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Closed by default: with a credential, nothing but liveness answers
    // callers its policy does not name. A people-facing app (the portal)
    // checks its own callers; its patch endpoint still takes only the registry's.
    let (credential, policy) = (runtime.inner.credential.clone(), runtime.inner.spec.policy);
    let app = if runtime.inner.spec.people_facing {
        let runtime_routes =
            crate::http::require_credential(runtime.routes(), credential.clone(), policy, crate::http::OPEN_PATHS);
        crate::http::guard_metrics(runtime_routes.merge(app), credential)
    } else {
        crate::http::require_credential(runtime.routes().merge(app), credential, policy, crate::http::OPEN_PATHS)
    };
    // The listener is already bound, so registering now cannot send anyone
    // to a service that does not answer yet.
    let background = shutdown.child_token();
    let registration = tokio::spawn(runtime.clone().stay_registered(background.clone()));
    // Stopped last, so what happens during shutdown is shipped too.
    let stop_shipping = CancellationToken::new();
    let shipper = runtime.inner.spec.logs.clone().map(|buffer| {
        let rt = runtime.clone();
        let destination: logship::Destination = Arc::new(move || rt.providers().shuffled(names::LOG));
        tokio::spawn(buffer.ship(destination, runtime.client_to(names::LOG), stop_shipping.clone()))
    });
    tracing::info!(service = %runtime.name(), url = %runtime.url(), "listening");
    let rt = runtime.clone();
    let stop = shutdown.clone();
    let graceful = async move {
        shutdown.cancelled().await;
        // Registration must be over before we deregister, or it could land
        // after and bring us back. Then dependents stop sending us work
        // before we stop taking it.
        background.cancel();
        let _ = registration.await;
        rt.deregister().await;
    };
    // The portal's handlers ask who connected (it limits sign-ins per
    // address); the services' never do, and spare every request carrying it.
    let drain = runtime.inner.spec.drain_timeout;
    // Answers go out whole in one write; what writes small lines on a kept
    // connection (sessions, grading's change feed) must not wait for the
    // other side's ACK of the previous one (Nagle).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = if runtime.inner.spec.people_facing {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(graceful);
        crate::http::drained_within(served.into_future(), &stop, drain).await
    } else {
        let served = axum::serve(listener, app).with_graceful_shutdown(graceful);
        crate::http::drained_within(served.into_future(), &stop, drain).await
    };
    stop_shipping.cancel();
    if let Some(shipper) = shipper {
        let _ = shipper.await;
    }
    served
}
