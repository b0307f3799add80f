//! The SOCKS5 server: CONNECT and UDP ASSOCIATE over blocking sockets, one thread per
//! client connection (a laptop's proxy serves a handful at a time; the count is capped).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::proto::{
    self, Cmd, Parse, Reply, SocksError, Target, METHOD_NONE, METHOD_UNACCEPTABLE, METHOD_USERPASS,
};

/// Transport of a registered flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP (CONNECT).
    Tcp,
    /// UDP (UDP ASSOCIATE).
    Udp,
}

/// What the proxy tells its owner (the mobile daemon) and asks of it.
pub trait FlowHook: Send + Sync + 'static {
    /// The flow `local -> remote` belongs to application `app`. Called after the outgoing
    /// socket is bound and before its first packet leaves, so the flow can be placed on the
    /// application's tunnel from its first packet.
    fn register(&self, proto: Proto, local: SocketAddr, remote: SocketAddr, app: &str);

    /// Names the application of a client that gave no user name (e.g. by looking up the
    /// process owning the client's socket). `None`: the proxy's default name.
    fn app_of_client(&self, _client: SocketAddr, _proxy: SocketAddr) -> Option<String> {
        None
    }
}

/// Proxy settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect (UPMT: `127.0.0.1:1080`).
    pub listen: SocketAddr,
    /// Application name for clients that give none and that the hook cannot name.
    pub default_app: String,
    /// Refuse clients that do not offer username/password (the application's name).
    pub require_user: bool,
    /// Most client connections at once; more are closed at accept.
    pub max_clients: usize,
    /// Time allowed for the handshake and for connecting out.
    pub timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1080)),
            default_app: "socks".into(),
            require_user: false,
            max_clients: 256,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Counters.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// Client connections accepted.
    pub accepted: AtomicUsize,
    /// Refused at accept (too many clients).
    pub refused: AtomicUsize,
    /// Handshakes that failed (malformed, unsupported, timeout).
    pub bad_handshakes: AtomicUsize,
    /// CONNECTs that reached their target.
    pub connected: AtomicUsize,
    /// UDP ASSOCIATEs set up.
    pub associations: AtomicUsize,
    /// UDP datagrams dropped (malformed, fragment, wrong client).
    pub udp_dropped: AtomicUsize,
}

struct Shared {
    cfg: ProxyConfig,
    hook: Arc<dyn FlowHook>,
    /// Address outgoing IPv4 sockets bind to (the VIPA), 0 = unspecified.
    bind_v4: AtomicU32,
    clients: AtomicUsize,
    stop: AtomicBool,
    stats: ProxyStats,
}

/// A running proxy. Dropping it stops accepting (connections in progress finish).
pub struct Proxy {
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("local", &self.local).finish()
    }
}

impl Proxy {
    /// Binds and starts the accept thread.
    pub fn start(cfg: ProxyConfig, hook: Arc<dyn FlowHook>) -> io::Result<Proxy> {
        let listener = TcpListener::bind(cfg.listen)?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            hook,
            bind_v4: AtomicU32::new(0),
            clients: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stats: ProxyStats::default(),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("upmt-socks".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Proxy { shared, local })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sets the address outgoing IPv4 connections bind to (the VIPA; it changes when the
    /// host re-associates and gets another one).
    pub fn set_bind_v4(&self, addr: Option<Ipv4Addr>) {
        let v = addr.map_or(0, u32::from);
        self.shared.bind_v4.store(v, Ordering::Relaxed);
    }

    /// Counters.
    pub fn stats(&self) -> &ProxyStats {
        &self.shared.stats
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.local, Duration::from_millis(100));
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(conn) = conn else { continue };
        if shared.clients.load(Ordering::Relaxed) >= shared.cfg.max_clients {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            continue; // dropped: closed
        }
        shared.clients.fetch_add(1, Ordering::Relaxed);
        shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("upmt-socks-client".into())
            .spawn(move || {
                let _ = serve(conn, &s);
                s.clients.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            shared.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Reads until `parse` has a whole message; returns it and leaves extra bytes in `buf`.
fn read_msg<T>(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> Result<Parse<T>, SocksError>,
) -> io::Result<Result<T, SocksError>> {
    loop {
        match parse(buf) {
            Err(e) => return Ok(Err(e)),
            Ok(Parse::Done(v, n)) => {
                buf.drain(..n);
                return Ok(Ok(v));
            }
            Ok(Parse::Incomplete) => {}
        }
        if buf.len() > 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "oversized"));
        }
        let mut chunk = [0u8; 512];
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
}

fn bad(shared: &Shared) -> io::Error {
    shared.stats.bad_handshakes.fetch_add(1, Ordering::Relaxed);
    io::Error::new(io::ErrorKind::InvalidData, "bad SOCKS handshake")
}

fn valid_app(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn serve(mut conn: TcpStream, shared: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(shared.cfg.timeout))?;
    conn.set_nodelay(true)?;
    let mut buf = Vec::new();
    let greeting = match read_msg(&mut conn, &mut buf, proto::parse_greeting)? {
        Ok(g) => g,
        Err(_) => return Err(bad(shared)),
    };
    let mut app = None;
    if greeting.methods.contains(&METHOD_USERPASS) {
        conn.write_all(&[proto::VERSION, METHOD_USERPASS])?;
        let up = match read_msg(&mut conn, &mut buf, proto::parse_userpass)? {
            Ok(up) => up,
            Err(_) => return Err(bad(shared)),
        };
        // RFC 1929: X'00' success; anything else is failure and the connection closes.
        if !valid_app(&up.user) {
            conn.write_all(&[1, 1])?;
            return Err(bad(shared));
        }
        conn.write_all(&[1, 0])?;
        app = Some(up.user);
    } else if greeting.methods.contains(&METHOD_NONE) && !shared.cfg.require_user {
        conn.write_all(&[proto::VERSION, METHOD_NONE])?;
    } else {
        conn.write_all(&[proto::VERSION, METHOD_UNACCEPTABLE])?;
        return Err(bad(shared));
    }
    let app = match app {
        Some(a) => a,
        None => {
            let (peer, me) = (conn.peer_addr()?, conn.local_addr()?);
            shared
                .hook
                .app_of_client(peer, me)
                .filter(|a| valid_app(a))
                .unwrap_or_else(|| shared.cfg.default_app.clone())
        }
    };
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let req = match read_msg(&mut conn, &mut buf, proto::parse_request)? {
        Ok(r) => r,
        Err(e) => {
            conn.write_all(&proto::emit_reply(Reply::from_error(&e), unspecified))?;
            return Err(bad(shared));
        }
    };
    match req.cmd {
        Cmd::Bind => {
            conn.write_all(&proto::emit_reply(Reply::CommandNotSupported, unspecified))?;
            Err(bad(shared))
        }
        Cmd::Connect => connect(conn, buf, shared, &app, &req.target),
        Cmd::UdpAssociate => udp_associate(conn, shared, &app),
    }
}

fn resolve(t: &Target, prefer_v4: bool) -> io::Result<SocketAddr> {
    let all: Vec<SocketAddr> = match t {
        Target::Addr(a) => vec![*a],
        Target::Domain(name, port) => (name.as_str(), *port).to_socket_addrs()?.collect(),
    };
    all.iter()
        .find(|a| a.is_ipv4() == prefer_v4)
        .or(all.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))
}

/// The local address an outgoing socket to `remote` binds to.
fn bind_for(shared: &Shared, remote: SocketAddr) -> SocketAddr {
    match remote {
        SocketAddr::V4(_) => {
            let v = shared.bind_v4.load(Ordering::Relaxed);
            SocketAddr::from((Ipv4Addr::from(v), 0))
        }
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

fn connect(
    mut conn: TcpStream,
    pending: Vec<u8>,
    shared: &Shared,
    app: &str,
    target: &Target,
) -> io::Result<()> {
    let fail = |conn: &mut TcpStream, e: &io::Error| {
        let _ = conn.write_all(&proto::emit_reply(
            Reply::from_io(e),
            SocketAddr::from(([0, 0, 0, 0], 0)),
        ));
    };
    let remote = match resolve(target, true) {
        Ok(r) => r,
        Err(e) => {
            fail(&mut conn, &e);
            return Err(e);
        }
    };
    let out = (|| {
        let sock = Socket::new(
            Domain::for_address(remote),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        // Bind first, so the flow's 5-tuple is known before the SYN leaves.
        sock.bind(&SockAddr::from(bind_for(shared, remote)))?;
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("no local address"))?;
        shared.hook.register(Proto::Tcp, local, remote, app);
        sock.connect_timeout(&SockAddr::from(remote), shared.cfg.timeout)?;
        Ok::<_, io::Error>((TcpStream::from(sock), local))
    })();
    let (mut out, local) = match out {
        Ok(o) => o,
        Err(e) => {
            fail(&mut conn, &e);
            return Err(e);
        }
    };
    shared.stats.connected.fetch_add(1, Ordering::Relaxed);
    conn.write_all(&proto::emit_reply(Reply::Succeeded, local))?;
    out.set_nodelay(true)?;
    if !pending.is_empty() {
        out.write_all(&pending)?;
    }
    conn.set_read_timeout(None)?;
    relay(conn, out)
}

/// Copies both ways until both sides have closed.
fn relay(client: TcpStream, remote: TcpStream) -> io::Result<()> {
    let (mut c_r, mut r_w) = (client.try_clone()?, remote.try_clone()?);
    let up = std::thread::Builder::new()
        .name("upmt-socks-up".into())
        .spawn(move || {
            let _ = io::copy(&mut c_r, &mut r_w);
            let _ = r_w.shutdown(Shutdown::Write);
        })?;
    let (mut r_r, mut c_w) = (remote, client);
    let _ = io::copy(&mut r_r, &mut c_w);
    let _ = c_w.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

fn udp_associate(mut conn: TcpStream, shared: &Shared, app: &str) -> io::Result<()> {
    let client_ip = conn.peer_addr()?.ip();
    // The client-facing socket on the address the client reached us at.
    let inner = UdpSocket::bind(SocketAddr::from((conn.local_addr()?.ip(), 0)))?;
    let outer = UdpSocket::bind(bind_for(shared, SocketAddr::from(([0, 0, 0, 0], 0))))?;
    let outer_local = outer.local_addr()?;
    inner.set_read_timeout(Some(Duration::from_millis(200)))?;
    outer.set_read_timeout(Some(Duration::from_millis(200)))?;
    conn.write_all(&proto::emit_reply(Reply::Succeeded, inner.local_addr()?))?;
    shared.stats.associations.fetch_add(1, Ordering::Relaxed);

    let done = Arc::new(AtomicBool::new(false));
    // The client's UDP address, learned from its first datagram (RFC 1928 section 7: only
    // datagrams from the client's IP are relayed).
    let client_udp = Arc::new(std::sync::Mutex::new(None::<SocketAddr>));
    let (inner2, outer2, done2, client2) = (
        inner.try_clone()?,
        outer.try_clone()?,
        done.clone(),
        client_udp.clone(),
    );
    let down = std::thread::Builder::new()
        .name("upmt-socks-udp".into())
        .spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done2.load(Ordering::Relaxed) {
                let Ok((n, from)) = outer2.recv_from(&mut buf) else {
                    continue;
                };
                let to = client2.lock().ok().and_then(|g| *g);
                if let (Some(to), Some(data)) = (to, buf.get(..n)) {
                    let _ = inner2.send_to(&proto::emit_udp(from, data), to);
                }
            }
        })?;

    // The association lasts as long as the TCP connection (RFC 1928 section 6).
    conn.set_read_timeout(None)?;
    let done3 = done.clone();
    let watcher = std::thread::Builder::new()
        .name("upmt-socks-tcp".into())
        .spawn(move || {
            let mut probe = [0u8; 64];
            while let Ok(n) = conn.read(&mut probe) {
                if n == 0 {
                    break;
                }
            }
            done3.store(true, Ordering::Relaxed);
        })?;

    let mut registered: Vec<SocketAddr> = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !done.load(Ordering::Relaxed) {
        let Ok((n, from)) = inner.recv_from(&mut buf) else {
            continue;
        };
        if from.ip() != client_ip {
            shared.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Ok(mut g) = client_udp.lock() {
            *g = Some(from);
        }
        let Some(dgram) = buf.get(..n) else { continue };
        let Ok((target, off)) = proto::parse_udp(dgram) else {
            shared.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Ok(remote) = resolve(&target, outer_local.is_ipv4()) else {
            shared.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if !registered.contains(&remote) && registered.len() < 4096 {
            shared.hook.register(Proto::Udp, outer_local, remote, app);
            registered.push(remote);
        }
        let _ = outer.send_to(dgram.get(off..).unwrap_or(&[]), remote);
    }
    let _ = watcher.join();
    done.store(true, Ordering::Relaxed);
    let _ = down.join();
    Ok(())
}
