//! `upmt-registrar`: the UPMT registrar on a UDP socket, standalone (for SIPp interop and
//! benchmarks; the anchor daemon embeds the same core).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Parser;
use signaling::RegistrarDriver;
use signaling_proto::auth::Algorithm;
use signaling_proto::credentials::Credentials;
use signaling_proto::rate::RateLimit;
use signaling_proto::registrar::RegistrarConfig;

/// UPMT registrar (REGISTER with Digest, VIPA pool, tunnel broker) on UDP.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:5060")]
    listen: SocketAddr,
    /// Credentials file (TOML, see examples/credentials.toml).
    #[arg(long)]
    credentials: PathBuf,
    /// VIPA pool prefix.
    #[arg(long, default_value = "100.64.0.0/16")]
    pool: String,
    /// Digest algorithms offered, most preferred first (comma-separated: SHA-256, MD5).
    #[arg(long, default_value = "SHA-256,MD5")]
    algorithms: String,
    /// Per-source-IP rate limit in datagrams/s (burst = 2x); 0 disables it.
    #[arg(long, default_value_t = 50.0)]
    rate_limit: f64,
    /// Answer unauthenticated requests even when the reply is larger than the request
    /// (for clients that do not pad; weakens the anti-amplification rule).
    #[arg(long)]
    no_anti_amplification: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.credentials)
        .with_context(|| format!("reading {}", args.credentials.display()))?;
    let creds = Credentials::from_toml(&text).context("credentials")?;
    let algorithms = args
        .algorithms
        .split(',')
        .map(|a| {
            Algorithm::from_name(Some(a.trim())).with_context(|| format!("unknown algorithm {a}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = RegistrarConfig {
        pool: args.pool.parse().context("--pool")?,
        algorithms,
        rate_limit: (args.rate_limit > 0.0).then(|| RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_limit * 2.0,
            ..RateLimit::default()
        }),
        anti_amplification: !args.no_anti_amplification,
        ..RegistrarConfig::default()
    };
    let mut driver = RegistrarDriver::bind(args.listen, cfg, creds)?;
    println!("upmt-registrar listening on {}", driver.local_addr()?);
    let stop = AtomicBool::new(false);
    driver.run(&stop, |e| tracing::info!(event = ?e))?;
    Ok(())
}
