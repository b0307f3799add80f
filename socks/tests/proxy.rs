//! The proxy against real sockets on loopback, and against curl (a real SOCKS5 client).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socks::{FlowHook, Proto, Proxy, ProxyConfig};

#[derive(Default)]
struct Recorder(Mutex<Vec<(Proto, SocketAddr, SocketAddr, String)>>);

impl FlowHook for Recorder {
    fn register(&self, proto: Proto, local: SocketAddr, remote: SocketAddr, app: &str) {
        self.0
            .lock()
            .unwrap()
            .push((proto, local, remote, app.to_owned()));
    }
}

fn proxy() -> (Proxy, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let cfg = ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ProxyConfig::default()
    };
    let p = Proxy::start(cfg, rec.clone()).unwrap();
    p.set_bind_v4(Some("127.0.0.1".parse().unwrap()));
    (p, rec)
}

fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let mut c = c.unwrap();
            std::thread::spawn(move || {
                let mut b = [0u8; 1024];
                while let Ok(n) = c.read(&mut b) {
                    if n == 0 || c.write_all(&b[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

fn read_exact_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).unwrap();
    v
}

#[test]
fn connect_with_user_name_registers_the_flow_first() {
    let (p, rec) = proxy();
    let echo = tcp_echo();
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 2, 0, 2]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 2]);
    let mut up = vec![1, 5];
    up.extend_from_slice(b"video");
    up.extend_from_slice(&[1, b'x']);
    c.write_all(&up).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![1, 0]);
    let SocketAddr::V4(e4) = echo else { panic!() };
    let mut req = vec![5, 1, 0, 1];
    req.extend_from_slice(&e4.ip().octets());
    req.extend_from_slice(&e4.port().to_be_bytes());
    c.write_all(&req).unwrap();
    let rep = read_exact_n(&mut c, 10);
    assert_eq!(&rep[..4], &[5, 0, 0, 1]);
    let bound = SocketAddr::from((
        [rep[4], rep[5], rep[6], rep[7]],
        u16::from_be_bytes([rep[8], rep[9]]),
    ));
    c.write_all(b"hello").unwrap();
    assert_eq!(read_exact_n(&mut c, 5), b"hello");
    let flows = rec.0.lock().unwrap().clone();
    assert_eq!(flows, vec![(Proto::Tcp, bound, echo, "video".to_owned())]);
}

#[test]
fn curl_through_the_proxy() {
    assert!(
        std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_ok(),
        "this test needs curl (apt-get install curl; scripts/install-deps.sh does it)"
    );
    let (p, rec) = proxy();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let web = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 2048];
        let _ = c.read(&mut b).unwrap();
        c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
    });
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-x",
            &format!("socks5://backup:pw@{}", p.local_addr()),
            &format!("http://{web}/"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello");
    let flows = rec.0.lock().unwrap().clone();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (flows[0].0, flows[0].2, flows[0].3.as_str()),
        (Proto::Tcp, web, "backup")
    );
}

#[test]
fn udp_associate_relays_both_ways() {
    let (p, rec) = proxy();
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_addr = echo.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut b = [0u8; 2048];
        loop {
            let (n, from) = echo.recv_from(&mut b).unwrap();
            echo.send_to(&b[..n], from).unwrap();
        }
    });
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 0]);
    c.write_all(&[5, 3, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
    let rep = read_exact_n(&mut c, 10);
    assert_eq!(rep[1], 0);
    let relay = SocketAddr::from((
        [rep[4], rep[5], rep[6], rep[7]],
        u16::from_be_bytes([rep[8], rep[9]]),
    ));
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(&socks::proto::emit_udp(echo_addr, b"ping"), relay)
        .unwrap();
    let mut b = [0u8; 2048];
    let (n, _) = u.recv_from(&mut b).unwrap();
    let (t, off) = socks::proto::parse_udp(&b[..n]).unwrap();
    assert_eq!(t, socks::proto::Target::Addr(echo_addr));
    assert_eq!(&b[off..n], b"ping");
    // A fragment is dropped, not relayed.
    let mut frag = socks::proto::emit_udp(echo_addr, b"frag");
    frag[2] = 1;
    u.send_to(&frag, relay).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(u.recv_from(&mut b).is_err());
    let flows = rec.0.lock().unwrap().clone();
    assert_eq!(flows.len(), 1);
    assert_eq!(
        (flows[0].0, flows[0].2, flows[0].3.as_str()),
        (Proto::Udp, echo_addr, "socks")
    );
    drop(c);
}

#[test]
fn bad_clients_are_refused_and_counted() {
    let (p, _rec) = proxy();
    // Garbage greeting: closed.
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut b = [0u8; 16];
    assert_eq!(c.read(&mut b).unwrap_or(0), 0);
    // BIND: reply 0x07.
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 0]);
    c.write_all(&[5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).unwrap();
    assert_eq!(read_exact_n(&mut c, 10)[1], 7);
    // Unknown address type: reply 0x08.
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 0]);
    c.write_all(&[5, 1, 0, 9, 0, 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 10)[1], 8);
    // A bad application name is refused (RFC 1929 status != 0).
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 1, 2]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 2]);
    c.write_all(&[1, 3, b'a', b'/', b'b', 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![1, 1]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        p.stats()
            .bad_handshakes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    // Connection refused target: reply 0x05.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = TcpStream::connect(p.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[5, 1, 0]).unwrap();
    assert_eq!(read_exact_n(&mut c, 2), vec![5, 0]);
    let mut req = vec![5, 1, 0, 1, 127, 0, 0, 1];
    req.extend_from_slice(&dead.port().to_be_bytes());
    c.write_all(&req).unwrap();
    assert_eq!(read_exact_n(&mut c, 10)[1], 5);
}
