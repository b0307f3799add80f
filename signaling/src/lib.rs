//! Blocking UDP driver for the sans-IO signalling core (`signaling-proto`).
//!
//! [`RegistrarDriver`] owns a `std::net::UdpSocket` and a [`Registrar`], reads the clock and
//! moves datagrams between them; it is what `upmt-registrar` runs and what the SIPp interop
//! test talks to. [`ClientDriver`] does the same for a mobile host's [`Client`] on one
//! socket. Both are meant to run on their own thread. The anchor daemon, which also has
//! tunnel sockets, drives the sans-IO types itself.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use signaling::RegistrarDriver;
//! use signaling_proto::{credentials::Credentials, registrar::RegistrarConfig};
//!
//! let creds = Credentials::from_toml("realm = \"upmt\"\n[[user]]\nname = \"mh1\"\npassword = \"pw\"\n")?;
//! let mut driver = RegistrarDriver::bind("127.0.0.1:5060", RegistrarConfig::default(), creds)?;
//! let stop = AtomicBool::new(false);
//! driver.run(&stop, |event| println!("{event:?}"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use signaling_proto::client::{self, Client, ClientConfig};
use signaling_proto::credentials::Credentials;
use signaling_proto::registrar::{self, Registrar, RegistrarConfig, Stats};
use signaling_proto::{Path, Transmit};

/// Longest time the loop blocks in `recv_from` (bounds timer lateness and stop latency).
const TICK: Duration = Duration::from_millis(5);

/// Errors of the drivers.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Socket error.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// Bad registrar configuration (pool prefix).
    #[error("config: {0}")]
    Config(#[from] signaling_proto::pool::CidrError),
}

fn send(socket: &UdpSocket, t: &Transmit) -> io::Result<()> {
    match t.path {
        Path::Udp(addr) => socket.send_to(&t.payload, addr).map(|_| ()),
        // This driver has no tunnel socket; the anchor/mobile daemons route these.
        Path::Tunnel { .. } => {
            tracing::debug!("dropping tunnel-path transmit: no tunnel socket in this driver");
            Ok(())
        }
    }
}

/// Runs a [`Registrar`] on a UDP socket.
pub struct RegistrarDriver {
    socket: UdpSocket,
    registrar: Registrar,
}

impl std::fmt::Debug for RegistrarDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarDriver")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl RegistrarDriver {
    /// Binds `addr` and creates the registrar (randomness from the OS).
    pub fn bind(
        addr: impl ToSocketAddrs,
        cfg: RegistrarConfig,
        creds: Credentials,
    ) -> Result<RegistrarDriver, DriverError> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(TICK))?;
        let rng = rand::rngs::StdRng::from_entropy();
        let registrar = Registrar::new(Instant::now(), cfg, creds, Box::new(rng))?;
        Ok(RegistrarDriver { socket, registrar })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The registrar's counters.
    pub fn stats(&self) -> Stats {
        self.registrar.stats()
    }

    /// Serves until `stop` is set, handing every registrar event to `on_event`.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_event: impl FnMut(registrar::Event),
    ) -> Result<(), DriverError> {
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    self.registrar
                        .handle_datagram(Instant::now(), Path::Udp(from), data);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                // ICMP errors surfacing on the unconnected socket: not fatal.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            if self.registrar.poll_timeout().is_some_and(|t| t <= now) {
                self.registrar.handle_timeout(now);
            }
            while let Some(t) = self.registrar.poll_transmit(now) {
                if let Err(e) = send(&self.socket, &t) {
                    tracing::warn!(error = %e, dst = %t.path.remote(), "send failed");
                }
            }
            while let Some(ev) = self.registrar.poll_event() {
                on_event(ev);
            }
        }
        Ok(())
    }

    /// Runs the driver on a new thread; events arrive on the handle's channel.
    pub fn spawn(mut self) -> io::Result<RegistrarHandle> {
        let local_addr = self.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("upmt-registrar".into())
            .spawn(move || {
                let r = self.run(&stop2, |e| {
                    let _ = tx.send(e);
                });
                r.map(|()| self.stats())
            })?;
        Ok(RegistrarHandle {
            local_addr,
            stop,
            events,
            thread,
        })
    }
}

/// A registrar driver running on its own thread.
#[derive(Debug)]
pub struct RegistrarHandle {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Registrar events.
    pub events: mpsc::Receiver<registrar::Event>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Stats, DriverError>>,
}

impl RegistrarHandle {
    /// Stops the thread and returns the final counters.
    pub fn stop(self) -> Result<Stats, DriverError> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(r) => r,
            Err(_) => Err(DriverError::Io(io::Error::other(
                "registrar thread panicked",
            ))),
        }
    }
}

/// Runs a [`Client`] on one UDP socket (REGISTER path only; tunnel-path messages need the
/// mobile daemon's tunnel sockets).
pub struct ClientDriver {
    socket: UdpSocket,
    client: Client,
}

impl std::fmt::Debug for ClientDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDriver")
            .field("socket", &self.socket)
            .field("client", &self.client)
            .finish()
    }
}

impl ClientDriver {
    /// Binds `addr` for a client with `cfg` (randomness from the OS).
    pub fn bind(addr: impl ToSocketAddrs, cfg: ClientConfig) -> io::Result<ClientDriver> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(TICK))?;
        let client = Client::new(cfg, Box::new(rand::rngs::StdRng::from_entropy()));
        Ok(ClientDriver { socket, client })
    }

    /// The sans-IO client, to call `associate`, `deregister`, ...
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Runs the loop for at most `max`, returning early with the first event.
    pub fn poll(&mut self, max: Duration) -> io::Result<Option<client::Event>> {
        let deadline = Instant::now() + max;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            while let Some(t) = self.client.poll_transmit(now) {
                send(&self.socket, &t)?;
            }
            if let Some(e) = self.client.poll_event() {
                return Ok(Some(e));
            }
            if now >= deadline {
                return Ok(None);
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    self.client
                        .handle_datagram(Instant::now(), Path::Udp(from), data);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}
