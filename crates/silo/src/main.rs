//! `silo`: a docker-like command line for silod, speaking the Docker Engine
//! API over the daemon's unix socket.

mod api;
mod cli;
mod containers;
mod create;
mod http;
mod images;
mod registry;
mod stream;
mod system;
mod template;
mod units;

use clap::Parser;
use std::process::ExitCode;

/// The message shown when the daemon socket is missing or refuses connections.
pub fn not_running_message(host: &str) -> String {
    format!(
        "Cannot connect to the silo daemon at {host}. Is silod running? Start it with: silod &  (or: systemctl start silod)"
    )
}

/// An error that carries the process exit code (e.g. the container's).
#[derive(Debug, thiserror::Error)]
#[error("exit status {0}")]
pub struct Exit(pub i32);

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let host = cli::resolve_host(cli.host.as_deref());
    let is_create = matches!(cli.command, cli::Command::Run(_) | cli::Command::Create(_));
    let result = match api::App::new(&host) {
        Ok(app) => cli::dispatch(&app, cli.command),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
                return ExitCode::from((*code).clamp(0, 255) as u8);
            }
            if let Some(h) = err.downcast_ref::<http::HttpError>() {
                if h.is_not_running() {
                    eprintln!("{}", not_running_message(&host));
                    return ExitCode::from(1);
                }
                if let http::HttpError::Api { message, .. } = h {
                    eprintln!("Error response from daemon: {message}");
                    return ExitCode::from(if is_create { 125 } else { 1 });
                }
            }
            eprintln!("Error: {err:#}");
            ExitCode::from(if is_create { 125 } else { 1 })
        }
    }
}
