//! The first account: the teacher `admin`, created with a random password
//! when the database holds no account at all.

use super::secrets::{hash, random_password};
use super::store::Store;
use crate::db::Db;

/// When the database at `database_url` holds no account at all, creates the
/// teacher `admin` with a random password and returns that password (for
/// `gradebook up` to print once); otherwise `None`. Safe to race: of
/// several callers at most one creates it.
pub async fn ensure_admin(database_url: &str) -> anyhow::Result<Option<String>> {
    let db =
        Db::connect(database_url).await.map_err(|e| anyhow::anyhow!("cannot open the database {database_url}: {e}"))?;
    let created = ensure_admin_in(&Store::new(&db)).await;
    db.close().await;
    created
}

/// [`ensure_admin`] on an open store.
pub async fn ensure_admin_in(store: &Store) -> anyhow::Result<Option<String>> {
    if store.count().await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let created = store.add_first("admin", &hash(password.clone()).await?).await?;
    Ok(created.then_some(password))
}
