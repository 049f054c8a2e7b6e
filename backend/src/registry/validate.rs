//! What the registry accepts as a registration: names, and absolute http(s)
//! URLs whose heartbeat and update URLs stay on the service's own host and
//! port (so a registration cannot aim the registry's probes elsewhere).

use gradebook_shared::registry::Registration;

use super::error::RegistryError;

pub(super) fn registration(reg: &Registration, allow_foreign: bool) -> Result<(), RegistryError> {
    let bad = |field: &str, msg: String| RegistryError::Invalid { field: field.to_owned(), message: msg };
    let printable = |field: &str, text: &str| {
        gradebook_shared::printable(field, text)
            .map_err(|e| RegistryError::Invalid { field: field.to_owned(), message: e.error })
    };
    printable("ServiceName", &reg.service_name)?;
    for name in &reg.required_services {
        printable("RequiredServices", name)?;
    }
    for (field, url) in [
        ("ServiceURL", &reg.service_url),
        ("HeartbeatURL", &reg.heartbeat_url),
        ("ServiceUpdateURL", &reg.service_update_url),
    ] {
        printable(field, url)?;
    }
    let name = reg.service_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(bad("ServiceName", "ServiceName must be 1 to 200 characters".into()));
    }
    if reg.required_services.iter().any(|r| r.trim().is_empty()) {
        return Err(bad("RequiredServices", "RequiredServices must not contain empty names".into()));
    }
    let service = parse_http_url("ServiceURL", &reg.service_url)?;
    let check_same_host = |field: &str, value: &str| -> Result<(), RegistryError> {
        let u = parse_http_url(field, value)?;
        if !allow_foreign
            && (u.host_str(), u.port_or_known_default()) != (service.host_str(), service.port_or_known_default())
        {
            return Err(bad(field, format!("{field} must be on the same host and port as ServiceURL")));
        }
        Ok(())
    };
    check_same_host("HeartbeatURL", &reg.heartbeat_url)?;
    if !reg.service_update_url.is_empty() {
        check_same_host("ServiceUpdateURL", &reg.service_update_url)?;
    } else if !reg.required_services.is_empty() {
        return Err(bad("ServiceUpdateURL", "ServiceUpdateURL is required when RequiredServices is not empty".into()));
    }
    Ok(())
}

/// Whether two service URLs name the same service: compared after parsing
/// (scheme and host in lower case, default port dropped, `.` and `..`
/// resolved) and without a trailing slash, so that a second spelling of a
/// registered URL cannot take it over under another name.
pub(super) fn same_url(a: &str, b: &str) -> bool {
    match (normalized(a), normalized(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

fn normalized(value: &str) -> Option<String> {
    let u = url::Url::parse(value).ok()?;
    Some(u.as_str().trim_end_matches('/').to_owned())
}

fn parse_http_url(field: &str, value: &str) -> Result<url::Url, RegistryError> {
    let invalid = |message: String| RegistryError::Invalid { field: field.to_owned(), message };
    let u = url::Url::parse(value).map_err(|e| invalid(format!("{field} is not an absolute URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(invalid(format!("{field} must be an http or https URL with a host")));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::same_url;

    #[test]
    fn spellings_of_one_url_are_the_same_url() {
        let grading = "http://127.0.0.1:16000";
        for other in [
            "http://127.0.0.1:16000/",
            "HTTP://127.0.0.1:16000",
            "http://127.0.0.1:16000/a/..",
            "http://127.0.0.1:16000//",
        ] {
            assert!(same_url(grading, other), "{other}");
        }
        assert!(same_url("http://Example.com:80/x/", "http://example.com/x"));
    }

    #[test]
    fn different_addresses_and_paths_are_different_urls() {
        assert!(!same_url("http://127.0.0.1:16000", "http://127.0.0.1:16001"));
        assert!(!same_url("http://127.0.0.1:16000/a", "http://127.0.0.1:16000/b"));
        assert!(!same_url("http://127.0.0.1:16000", "https://127.0.0.1:16000"));
    }
}
