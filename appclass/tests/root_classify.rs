//! Classification against the real kernel: sock_diag lookups of this process's own TCP and
//! UDP sockets, and of sockets of a child launched as an application in its own cgroup.
//!
//! Needs root (to create cgroups and read other processes' fds) and a cgroup2 mount; fails
//! with a clear message when either is missing. Also needs `python3` for the child.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appclass::{cgroup, launch, Classifier, Config, Flow, NameSource, Proto, Source};

fn require_root_and_cgroup2() -> PathBuf {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "root_classify needs root (effective uid is {euid})"
    );
    match cgroup::cgroup2_mount() {
        Ok(m) => m,
        Err(e) => panic!("root_classify needs a cgroup2 mount: {e}"),
    }
}

fn comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn own_tcp_and_udp_sockets_by_process() {
    require_root_and_cgroup2();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect("127.0.0.1:9").unwrap();
    let listener6 = TcpListener::bind("[::1]:0").expect("IPv6 loopback");
    let client6 = TcpStream::connect(listener6.local_addr().unwrap()).unwrap();
    let udp6 = UdpSocket::bind("[::1]:0").unwrap();

    let flows = [
        Flow {
            proto: Proto::Tcp,
            src: client.local_addr().unwrap(),
            dst: client.peer_addr().unwrap(),
        },
        Flow {
            proto: Proto::Tcp,
            src: server.local_addr().unwrap(),
            dst: server.peer_addr().unwrap(),
        },
        // Unconnected UDP: any destination.
        Flow {
            proto: Proto::Udp,
            src: udp.local_addr().unwrap(),
            dst: "127.0.0.1:53".parse().unwrap(),
        },
        Flow {
            proto: Proto::Udp,
            src: connected.local_addr().unwrap(),
            dst: "127.0.0.1:9".parse().unwrap(),
        },
        Flow {
            proto: Proto::Tcp,
            src: client6.local_addr().unwrap(),
            dst: client6.peer_addr().unwrap(),
        },
        Flow {
            proto: Proto::Udp,
            src: udp6.local_addr().unwrap(),
            dst: "[::1]:53".parse().unwrap(),
        },
    ];
    let mut by_comm = Classifier::new(Config {
        name_source: NameSource::Comm,
        ..Config::default()
    })
    .unwrap();
    let mut by_exe = Classifier::new(Config::default()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe = exe.file_name().unwrap().to_str().unwrap();
    for f in &flows {
        let a = by_comm
            .classify(f)
            .unwrap_or_else(|| panic!("{f:?} not classified"));
        assert_eq!(a.name, comm(), "{f:?}");
        assert_eq!(a.source, Source::Process);
        assert_eq!(a.pid, Some(std::process::id()));
        assert_eq!(a.uid, 0);
        assert!(a.cgroup_id.is_some(), "kernel gave no INET_DIAG_CGROUP_ID");
        assert_eq!(by_exe.classify(f).unwrap().name, exe);
    }
    // One scan found them all (or a few, if other tests' sockets came and went).
    assert!(by_comm.stats().scans <= 2, "{:?}", by_comm.stats());

    // No socket: nothing.
    let none = Flow {
        proto: Proto::Tcp,
        src: "127.0.0.1:1".parse().unwrap(),
        dst: "127.0.0.1:2".parse().unwrap(),
    };
    assert_eq!(by_comm.classify(&none), None);
    assert_eq!(by_comm.stats().no_socket, 1);
}

/// A python3 child that opens a UDP socket and a TCP connection to `connect_to`, prints
/// both local ports, and waits for stdin to close.
const CHILD: &str = r#"
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
t = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(u.getsockname()[1], t.getsockname()[1], flush=True)
sys.stdin.read()
"#;

struct Guard {
    child: Option<Child>,
    mount: PathBuf,
    app: String,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            drop(c.stdin.take());
            let _ = c.kill();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while launch::remove_app_cgroup(&self.mount, &self.app).is_err()
            && cgroup::app_cgroup_dir(&self.mount, &self.app).exists()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn_child(launcher: Option<&str>, listener: &TcpListener) -> (Child, u16, u16) {
    let port = listener.local_addr().unwrap().port().to_string();
    let mut cmd = match launcher {
        Some(app) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_appclass-run"));
            c.args([app, "--", "python3", "-c", CHILD, &port]);
            c
        }
        None => {
            let mut c = Command::new("python3");
            c.args(["-c", CHILD, &port]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut ports = line.split_whitespace().map(|p| p.parse::<u16>().unwrap());
    let (udp, tcp) = (ports.next().unwrap(), ports.next().unwrap());
    (child, udp, tcp)
}

fn child_flows(listener: &TcpListener, udp: u16, tcp: u16) -> [Flow; 2] {
    let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
    [
        Flow {
            proto: Proto::Udp,
            src: SocketAddr::new(lo.ip(), udp),
            dst: "198.18.3.1:5004".parse().unwrap(),
        },
        Flow {
            proto: Proto::Tcp,
            src: SocketAddr::new(lo.ip(), tcp),
            dst: listener.local_addr().unwrap(),
        },
    ]
}

#[test]
fn launched_app_by_cgroup() {
    let mount = require_root_and_cgroup2();
    let app = format!("test-{}", std::process::id());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut guard = Guard {
        child: None,
        mount: mount.clone(),
        app: app.clone(),
    };
    let (child, udp, tcp) = spawn_child(Some(&app), &listener);
    let child_pid = child.id();
    guard.child = Some(child);
    let (_conn, _) = listener.accept().unwrap();

    let cg = std::fs::read_to_string(format!("/proc/{child_pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&format!("0::/upmt.apps/{app}")),
        "child not in its cgroup: {cg}"
    );

    let mut c = Classifier::new(Config::default()).unwrap();
    for f in child_flows(&listener, udp, tcp) {
        let a = c
            .classify(&f)
            .unwrap_or_else(|| panic!("{f:?} not classified"));
        assert_eq!(a.name, app, "{f:?}");
        assert_eq!(a.source, Source::Cgroup);
        assert_eq!(a.pid, None);
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(cgroup::app_cgroup_dir(&mount, &app))
            .unwrap()
            .ino();
        assert_eq!(a.cgroup_id, Some(ino), "cgroup id == directory inode");
    }
    assert_eq!(c.stats().scans, 0, "no /proc scan needed");

    // Without the cgroup mount (as under `ip netns exec`): found through /proc/PID/cgroup.
    let mut blind = Classifier::new(Config {
        cgroup_mount: Some("/nonexistent".into()),
        ..Config::default()
    })
    .unwrap();
    let a = blind
        .classify(&child_flows(&listener, udp, tcp)[0])
        .unwrap();
    assert_eq!(
        (a.name.as_str(), a.source),
        (app.as_str(), Source::ProcCgroup)
    );
    assert_eq!(a.pid, Some(child_pid));

    // The child exits; its cgroup can be removed.
    let mut child = guard.child.take().unwrap();
    child.stdin.take().unwrap().flush().ok();
    child.wait().unwrap();
    drop(guard);
    assert!(
        !cgroup::app_cgroup_dir(&mount, &app).exists(),
        "cgroup left behind"
    );
}

#[test]
fn untagged_program_by_executable_name() {
    let mount = require_root_and_cgroup2();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (child, udp, tcp) = spawn_child(None, &listener);
    let child_pid = child.id();
    let _guard = Guard {
        child: Some(child),
        mount,
        app: format!("unused-{}", std::process::id()),
    };
    let (_conn, _) = listener.accept().unwrap();
    let exe = std::fs::read_link(format!("/proc/{child_pid}/exe")).unwrap();
    let exe = exe.file_name().unwrap().to_str().unwrap().to_owned();
    let mut c = Classifier::new(Config::default()).unwrap();
    let mut by_comm = Classifier::new(Config {
        name_source: NameSource::Comm,
        ..Config::default()
    })
    .unwrap();
    for f in child_flows(&listener, udp, tcp) {
        let a = c
            .classify(&f)
            .unwrap_or_else(|| panic!("{f:?} not classified"));
        assert_eq!((a.name.as_str(), a.source), (exe.as_str(), Source::Process));
        assert_eq!(a.pid, Some(child_pid));
        assert_eq!(by_comm.classify(&f).unwrap().name, "python3");
    }
}

#[test]
fn launcher_refuses_bad_names() {
    require_root_and_cgroup2();
    let out = Command::new(env!("CARGO_BIN_EXE_appclass-run"))
        .args(["../etc", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad application name"), "{err}");
}

/// A network namespace of our own, deleted on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let name = format!("u{}-ac", std::process::id());
        let ok = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        assert!(ok(&["netns", "add", &name]), "ip netns add {name} failed");
        let ns = Netns(name);
        assert!(ok(&["-n", &ns.0, "link", "set", "lo", "up"]));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn classify_cmd(prefix: &[&str], port: u16) -> String {
    let (prog, args) = prefix.split_first().unwrap();
    let out = Command::new(prog)
        .args(args)
        .arg(env!("CARGO_BIN_EXE_appclass-classify"))
        .args(["udp", &format!("127.0.0.1:{port}"), "127.0.0.1:9"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The testbed's situation (KERNEL-NOTES): the daemon runs inside a namespace entered with
/// `ip netns exec`, which hides the cgroup2 mount; applications are started with the
/// launcher *before* entering the namespace.
#[test]
fn inside_a_network_namespace() {
    let mount = require_root_and_cgroup2();
    let ns = Netns::new();
    let app = format!("test-ns-{}", std::process::id());
    let mut guard = Guard {
        child: None,
        mount,
        app: app.clone(),
    };
    let udp_child = "import socket, sys\n\
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        u.bind(('127.0.0.1', 0))\n\
        print(u.getsockname()[1], flush=True)\n\
        sys.stdin.read()\n";
    let mut child = Command::new(env!("CARGO_BIN_EXE_appclass-run"))
        .args([
            &app, "--", "ip", "netns", "exec", &ns.0, "python3", "-c", udp_child,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    guard.child = Some(child);
    let port: u16 = line.trim().parse().expect("child printed no port");

    // `ip netns exec`: no cgroup mount, found through /proc/PID/cgroup.
    let inside = classify_cmd(&["ip", "netns", "exec", &ns.0], port);
    assert!(
        inside.starts_with(&format!("{app} ProcCgroup pid=")),
        "{inside}"
    );
    // `nsenter --net`: mounts kept, found by the socket's cgroup id.
    let netns_path = format!("--net=/var/run/netns/{}", ns.0);
    let nsenter = classify_cmd(&["nsenter", &netns_path], port);
    assert!(nsenter.starts_with(&format!("{app} Cgroup ")), "{nsenter}");
    // From the host namespace the socket does not exist.
    assert_eq!(classify_cmd(&["env"], port), "none");
    drop(guard);
    drop(ns);
}
