//! The processes of the system, in start order: for each, what it runs, what
//! it is handed through the environment, and how `up` knows it is ready.

use std::net::SocketAddr;

use anyhow::bail;
use gradebook_runtime::cli::{ServiceArgs, defaults_of};
use gradebook_runtime::credential::{Credential, REGISTRY};
use gradebook_shared::names;

use super::args::UpArgs;
use super::child::{Child, PortalLaunch};
use crate::grading::args::GradingArgs;
use crate::log::args::LogArgs;
use crate::registry::args::RegistryArgs;

/// One process of the system.
pub struct Part {
    pub name: String,
    /// What it runs, with its typed arguments.
    pub child: Child,
    /// Handed over through the environment, never on the command line.
    pub env: Vec<(String, String)>,
    /// Answers 2xx once the part is ready.
    pub ready_url: String,
    /// The name and URL it registers under, if it does: it is ready once the
    /// registry hands it out.
    pub registered_as: Option<(String, String)>,
    pub registry_url: String,
}

/// The environment variable a child's credential travels in.
pub const CREDENTIAL_ENV: &str = "GRADEBOOK_CREDENTIAL";

/// The services each part may call (the registry besides, for every one but
/// the registry itself).
fn calls_of(service: &str) -> &'static [&'static str] {
    match service {
        names::PORTAL => &[names::GRADING, names::LOG],
        names::LOG => &[],
        _ => &[names::LOG],
    }
}

/// The processes of the system, in start order.
pub fn parts(args: &UpArgs, token: Option<&str>) -> anyhow::Result<Vec<Part>> {
    let registry_url = format!("http://{}", args.registry_addr);
    let database_url = args.database_url();
    if args.grading > 1 && !database_url.starts_with("postgres") {
        bail!(
            "--grading {} needs a shared database: with SQLite every instance would keep its own grades. \
             Pass --database-url postgres://USER@HOST/DB (or run one instance).",
            args.grading
        );
    }
    let common = args.common.clone();
    let service = ServiceArgs { registry_url: registry_url.clone(), common: common.clone(), ..defaults_of() };
    // Each child gets only its own credential, never the master secret:
    // what it may call, and the key the registry's patches to it carry.
    let credential = |service: &str, calls: &[&str]| -> Vec<(String, String)> {
        token.iter().map(|k| (CREDENTIAL_ENV.to_owned(), Credential::derive(k, service, calls).render())).collect()
    };
    let scrape: Vec<(String, String)> =
        args.common.metrics_token.iter().map(|t| ("GRADEBOOK_METRICS_TOKEN".to_owned(), t.clone())).collect();
    let part = |name: String, child: Child, addr: SocketAddr, service: Option<&str>| Part {
        env: [credential(service.unwrap_or(REGISTRY), calls_of(service.unwrap_or(REGISTRY))), scrape.clone()].concat(),
        name,
        child,
        ready_url: format!("http://{addr}/healthz"),
        registered_as: service.map(|s| (s.to_owned(), format!("http://{addr}"))),
        registry_url: registry_url.clone(),
    };
    let mut parts = vec![
        part(
            "registry".into(),
            Child::Registry(RegistryArgs { addr: args.registry_addr, common: common.clone(), ..defaults_of() }),
            args.registry_addr,
            None,
        ),
        part(
            "log".into(),
            Child::Log(LogArgs {
                addr: args.log_addr,
                dir: args.data_dir.join("log"),
                service: service.clone(),
                ..defaults_of()
            }),
            args.log_addr,
            Some(names::LOG),
        ),
    ];
    for i in 0..args.grading {
        let mut addr = args.grading_addr;
        addr.set_port(addr.port() + i);
        let name = if args.grading == 1 { "grading".to_owned() } else { format!("grading{}", i + 1) };
        let child = Child::Grading(GradingArgs { addr, database_url: database_url.clone(), service: service.clone() });
        parts.push(part(name, child, addr, Some(names::GRADING)));
    }
    if !args.no_portal {
        let child = Child::Portal(PortalLaunch { addr: args.portal_addr, service: service.clone() });
        let mut portal = part("portal".into(), child, args.portal_addr, Some(names::PORTAL));
        portal.env.push(("LEPTOS_SITE_ROOT".into(), args.site_root.display().to_string()));
        parts.push(portal);
    }
    Ok(parts)
}
