//! The `dagrun` command line: parse arguments, hand the work to the engine, print results.
//! `dagrun PIPELINE.yaml` is short for `dagrun run PIPELINE.yaml`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`dagrun show ... | head`).
    // SAFETY: resetting a signal disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    cli::insert_default_command(&mut args);
    cli::main(args)
}
