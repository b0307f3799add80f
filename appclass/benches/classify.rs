//! Classification delay of a flow's first packet: sock_diag lookup alone, the cache-hit
//! path, the cache-miss path (a `/proc` scan), and the cgroup path.
//!
//! Prints median and p99 from a plain measured loop (criterion reports means and medians but
//! no p99), then runs the same paths under criterion. The cgroup path needs root and a
//! cgroup2 mount; it is skipped with a note otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use appclass::sock::DiagSocket;
use appclass::{cgroup, launch, Classifier, Config, Flow, Proto};
use criterion::Criterion;

struct Fixture {
    _listener: TcpListener,
    _client: TcpStream,
    _udp: UdpSocket,
    tcp: Flow,
    udp: Flow,
}

fn fixture() -> Fixture {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    Fixture {
        tcp: Flow {
            proto: Proto::Tcp,
            src: client.local_addr().unwrap(),
            dst: client.peer_addr().unwrap(),
        },
        udp: Flow {
            proto: Proto::Udp,
            src: udp.local_addr().unwrap(),
            dst: "127.0.0.1:9".parse().unwrap(),
        },
        _listener: listener,
        _client: client,
        _udp: udp,
    }
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "{label:<28} n={:<6} median {:>9.2?}  p99 {:>9.2?}  max {:>9.2?}",
        samples.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn sample(n: usize, mut f: impl FnMut() -> Duration) -> Vec<Duration> {
    (0..n).map(|_| f()).collect()
}

/// A cgroup `upmt.apps/bench-<pid>` holding a UDP socket (created while this process sat in
/// it), or `None` without root / cgroup2.
fn cgroup_fixture() -> Option<(PathBuf, UdpSocket, Flow)> {
    let mount = cgroup::cgroup2_mount().ok()?;
    let name = format!("bench-{}", std::process::id());
    let dir = launch::ensure_app_cgroup(&mount, &name).ok()?;
    let home = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let home = mount.join(home.lines().find_map(|l| l.strip_prefix("0::/"))?);
    launch::join_cgroup(&dir).ok()?;
    let sock = UdpSocket::bind("127.0.0.1:0");
    launch::join_cgroup(&home).ok()?;
    let sock = sock.ok()?;
    let flow = Flow {
        proto: Proto::Udp,
        src: sock.local_addr().ok()?,
        dst: "127.0.0.1:9".parse().ok()?,
    };
    Some((dir, sock, flow))
}

fn percentiles(fx: &Fixture) {
    println!("--- classification delay (measured loop) ---");
    let mut diag = DiagSocket::new().unwrap();
    report(
        "sock_diag tcp",
        sample(20_000, || {
            let t = Instant::now();
            black_box(diag.lookup(&fx.tcp).unwrap());
            t.elapsed()
        }),
    );
    report(
        "sock_diag udp (reversed)",
        sample(20_000, || {
            let t = Instant::now();
            black_box(diag.lookup(&fx.udp).unwrap());
            t.elapsed()
        }),
    );
    let mut c = Classifier::new(Config::default()).unwrap();
    c.classify(&fx.tcp).unwrap();
    report(
        "classify hit (inode cached)",
        sample(20_000, || {
            let t = Instant::now();
            black_box(c.classify(&fx.tcp).unwrap());
            t.elapsed()
        }),
    );
    // A known process opens one more socket: found among the recent owners' fds.
    let mut c = Classifier::new(Config::default()).unwrap();
    c.classify(&fx.tcp).unwrap();
    report(
        "classify new socket, known pid",
        sample(2_000, || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let f = Flow {
                proto: Proto::Udp,
                src: s.local_addr().unwrap(),
                dst: "127.0.0.1:9".parse().unwrap(),
            };
            let t = Instant::now();
            black_box(c.classify(&f).unwrap());
            t.elapsed()
        }),
    );
    assert!(c.stats().recent_hits >= 1_999, "{:?}", c.stats());
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|s| s.parse::<u32>().is_ok())
        })
        .count();
    let mut visited = 0;
    let miss = sample(300, || {
        let mut c = Classifier::new(Config::default()).unwrap();
        let t = Instant::now();
        black_box(c.classify(&fx.tcp).unwrap());
        let d = t.elapsed();
        visited = c.stats().scanned_processes;
        d
    });
    report("classify miss (/proc scan)", miss);
    println!("  ({procs} processes on the machine, {visited} visited by the scan)");
    let mut fds = 0;
    let mut visited = 0;
    report(
        "full /proc scan (no owner)",
        sample(100, || {
            let t = Instant::now();
            let (pid, stats) = appclass::procfs::find_socket_owner(
                std::path::Path::new("/proc"),
                u32::MAX,
                0,
                &mut |_, _| {},
            );
            let d = t.elapsed();
            assert_eq!(pid, None);
            (visited, fds) = (stats.processes, stats.fds);
            d
        }),
    );
    println!("  ({visited} processes, {fds} fds read)");
    match cgroup_fixture() {
        Some((dir, sock, flow)) => {
            let mut c = Classifier::new(Config::default()).unwrap();
            assert_eq!(c.classify(&flow).unwrap().source, appclass::Source::Cgroup);
            report(
                "classify by cgroup",
                sample(20_000, || {
                    let t = Instant::now();
                    black_box(c.classify(&flow).unwrap());
                    t.elapsed()
                }),
            );
            drop(sock);
            let _ = std::fs::remove_dir(dir);
        }
        None => println!("classify by cgroup: skipped (needs root and a cgroup2 mount)"),
    }
}

/// `APPCLASS_BENCH_EXTRA_PROCS=N`: N extra idle processes (`sleep`, 4 fds each), to see how
/// the `/proc` scan grows with a laptop's process count. Killed (by pid) at the end.
fn extra_processes() -> Vec<std::process::Child> {
    let n: usize = std::env::var("APPCLASS_BENCH_EXTRA_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (0..n)
        .filter_map(|_| {
            std::process::Command::new("sleep")
                .arg("120")
                .stdin(std::process::Stdio::null())
                .spawn()
                .ok()
        })
        .collect()
}

fn main() {
    let mut extra = extra_processes();
    if !extra.is_empty() {
        println!("({} extra idle processes started)", extra.len());
    }
    let fx = fixture();
    percentiles(&fx);
    let mut crit = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let mut diag = DiagSocket::new().unwrap();
    crit.bench_function("sock_diag_lookup_tcp", |b| {
        b.iter(|| diag.lookup(black_box(&fx.tcp)).unwrap())
    });
    let mut c = Classifier::new(Config::default()).unwrap();
    c.classify(&fx.tcp).unwrap();
    crit.bench_function("classify_hit", |b| {
        b.iter(|| c.classify(black_box(&fx.tcp)).unwrap())
    });
    crit.final_summary();
    for c in &mut extra {
        let _ = c.kill();
        let _ = c.wait();
    }
}
