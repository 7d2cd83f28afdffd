//! `STRATA_ARCHIVE`: ARCHIVE may be left out of any command that takes one when the
//! variable names it (as `RESTIC_REPOSITORY` and `BORG_REPO` do). `copy` (SRC and DST)
//! and `umount` take no ARCHIVE and ignore it.
//!
//! ARCHIVE is the first positional argument, so whether it was left out is decided by
//! reading the command line twice: as given, and with the variable's value in ARCHIVE's
//! place (right after the subcommand).
//! - When only one reading parses, that is the one. For every command whose positionals
//!   are fixed in number (`show ARCHIVE SNAP`, `restore ARCHIVE SPEC TARGET`, …) the count
//!   decides: `strata show latest` takes the variable, `strata show A latest` takes A.
//! - When both parse (`ingest` and `forget`, whose positionals after ARCHIVE are a list),
//!   the first positional is ARCHIVE only when it is a strata archive (a directory whose
//!   `config` reads as one) or is the variable's own value; otherwise it is the first
//!   SOURCE (SNAP) and the archive is the variable's. So `strata ingest /var/jira/export`
//!   stores that directory, and `strata ingest /backups/other.strata /srv` still writes
//!   into other.strata, as without the variable.
//! - When neither parses, the error shown is that of the reading with the variable,
//!   unless the command line as given failed for another reason than a missing argument.

use super::Cli;
use clap::{CommandFactory, FromArgMatches};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use strata::archive::{Archive, ArchiveError};

pub const VARIABLE: &str = "STRATA_ARCHIVE";

/// Parses the process's command line, with ARCHIVE from `STRATA_ARCHIVE` where left out;
/// a usage error (or `--help`) exits as clap does.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let var = std::env::var_os(VARIABLE).filter(|v| !v.is_empty());
    let unset = var.is_none();
    let takes_archive = archive_position(&args).is_some();
    parse_from(args, var).unwrap_or_else(|e| {
        if unset
            && takes_archive
            && e.kind() == clap::error::ErrorKind::MissingRequiredArgument
            && e.to_string().contains("<ARCHIVE>")
        {
            let _ = e.print();
            eprintln!("hint: give ARCHIVE, or set {VARIABLE} to it");
            std::process::exit(e.exit_code());
        }
        e.exit()
    })
}

fn try_parse(args: &[OsString]) -> Result<(Cli, Option<PathBuf>), clap::Error> {
    let matches = Cli::command().try_get_matches_from(args)?;
    let archive = archive_of(&matches);
    Ok((Cli::from_arg_matches(&matches)?, archive))
}

/// The ARCHIVE a parse found, in the (sub)subcommand's matches.
fn archive_of(m: &clap::ArgMatches) -> Option<PathBuf> {
    let mut m = m;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m.try_get_one::<PathBuf>("archive").ok().flatten().cloned()
}

pub fn parse_from(args: Vec<OsString>, var: Option<OsString>) -> Result<Cli, clap::Error> {
    let Some(var) = var else {
        return try_parse(&args).map(|(c, _)| c);
    };
    let Some(at) = archive_position(&args) else {
        return try_parse(&args).map(|(c, _)| c);
    };
    let mut filled = args.clone();
    filled.insert(at, as_positional(&var));
    match (try_parse(&args), try_parse(&filled)) {
        (Ok((given, archive)), Ok((with_var, _))) => {
            let explicit = archive.is_some_and(|a| a.as_os_str() == var || is_archive(&a));
            Ok(if explicit { given } else { with_var })
        }
        (Ok((given, _)), Err(_)) => Ok(given),
        (Err(_), Ok((with_var, _))) => Ok(with_var),
        (Err(given), Err(with_var)) => Err(
            if given.kind() == clap::error::ErrorKind::MissingRequiredArgument {
                with_var
            } else {
                given
            },
        ),
    }
}

/// The variable's value as a positional argument (a relative path starting with `-`
/// would read as an option).
fn as_positional(var: &OsStr) -> OsString {
    if var.as_encoded_bytes().starts_with(b"-") {
        Path::new(".").join(var).into_os_string()
    } else {
        var.to_owned()
    }
}

/// True when `p` is a strata archive (its config reads, or is of a newer format).
fn is_archive(p: &Path) -> bool {
    matches!(
        Archive::read_config(p),
        Ok(_) | Err(ArchiveError::NewerFormat { .. })
    )
}

/// Where ARCHIVE goes in `args`: right after the (sub)subcommand's name, when that
/// command takes an ARCHIVE; `None` otherwise (no subcommand, `copy`, `umount`, `help`).
fn archive_position(args: &[OsString]) -> Option<usize> {
    let mut cmd = Cli::command();
    let mut i = 1;
    loop {
        // Options before the (sub)subcommand's name: the global ones take a value.
        while let Some(a) = args.get(i) {
            let a = a.to_str().unwrap_or("");
            if !a.starts_with('-') {
                break;
            }
            // Global options that take their value as the next argument (`--opt=value`
            // is one argument).
            i += if matches!(
                a,
                "--password-file" | "--password-command" | "--cache-dir" | "--disk-cache"
            ) {
                2
            } else {
                1
            };
        }
        let name = args.get(i)?.to_str()?;
        let sub = cmd.find_subcommand(name)?.clone();
        i += 1;
        if sub.has_subcommands() {
            cmd = sub;
            continue;
        }
        let takes_archive = sub
            .get_positionals()
            .next()
            .is_some_and(|a| a.get_id() == "archive");
        return takes_archive.then_some(i);
    }
}
