//! `gradebook accounts ...`: add, change the password of, remove and list
//! accounts, and issue personal API tokens, on grading's database.
//!
//! `add` and `passwd` read the password from standard input when it is not
//! a terminal (one line; a final newline is dropped), for scripts; on a
//! terminal they generate a strong random one and print it, once.

use std::io::{IsTerminal, Read};

use clap::{Args, Subcommand};

use super::account::Role;
use super::secrets::{hash, new_token, random_password};
use super::store::Store;
use super::store::StoreError;
use super::validate::{MAX_PASSWORD, validate_name, validate_password};

#[derive(Debug, Clone, Args)]
pub struct AccountsArgs {
    /// Grading's database: sqlite://PATH or postgres://...
    #[arg(long, env = "GRADEBOOK_DATABASE_URL", default_value = "sqlite://data/grading.db", global = true)]
    pub database_url: String,
    #[command(subcommand)]
    pub command: AccountsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AccountsCommand {
    /// Add an account. The password comes from standard input when that is
    /// not a terminal; otherwise a random one is printed.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        /// The student record a student account is linked to.
        #[arg(long = "student", value_name = "ID")]
        student: Option<i64>,
    },
    /// Change an account's password (standard input, or a random one on a
    /// terminal). Its portal sessions stop working.
    Passwd { name: String },
    /// Remove an account. Its portal sessions and token stop working.
    Remove { name: String },
    /// List the accounts.
    List,
    /// Print a new personal API token for the account, once; its previous
    /// token stops working.
    Token { name: String },
}

/// Runs one `gradebook accounts` command.
pub async fn run(args: AccountsArgs) -> anyhow::Result<()> {
    let db = crate::db::Db::connect(&args.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", args.database_url))?;
    let result = execute(&Store::new(&db), args.command).await;
    db.close().await;
    result
}

async fn execute(store: &Store, command: AccountsCommand) -> anyhow::Result<()> {
    match command {
        AccountsCommand::Add { name, role, student } => {
            valid_name(&name)?;
            if (role == Role::Student) != student.is_some() {
                return Err(StoreError::StudentMismatch.into());
            }
            let (password, generated) = password()?;
            let account = store.add(&name, role, student, &hash(password.clone()).await?).await?;
            match account.student {
                Some(id) => println!("added student account {name} (student {id})"),
                None => println!("added teacher account {name}"),
            }
            if generated {
                print_generated(&name, &password);
            }
        }
        AccountsCommand::Passwd { name } => {
            valid_name(&name)?;
            if store.find(&name).await?.is_none() {
                return Err(StoreError::NoAccount(name).into());
            }
            let (password, generated) = password()?;
            store.set_password(&name, &hash(password.clone()).await?).await?;
            println!("changed the password of {name}; its sessions are revoked");
            if generated {
                print_generated(&name, &password);
            }
        }
        AccountsCommand::Remove { name } => {
            store.remove(&name).await?;
            println!("removed account {name}");
        }
        AccountsCommand::List => {
            let accounts = store.list().await?;
            let width = accounts.iter().map(|s| s.account.name.len()).max().unwrap_or(0).max(4);
            println!("{:width$}  {:7}  {:7}  {:5}  CREATED", "NAME", "ROLE", "STUDENT", "TOKEN");
            for s in accounts {
                let student = s.account.student.map_or_else(|| "-".to_owned(), |id| id.to_string());
                let token = if s.token_hash.is_some() { "yes" } else { "no" };
                println!(
                    "{:width$}  {:7}  {:7}  {:5}  {}",
                    s.account.name, s.account.role, student, token, s.created_at
                );
            }
        }
        AccountsCommand::Token { name } => {
            valid_name(&name)?;
            let token = new_token(&name);
            store.set_token(&name, &hash(token.clone()).await?).await?;
            eprintln!("a new API token for {name} (shown once; the previous one no longer works):");
            println!("{token}");
        }
    }
    Ok(())
}

fn valid_name(name: &str) -> anyhow::Result<()> {
    validate_name(name).map_err(|e| anyhow::anyhow!("{}", e.error))
}

fn print_generated(name: &str, password: &str) {
    println!("password: {password}");
    eprintln!("(shown once; change it with `gradebook accounts passwd {name}`)");
}

/// The password to set and whether it was generated: read from standard
/// input when that is not a terminal, generated otherwise.
fn password() -> anyhow::Result<(String, bool)> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok((random_password(), true));
    }
    Ok((read_password(stdin.lock())?, false))
}

/// One password from `input`: everything up to the end (at most
/// [`MAX_PASSWORD`] characters), without one final line ending.
fn read_password(input: impl Read) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    // A character is at most 4 bytes; read one more to tell "too long".
    let limit = u64::try_from(MAX_PASSWORD * 4 + 3).unwrap_or(u64::MAX);
    input.take(limit).read_to_end(&mut bytes)?;
    let text = String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the password on standard input is not UTF-8"))?;
    let password = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if password.is_empty() {
        anyhow::bail!("no password on standard input (give one line, or run on a terminal to generate one)");
    }
    if password.contains(['\n', '\r']) {
        anyhow::bail!("the password on standard input must be one line");
    }
    validate_password(password).map_err(|e| anyhow::anyhow!("{}", e.error))?;
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_read_as_one_line_without_its_line_ending() {
        assert_eq!(read_password(&b"s3cret-pass\n"[..]).unwrap(), "s3cret-pass");
        assert_eq!(read_password(&b"s3cret-pass\r\n"[..]).unwrap(), "s3cret-pass");
        assert_eq!(read_password(&b"s3cret-pass"[..]).unwrap(), "s3cret-pass");
        assert_eq!(read_password(&b"  spaces kept  \n"[..]).unwrap(), "  spaces kept  ");
    }

    #[test]
    fn empty_short_multi_line_or_oversized_input_is_refused() {
        for bad in [&b""[..], b"\n", b"short\n", b"first-line\nsecond-line\n", b"\xff\xfe not utf-8"] {
            assert!(read_password(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(read_password("p".repeat(MAX_PASSWORD).as_bytes()).is_ok());
        assert!(read_password("p".repeat(MAX_PASSWORD + 1).as_bytes()).is_err());
        assert!(read_password("p".repeat(100_000).as_bytes()).is_err());
    }

    #[test]
    fn the_accounts_commands_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Top {
            #[command(flatten)]
            accounts: AccountsArgs,
        }
        let top = Top::try_parse_from([
            "x",
            "add",
            "ada",
            "--role",
            "student",
            "--student",
            "3",
            "--database-url",
            "sqlite://x.db",
        ])
        .unwrap();
        assert_eq!(top.accounts.database_url, "sqlite://x.db");
        assert!(matches!(
            top.accounts.command,
            AccountsCommand::Add { ref name, role: Role::Student, student: Some(3) } if name == "ada"
        ));
        assert!(Top::try_parse_from(["x", "add", "ada", "--role", "admin"]).is_err());
        assert!(matches!(Top::try_parse_from(["x", "list"]).unwrap().accounts.command, AccountsCommand::List));
    }
}
