//! `strata key list | add | remove | passwd`: the key slots of an encrypted archive.
//! Each slot wraps the archive's one master key under one password, so several people
//! or machines can hold their own password, and a password can be changed or revoked
//! without re-encrypting anything.

use super::password::{self, Password, PasswordError, Purpose};
use super::{CmdResult, EXIT_OK, Failure};
use std::path::{Path, PathBuf};

/// Manage the passwords (key slots) of an encrypted archive
///
/// Every command first opens the archive with a current password (--password-file,
/// --password-command, STRATA_PASSWORD_FILE, STRATA_PASSWORD_COMMAND, STRATA_PASSWORD,
/// or the terminal). A new password comes from --new-password-file FILE,
/// STRATA_NEW_PASSWORD_FILE, or is asked twice on the terminal.
///
/// Exit codes: 0 done, 1 error, 2 usage, 6 wrong or missing password.
#[derive(clap::Subcommand)]
pub enum Command {
    /// List the key slots (`*` marks the one your password opened)
    List(ArchiveArg),
    /// Add a key slot for a new password; prints its id
    Add(NewArgs),
    /// Remove a key slot by id (the last one is refused: the archive would be lost)
    Remove(RemoveArgs),
    /// Change the password of the slot your current password opens
    Passwd(NewArgs),
}

#[derive(clap::Args)]
pub struct ArchiveArg {
    /// The archive; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The archive; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// Read the new password from FILE (one trailing newline is ignored). Also
    /// STRATA_NEW_PASSWORD_FILE
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The archive; may be left out when STRATA_ARCHIVE names it
    archive: PathBuf,
    /// The slot's id, as `strata key list` shows it (16 hex digits, or a unique prefix)
    id: String,
}

pub fn run(c: Command) -> CmdResult {
    match c {
        Command::List(a) => list(&a.archive),
        Command::Add(a) => {
            let archive = super::open(&a.archive)?;
            let pw = new_password(&a)?;
            let id = archive.add_key(&pw)?;
            eprintln!("added key slot {id:016x} to {}", a.archive.display());
            println!("{id:016x}");
            Ok(EXIT_OK)
        }
        Command::Remove(a) => {
            let archive = super::open(&a.archive)?;
            let id = find_slot(&archive, &a.id)?;
            archive.remove_key(id)?;
            eprintln!("removed key slot {id:016x} from {}", a.archive.display());
            Ok(EXIT_OK)
        }
        Command::Passwd(a) => {
            let archive = super::open(&a.archive)?;
            let Some(id) = archive.unlocked_slot() else {
                return Err(Failure::new(format!(
                    "{}: the archive is not encrypted: it has no passwords",
                    a.archive.display()
                )));
            };
            let pw = new_password(&a)?;
            archive.change_password(id, &pw)?;
            eprintln!(
                "changed the password of key slot {id:016x} of {}",
                a.archive.display()
            );
            Ok(EXIT_OK)
        }
    }
}

fn list(path: &Path) -> CmdResult {
    let archive = super::open(path)?;
    let mine = archive.unlocked_slot();
    println!("  ID                KDF");
    for k in archive.list_keys()? {
        let kdf = match k.kdf {
            Some(p) => format!(
                "argon2id {} MiB, {} passes, {} lane(s)",
                p.memory_kib / 1024,
                p.iterations,
                p.parallelism
            ),
            None => "DAMAGED key record".into(),
        };
        let mark = if Some(k.id) == mine { '*' } else { ' ' };
        println!("{mark} {}  {kdf}", k.hex());
    }
    Ok(EXIT_OK)
}

/// A slot id from its hex form or a unique prefix of it.
fn find_slot(archive: &strata::archive::Archive, spec: &str) -> Result<u64, Failure> {
    let spec = spec.to_ascii_lowercase();
    let matches: Vec<u64> = archive
        .list_keys()?
        .iter()
        .filter(|k| !spec.is_empty() && k.hex().starts_with(&spec))
        .map(|k| k.id)
        .collect();
    match matches.as_slice() {
        [id] => Ok(*id),
        [] => Err(Failure::new(format!("no key slot {spec}"))
            .hint(Some("list them with `strata key list ARCHIVE`".into()))),
        _ => Err(Failure::new(format!("key slot prefix {spec} is ambiguous"))
            .hint(Some("give more digits of the id".into()))),
    }
}

/// The new password: --new-password-file, STRATA_NEW_PASSWORD_FILE, or asked twice.
fn new_password(a: &NewArgs) -> Result<Password, Failure> {
    let file = a.new_password_file.clone().or_else(|| {
        std::env::var_os("STRATA_NEW_PASSWORD_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let args = password::PasswordArgs {
        password_file: file.clone(),
        password_command: None,
    };
    if file.is_none() && std::fs::File::open("/dev/tty").is_err() {
        return Err(PasswordError {
            message: "no new password given (no terminal to ask on)".into(),
            hint: Some("pass --new-password-file FILE or set STRATA_NEW_PASSWORD_FILE".into()),
        }
        .into());
    }
    Ok(password::obtain_from(
        &args,
        &NoEnv,
        &a.archive,
        Purpose::New,
    )?)
}

/// The new password never comes from the variables that hold the current one.
struct NoEnv;

impl password::Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}
