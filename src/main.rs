//! The `strata` binary: everything lives in the library; see `cli::run`.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::run()
}
