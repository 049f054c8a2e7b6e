//! The cluster token `up` hands its children: the one given, none when the
//! cluster runs open, or the one kept in the data directory (made on first
//! start, readable by its owner only).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use super::args::UpArgs;

/// Where `up` keeps the cluster token it made, in the data directory.
pub const TOKEN_FILE: &str = "cluster-token";

/// The cluster's token: the one given (`--token` or the environment), none
/// with `--open`, or else the one in `<data dir>/cluster-token`, made on
/// first start (random, file mode 0600). Closed is the default.
pub fn cluster_token(args: &UpArgs) -> anyhow::Result<Option<String>> {
    if let Some(token) = &args.common.token {
        return Ok(Some(token.clone()));
    }
    if args.open {
        eprintln!(
            "warning: running OPEN (--open): no token, so anyone who can reach these ports can register \
             services, read and change grades and write logs"
        );
        return Ok(None);
    }
    let path = args.data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(Some(token.trim().to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot read the cluster token in {}: {e}", path.display()),
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    let token: String =
        rand::Rng::sample_iter(rand::rng(), &rand::distr::Alphanumeric).take(43).map(char::from).collect();
    write_private(&path, &token).with_context(|| format!("cannot keep the cluster token in {}", path.display()))?;
    println!("A new cluster token is in {} (mode 0600): services need it to join.", path.display());
    Ok(Some(token))
}

/// Writes a new file only its owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
