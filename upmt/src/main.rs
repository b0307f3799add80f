//! `upmt`: the UPMT anchor node, mobile host and their control CLI.
//!
//! A thin binary that wires the crates together: `signaling` (SIP association, tunnel
//! setup, handover), `dataplane` (the io_uring forwarder with the PAFT) and `nat` (the
//! anchor's NAPT). See `docs/ARCHITECTURE.md`.

use upmt::{config, control};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// UPMT: per-application mobility over IP-in-UDP tunnels.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the anchor node (registrar, tunnel broker, NAT, data plane).
    Anchor {
        /// Configuration file (see examples/anchor.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Only validate the configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Run the mobile host (association, tunnels, data plane, handovers).
    Mobile {
        /// Configuration file (see examples/mobile.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Only validate the configuration and exit.
        #[arg(long)]
        check: bool,
    },
    /// Show a running daemon's status.
    Status {
        /// Machine-readable JSON (documented in docs/CONTROL.md).
        #[arg(long)]
        json: bool,
        /// Control socket (default: the mobile host's, else the anchor's).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Run a program as application NAME (its own cgroup; children inherit it), so the
    /// mobile host places its flows by NAME's policy from their first packet. Start it
    /// before entering a network namespace (`ip netns exec` hides the cgroup2 mount on some
    /// systems; `nsenter --net=/run/netns/NS` does not).
    Run {
        /// The application's name ([A-Za-z0-9._-], at most 64).
        #[arg(long)]
        app: String,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true, allow_hyphen_values = true)]
        cmd: Vec<std::ffi::OsString>,
    },
    /// The per-application policy of the mobile host.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
        /// Control socket.
        #[arg(long, global = true)]
        socket: Option<PathBuf>,
    },
    /// Move flows to the tunnel on another interface (mobile host).
    Handover {
        /// Flows matching SPEC, e.g. `udp 198.18.3.1:5001` or `tcp :80`.
        #[arg(long, conflicts_with_all = ["all", "app"])]
        flow: Option<String>,
        /// Every flow, and new ones.
        #[arg(long)]
        all: bool,
        /// Every flow of an application.
        #[arg(long)]
        app: Option<String>,
        /// The interface whose tunnel the flows move to (`auto` with --app: back to the
        /// policy's choice).
        #[arg(long)]
        to: String,
        /// Control socket.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Read the policy file again; a bad file is refused and the running policy stays.
    Reload,
    /// Show the running policy's decisions.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upmt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Anchor { config, check } => {
            let cfg = config::AnchorConfig::load(&config)?;
            if check {
                println!("{}: valid", config.display());
                return Ok(());
            }
            init_logs();
            upmt::anchor::run(cfg, stop_flag()?)
        }
        Cmd::Mobile { config, check } => {
            let cfg = config::MobileConfig::load(&config)?;
            if check {
                println!("{}: valid", config.display());
                return Ok(());
            }
            init_logs();
            upmt::mobile::run(cfg, stop_flag()?)
        }
        Cmd::Run { app, cmd } => {
            let e = appclass::launch::run_in_app(&app, &cmd);
            anyhow::bail!(
                "cannot run {:?} as {app}: {e}",
                cmd.first().unwrap_or(&"".into())
            )
        }
        Cmd::Policy { cmd, socket } => {
            let path = socket.unwrap_or_else(|| control::default_socket(control::Role::Mobile));
            let req = match cmd {
                PolicyCmd::Reload => control::Request::PolicyReload,
                PolicyCmd::Show => control::Request::PolicyShow,
            };
            print_response(control::request(&path, &req)?, false)
        }
        Cmd::Status { json, socket } => {
            let path = socket.unwrap_or_else(control::default_client_socket);
            let r = control::request(&path, &control::Request::Status)?;
            print_response(r, json)
        }
        Cmd::Handover {
            flow,
            all,
            app,
            to,
            socket,
        } => {
            let flows = match (flow, all, app) {
                (Some(s), false, None) => control::FlowSelector::Spec(s),
                (None, true, None) => control::FlowSelector::All,
                (None, false, Some(a)) => control::FlowSelector::App(a),
                _ => anyhow::bail!("give one of --flow SPEC, --all, --app NAME"),
            };
            let path = socket.unwrap_or_else(|| control::default_socket(control::Role::Mobile));
            let r = control::request(&path, &control::Request::Handover { flows, to })?;
            print_response(r, true)
        }
    }
}

/// Logs to stderr; quiet by default (`RUST_LOG=debug` to dig).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A flag raised by SIGINT or SIGTERM: the daemons then leave the host as they found it.
fn stop_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

fn print_response(r: control::Response, json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    match r {
        control::Response::Ok { value } => {
            // The human form is the same document, indented; `--json` is compact for machines.
            let text = if json {
                serde_json::to_string(&value)?
            } else {
                serde_json::to_string_pretty(&value)?
            };
            let mut out = std::io::stdout().lock();
            // A closed pipe (`upmt status | head`) is not an error worth a panic.
            let _ = writeln!(out, "{text}");
            Ok(())
        }
        control::Response::Error { message } => anyhow::bail!("{message}"),
    }
}
