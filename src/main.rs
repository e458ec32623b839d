//! The `emoarc` command-line tool. The library does the work; this binary owns input and output, progress
//! bars and exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("emoarc: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
