//! `silo-runtime`: a thin runc-compatible command line over the compute
//! service, so containerd, dockerd and podman can use silo in place of runc.

mod cli;
mod foreground;
mod log;
mod ops;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if cli.version {
        println!(
            "silo-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            silo_oci::OCI_VERSION
        );
        return;
    }
    let logger = log::Logger::new(cli.log.clone(), cli.log_format, cli.debug);
    let code = match ops::dispatch(&cli, &logger) {
        Ok(code) => code,
        Err(e) => {
            logger.error(&message(&e));
            command_failure(&e).map_or(1, |f| f.exit_code())
        }
    };
    std::process::exit(code);
}

/// A container or exec command that could not be run exits 127 (not
/// found) or 126 (not executable), as a shell does, so callers (silod's
/// exec) can tell the user's mistake from the runtime's failure without
/// reading the message; every other failure exits 1, as runc's do.
fn command_failure(e: &anyhow::Error) -> Option<silo_isolation::CommandFailure> {
    e.chain().find_map(|c| {
        c.downcast_ref::<silo_compute::OpError>()
            .and_then(|o| o.command_failure())
            .or_else(|| {
                c.downcast_ref::<silo_compute::CreateError>()
                    .and_then(|o| o.command_failure())
            })
    })
}

/// The error and its causes, skipping a cause whose text the message
/// before it already includes (our error types name their sources).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
