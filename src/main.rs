//! The `dagrun` command line: parse arguments, hand the work to the engine, print results.
//! `dagrun PIPELINE.yaml` is short for `dagrun run PIPELINE.yaml`.

mod cli;

use std::process::ExitCode;

/// Models allocate and free large tensors every step; mimalloc keeps that memory instead of
/// returning it to the kernel and faulting it back in (glibc does for large blocks).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
