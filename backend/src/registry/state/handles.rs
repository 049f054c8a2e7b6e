//! The handles on one registration's background tasks: what cancels them,
//! wakes its prober and deliverer, keeps its sends one at a time, and ends
//! its open sessions.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Handles on the tasks of one registration.
pub(super) struct Handles {
    pub cancel: CancellationToken,
    pub probe_now: Arc<Notify>,
    pub deliver: Arc<Notify>,
    /// Held for each send, so patches to one dependent never overlap.
    pub send_lock: Arc<tokio::sync::Mutex<()>>,
    /// Ends the registration's open sessions (a child of `cancel`): when it
    /// is removed or replaced, its service hears so at once and registers
    /// again, instead of holding a session to an entry that is gone.
    pub session_end: CancellationToken,
}

impl Handles {
    /// Fresh handles, all cancelled with `cancel`.
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            session_end: cancel.child_token(),
            cancel,
            probe_now: Arc::new(Notify::new()),
            deliver: Arc::new(Notify::new()),
            send_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Ends the open sessions; later ones get a fresh token.
    pub fn end_sessions(&mut self) {
        self.session_end.cancel();
        self.session_end = self.cancel.child_token();
    }
}
