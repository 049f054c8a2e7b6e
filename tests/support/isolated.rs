//! A server on its own thread and tokio runtime, so that a test can crash it
//! (every socket closed at once, nothing deregistered) like a killed process.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ports::Bind;

/// Something served on its own thread and tokio runtime.
pub(crate) struct Isolated {
    shutdown: CancellationToken,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Isolated {
    /// Runs `serve(listener, shutdown)` on a fresh runtime listening on `bind`.
    pub(crate) fn start<F, Fut>(bind: impl Into<Bind>, serve: F) -> (Self, std::net::SocketAddr)
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let shutdown = CancellationToken::new();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let bind = bind.into();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = bind.listen().await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::select! {
                    _ = serve(listener, token) => {}
                    _ = crash_rx => {}
                }
            });
            // Shutting the runtime down drops every task and closes every
            // socket, as the kernel does for a killed process; waiting for it
            // lets the address be bound again at once.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        let addr = addr_rx.recv().expect("the server thread binds its listener");
        (Self { shutdown, crash: Some(crash_tx), thread: Some(thread) }, addr)
    }

    pub(crate) fn crash(&mut self) {
        if let Some(c) = self.crash.take() {
            let _ = c.send(());
        }
        self.join();
    }

    pub(crate) fn stop(&mut self) {
        self.shutdown.cancel();
        self.join();
    }

    pub(crate) fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.crash();
    }
}
