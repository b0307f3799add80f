//! `upmt-linkemu`: relays frames between two interfaces adding delay, jitter and loss.
//!
//! ```text
//! upmt-linkemu --port-a lan --port-b lan-emu --config link.conf \
//!              [--status link.status] [--pid-file link.pid]
//! upmt-linkemu --check-config link.conf
//! ```
//! SIGHUP re-reads the configuration, SIGUSR1 rewrites the status file, SIGTERM/SIGINT stop.
//! Normally started by `scripts/testbed.sh link ...`; see `docs/TESTBED.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use perf::linkemu::engine::{self, Options};

/// User-space link emulator (delay, jitter, loss) between two interfaces.
#[derive(Debug, Parser)]
#[command(name = "upmt-linkemu", version)]
struct Args {
    /// Interface towards the mobile host (frames entering here travel "up").
    #[arg(long, required_unless_present = "check_config")]
    port_a: Option<String>,
    /// Interface towards the network (frames entering here travel "down").
    #[arg(long, required_unless_present = "check_config")]
    port_b: Option<String>,
    /// Configuration file (key = value; re-read on SIGHUP).
    #[arg(long, required_unless_present = "check_config")]
    config: Option<PathBuf>,
    /// Status file to keep up to date (applied generation, counters).
    #[arg(long)]
    status: Option<PathBuf>,
    /// PID file, written once both ports are open.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// SCHED_FIFO priority of the relay loop (keeps deadlines on a loaded machine);
    /// 0 keeps the normal scheduling class.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=99))]
    realtime: i32,
    /// Only parse this configuration file and report errors.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["port_a", "port_b", "config"])]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = args.check_config {
        return match engine::load_config(&path) {
            Ok(cfg) => {
                println!("{cfg:?}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("upmt-linkemu: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (Some(port_a), Some(port_b), Some(config)) = (args.port_a, args.port_b, args.config) else {
        eprintln!("upmt-linkemu: --port-a, --port-b and --config are required");
        return ExitCode::from(2);
    };
    let opts = Options {
        port_a,
        port_b,
        config,
        status: args.status,
        pid_file: args.pid_file,
        realtime: (args.realtime > 0).then_some(args.realtime),
    };
    match engine::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("upmt-linkemu: {e:#}");
            ExitCode::FAILURE
        }
    }
}
