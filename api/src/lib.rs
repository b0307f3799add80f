//! The UPMT socket API for aware applications, and the control protocol of the UPMT daemons.
//!
//! An application that knows about UPMT links this crate to say which application its
//! sockets belong to (so the mobile host places them by that application's policy from
//! their first packet) and to ask for per-application handovers:
//!
//! ```no_run
//! let upmt = upmt_api::Mobile::connect()?;
//! // A TCP connection placed as application "video" from its SYN on.
//! let stream = upmt.connect_tcp("video", "198.18.3.1:80".parse()?)?;
//! // Move every "video" flow to the tunnel on umts0, then back to the policy's choice.
//! upmt.handover_app("video", "umts0")?;
//! upmt.handover_app("video", "auto")?;
//! # drop(stream);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It talks to the mobile daemon over its control socket: one JSON object per line each way
//! (`docs/CONTROL.md`). The same types serve the `upmt` command line.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The control socket could not be reached or the exchange failed.
    #[error("{path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon's answer is not valid JSON.
    #[error("the daemon's answer is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// A socket operation of the application failed.
    #[error("{0}")]
    Socket(std::io::Error),
}

/// Which daemon a control socket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `upmt anchor`.
    Anchor,
    /// `upmt mobile`.
    Mobile,
}

/// The default control socket of a daemon: `/run/upmt/[NETNS/]anchor.sock` or
/// `mobile.sock`, where NETNS is the name of the network namespace the process runs in
/// (as `ip netns` names it), so daemons in different namespaces on one machine (the
/// testbed) do not collide, and `upmt status` run in a namespace finds that namespace's
/// daemon.
pub fn default_socket(role: Role) -> PathBuf {
    let mut p = PathBuf::from("/run/upmt");
    if let Some(ns) = netns_name() {
        p.push(ns);
    }
    p.push(match role {
        Role::Anchor => "anchor.sock",
        Role::Mobile => "mobile.sock",
    });
    p
}

/// The name of this process's network namespace, if it is one of `/run/netns/*`.
fn netns_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let me = std::fs::metadata("/proc/self/ns/net").ok()?;
    std::fs::read_dir("/run/netns")
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::metadata(e.path()).is_ok_and(|m| m.ino() == me.ino() && m.dev() == me.dev())
        })
        .and_then(|e| e.file_name().into_string().ok())
}

/// The socket `upmt status` talks to when none is given: this namespace's mobile host if
/// one runs, else its anchor.
pub fn default_client_socket() -> PathBuf {
    let m = default_socket(Role::Mobile);
    if m.exists() {
        m
    } else {
        default_socket(Role::Anchor)
    }
}

/// A request to a daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's status (`upmt status`).
    Status,
    /// Mobile host: the flow from this host's VIPA:`src_port` to `dst` belongs to
    /// application `app` (sent by an aware application before its first packet).
    RegisterFlow {
        /// `tcp` or `udp`.
        proto: String,
        /// Local port (the address is the host's VIPA).
        src_port: u16,
        /// Remote end.
        dst: std::net::SocketAddr,
        /// Application name ([A-Za-z0-9._-], at most 64).
        app: String,
    },
    /// Move flows to the tunnel on an interface (mobile host only).
    Handover {
        /// Which flows.
        flows: FlowSelector,
        /// The interface whose tunnel they move to (`auto`, with an application: back to
        /// the policy's choice).
        to: String,
    },
    /// Reads the policy file again (mobile host); a bad file is refused, the old policy stays.
    PolicyReload,
    /// The running policy's decisions (mobile host).
    PolicyShow,
}

/// Which flows a handover moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowSelector {
    /// Every flow, and the default for new ones.
    All,
    /// Flows matching a spec such as `udp 198.18.3.1:5001` (see `docs/CONTROL.md`).
    Spec(String),
    /// Every flow of an application.
    App(String),
}

/// A daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Success, with a JSON value (the status object, or what a command did).
    Ok {
        /// The payload.
        value: serde_json::Value,
    },
    /// The request was understood but could not be done.
    Error {
        /// Why, for a person.
        message: String,
    },
}

/// Sends one request to the daemon at `path` and waits for its answer.
pub fn request(path: &Path, req: &Request) -> Result<Response, ApiError> {
    let io = |source| ApiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(io)?;
    let mut text = serde_json::to_string(req)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(io)?;
    Ok(serde_json::from_str(line.trim_end())?)
}

/// The mobile daemon, for an aware application.
#[derive(Debug, Clone)]
pub struct Mobile {
    socket: PathBuf,
}

impl Mobile {
    /// The mobile daemon of this network namespace (its default control socket).
    pub fn connect() -> Result<Mobile, ApiError> {
        Mobile::at(&default_socket(Role::Mobile))
    }

    /// The mobile daemon listening on `socket`.
    pub fn at(socket: &Path) -> Result<Mobile, ApiError> {
        let m = Mobile {
            socket: socket.to_owned(),
        };
        m.status()?;
        Ok(m)
    }

    fn call(&self, req: &Request) -> Result<serde_json::Value, ApiError> {
        match request(&self.socket, req)? {
            Response::Ok { value } => Ok(value),
            Response::Error { message } => Err(ApiError::Refused(message)),
        }
    }

    /// The daemon's status document (`docs/CONTROL.md`).
    pub fn status(&self) -> Result<serde_json::Value, ApiError> {
        self.call(&Request::Status)
    }

    /// Declares that the flow from local port `src_port` to `dst` belongs to `app`. Call it
    /// before the flow's first packet: [`Mobile::connect_tcp`] and [`Mobile::udp_socket`]
    /// do.
    pub fn register_flow(
        &self,
        tcp: bool,
        src_port: u16,
        dst: SocketAddr,
        app: &str,
    ) -> Result<(), ApiError> {
        self.call(&Request::RegisterFlow {
            proto: if tcp { "tcp" } else { "udp" }.to_owned(),
            src_port,
            dst,
            app: app.to_owned(),
        })
        .map(|_| ())
    }

    /// A TCP connection to `dst` placed as application `app` from its SYN on: the socket is
    /// bound first, its flow registered, then it connects.
    pub fn connect_tcp(&self, app: &str, dst: SocketAddr) -> Result<TcpStream, ApiError> {
        use socket2::{Domain, Socket, Type};
        let s =
            Socket::new(Domain::for_address(dst), Type::STREAM, None).map_err(ApiError::Socket)?;
        let any: SocketAddr = if dst.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        s.bind(&any.into()).map_err(ApiError::Socket)?;
        let port = s
            .local_addr()
            .map_err(ApiError::Socket)?
            .as_socket()
            .map_or(0, |a| a.port());
        self.register_flow(true, port, dst, app)?;
        s.connect(&dst.into()).map_err(ApiError::Socket)?;
        Ok(s.into())
    }

    /// A UDP socket connected to `dst`, its flow placed as application `app`.
    pub fn udp_socket(&self, app: &str, dst: SocketAddr) -> Result<UdpSocket, ApiError> {
        let any: SocketAddr = if dst.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let s = UdpSocket::bind(any).map_err(ApiError::Socket)?;
        let port = s.local_addr().map_err(ApiError::Socket)?.port();
        self.register_flow(false, port, dst, app)?;
        s.connect(dst).map_err(ApiError::Socket)?;
        Ok(s)
    }

    /// Moves every flow of `app` to the tunnel on `iface` (`auto`: back to the policy).
    pub fn handover_app(&self, app: &str, iface: &str) -> Result<(), ApiError> {
        self.call(&Request::Handover {
            flows: FlowSelector::App(app.to_owned()),
            to: iface.to_owned(),
        })
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake daemon that records requests and answers `ok`.
    fn fake_daemon(path: &Path) -> std::sync::mpsc::Receiver<Request> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut line = String::new();
                BufReader::new(c.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                let req: Request = serde_json::from_str(line.trim_end()).unwrap();
                let refuse = matches!(&req, Request::Handover { to, .. } if to == "nowhere");
                tx.send(req).unwrap();
                let resp = if refuse {
                    Response::Error {
                        message: "no tunnel on nowhere".into(),
                    }
                } else {
                    Response::Ok {
                        value: serde_json::json!({}),
                    }
                };
                let mut t = serde_json::to_string(&resp).unwrap();
                t.push('\n');
                c.write_all(t.as_bytes()).unwrap();
            }
        });
        rx
    }

    #[test]
    fn flows_are_registered_before_their_first_packet() {
        let path = std::env::temp_dir().join(format!("upmt-api-{}.sock", std::process::id()));
        let seen = fake_daemon(&path);
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = server.local_addr().unwrap();
        let m = Mobile::at(&path).unwrap();
        assert_eq!(seen.recv().unwrap(), Request::Status);
        let stream = m.connect_tcp("video", dst).unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(
            seen.recv().unwrap(),
            Request::RegisterFlow {
                proto: "tcp".into(),
                src_port: local.port(),
                dst,
                app: "video".into()
            }
        );
        let u = m.udp_socket("voip", dst).unwrap();
        assert!(matches!(
            seen.recv().unwrap(),
            Request::RegisterFlow { proto, src_port, .. } if proto == "udp" && src_port == u.local_addr().unwrap().port()
        ));
        m.handover_app("video", "umts0").unwrap();
        assert!(matches!(seen.recv().unwrap(), Request::Handover { .. }));
        let e = m.handover_app("video", "nowhere").unwrap_err();
        assert!(e.to_string().contains("no tunnel"), "{e}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn json_shapes() {
        let r = Request::RegisterFlow {
            proto: "tcp".into(),
            src_port: 40000,
            dst: "198.18.3.1:80".parse().unwrap(),
            app: "video".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cmd":"register_flow","proto":"tcp","src_port":40000,"dst":"198.18.3.1:80","app":"video"}"#
        );
    }
}
