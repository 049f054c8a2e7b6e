//! Sessions: what the private session cookie holds (encrypted and
//! authenticated by `axum-extra`/`cookie`, no crypto here), how the portal
//! sets its cookies, and who a session says is asking. A session holds the
//! account's name and `version`: grading moves the version on with every
//! password change (and a removed account has none), so a session is
//! dropped within [`ACCOUNT_TTL`](super::ACCOUNT_TTL) of either. It also
//! holds the time it was last used, for the idle timeout, and the CSRF
//! token its forms carry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, PrivateCookieJar, SameSite};
use serde::{Deserialize, Serialize};

use super::request::over_https;
use super::setting::Security;
use crate::backends::Backends;
use crate::people::{Account, Viewer};

/// The session: name, account version, last use, CSRF token (encrypted).
pub const SESSION_COOKIE: &str = "gradebook_session";
/// The sign-in form's CSRF token, before there is a session (encrypted).
pub const SIGNIN_COOKIE: &str = "gradebook_signin";
/// A session's "last used" is rewritten at most this often (a `Set-Cookie`
/// on every answer would be noise).
const REFRESH_AFTER: Duration = Duration::from_secs(15);
/// The longest a session lasts, used or not.
const MAX_SESSION: Duration = Duration::from_secs(12 * 60 * 60);

/// What the session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    name: String,
    version: i64,
    /// Last used, in milliseconds since the Unix epoch.
    seen: u64,
    /// Signed in, likewise: however busy, a session ends after
    /// [`MAX_SESSION`], so a copied cookie cannot be kept alive for ever.
    #[serde(default)]
    since: u64,
    csrf: String,
}

impl Session {
    /// A new session for `account`, signed in now, with a fresh CSRF token.
    pub fn start(account: &Account) -> Self {
        Self {
            name: account.name.clone(),
            version: account.version,
            seen: now_ms(),
            since: now_ms(),
            csrf: random_token(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits, hex: a CSRF token.
pub fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A cookie as the portal sets them: HttpOnly, SameSite=Lax, for the whole
/// site, Secure when the browser reached us over https.
pub fn cookie(name: &'static str, value: String, headers: &HeaderMap) -> Cookie<'static> {
    Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Lax).secure(over_https(headers)).build()
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/").build()
}

/// Who the session cookie in `jar` says is asking, if anyone, and the
/// cookies to set on the answer (a renewed session, or a dropped one); the
/// error answer when grading cannot say whether the session still holds.
pub async fn session_viewer(
    security: &Security,
    backends: &Backends,
    jar: &PrivateCookieJar,
    headers: &HeaderMap,
) -> Result<(Option<Viewer>, Option<PrivateCookieJar>), Response> {
    let dropped = || Some(jar.clone().remove(removal(SESSION_COOKIE)));
    let session = jar.get(SESSION_COOKIE).and_then(|c| serde_json::from_str::<Session>(c.value()).ok());
    let Some(session) = session else {
        // A cookie that no longer decrypts or reads (another key, an old
        // shape) is dropped rather than sent again and again.
        let sent = CookieJar::from_headers(headers).get(SESSION_COOKIE).is_some();
        return Ok((None, if sent { dropped() } else { None }));
    };
    if now_ms().saturating_sub(session.seen) > security.idle().as_millis() as u64
        || now_ms().saturating_sub(session.since) > MAX_SESSION.as_millis() as u64
    {
        return Ok((None, dropped()));
    }
    match security.answers().account(backends, &session.name).await {
        Err(e) => Err(e.into_response()),
        Ok(Some(account)) if account.version == session.version => {
            let mut set_cookies = None;
            if now_ms().saturating_sub(session.seen) > REFRESH_AFTER.as_millis() as u64 {
                let renewed = Session { seen: now_ms(), ..session.clone() };
                if let Ok(value) = serde_json::to_string(&renewed) {
                    set_cookies = Some(jar.clone().add(cookie(SESSION_COOKIE, value, headers)));
                }
            }
            Ok((Some(Viewer::Person { account, csrf: session.csrf, bearer: false }), set_cookies))
        }
        // The password changed, or the account is gone.
        Ok(_) => Ok((None, dropped())),
    }
}
