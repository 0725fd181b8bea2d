//! The `petrel` command: broker, passwd (and proxy, pub, sub).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "petrel",
    version,
    about = "Petrel: an MQTT broker, proxy and client"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the MQTT broker (with no options: the embedded local-only configuration).
    Broker(runtime_uring::cli::BrokerArgs),
    /// Publish messages (like mosquitto_pub).
    Pub(runtime_uring::cli::client::PubArgs),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(runtime_uring::cli::client::SubArgs),
    /// MQTT-aware load balancer: routes each client by its CONNECT (APISIX-compatible admin API).
    Proxy(runtime_uring::proxy::ProxyArgs),
    /// Manage a password file (like mosquitto_passwd): [-c | -D] [-b] passwordfile username [password]
    #[command(disable_help_flag = true)]
    Passwd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Broker(a) => runtime_uring::cli::broker(a),
        Cmd::Pub(a) => runtime_uring::cli::client::publish(a),
        Cmd::Sub(a) => runtime_uring::cli::client::subscribe(a),
        Cmd::Proxy(a) => runtime_uring::proxy::run(a),
        Cmd::Passwd { args } => {
            if let Err(e) = runtime_uring::cli::passwd::run(&args) {
                eprintln!("Error: {e}");
                return ExitCode::FAILURE;
            }
            Ok(())
        }
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("petrel: {e:#}");
            ExitCode::FAILURE
        }
    }
}
