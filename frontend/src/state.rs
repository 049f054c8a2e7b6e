//! The portal server's one application state: the service client, the
//! open/closed security, the freshness of what was kept, and the page
//! cache. Cheap to clone: every part is shared.

use crate::auth::Security;
use crate::backends::Backends;
use crate::freshness::Freshness;
use crate::page_cache::PageCache;

#[derive(Clone)]
pub struct AppState {
    /// The typed client of the services the portal discovers.
    pub services: Backends,
    /// Open or closed to people, with what sign-in needs.
    pub security: Security,
    /// Whether what was kept of grading's answers is still current.
    pub fresh: Freshness,
    /// Grading's answers and the pages made of them, kept.
    pub pages: PageCache,
}

impl AppState {
    /// The state of a portal calling `services`, open or closed to people as
    /// `security` says.
    pub fn new(services: Backends, security: Security) -> Self {
        let fresh = Freshness::default();
        let pages = PageCache::new(services.clone(), fresh.clone());
        Self { services, security, fresh, pages }
    }

    /// Follows grading's change feeds until the services' shutdown (see
    /// `freshness`): without it, every kept answer is revalidated on every
    /// request.
    pub fn follow_changes(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.fresh.clone().follow(self.services.runtime.clone(), self.services.shutdown()))
    }
}
