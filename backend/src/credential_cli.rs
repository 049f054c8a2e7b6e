//! `gradebook credential NAME --calls X,Y`: prints the credential of one
//! service run by hand, derived from the master secret, so that the service
//! holds its own keys and never K.

use clap::Args;

/// The service to make a credential for.
#[derive(Debug, Clone, Args)]
pub struct CredentialArgs {
    /// The service name it registers under (e.g. GradingService).
    pub name: String,
    /// The services it may call besides the registry (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub calls: Vec<String>,
    #[command(flatten)]
    pub common: gradebook_runtime::cli::Common,
}

/// Prints the credential for `GRADEBOOK_CREDENTIAL`; needs K (`--token`).
pub fn run(args: &CredentialArgs) -> anyhow::Result<()> {
    let Some(k) = &args.common.token else {
        anyhow::bail!("a credential is derived from the master secret: pass --token (or GRADEBOOK_TOKEN)");
    };
    let calls: Vec<&str> = args.calls.iter().map(String::as_str).collect();
    println!("{}", gradebook_runtime::credential::Credential::derive(k, &args.name, &calls).render());
    Ok(())
}
