//! The daemons' control interface: newline-delimited JSON over a Unix stream socket.
//!
//! One request per line, one response per line. The daemon side runs [`Server`] on its own
//! thread and hands each request to the daemon's control loop over a channel, with a
//! one-shot reply channel; the CLI side is [`request`]. The JSON is documented in
//! `docs/CONTROL.md`.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

/// Longest request line accepted (a handover of many flows fits easily).
const MAX_REQUEST: usize = 64 * 1024;

pub use upmt_api::{
    default_client_socket, default_socket, request, FlowSelector, Request, Response, Role,
};

/// A request taken off the socket, with the way back to its client.
#[derive(Debug)]
pub struct Incoming {
    /// What the client asked.
    pub request: Request,
    /// Where the answer goes (the client waits on it).
    pub reply: Sender<Response>,
}

/// The daemon side of the control socket.
#[derive(Debug)]
pub struct Server {
    path: PathBuf,
}

impl Server {
    /// Binds the socket (replacing a stale one left by a crash) and serves it on a thread,
    /// sending each request to `to_daemon`.
    pub fn start(path: &Path, to_daemon: Sender<Incoming>) -> std::io::Result<Server> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is the daemon already running?",
                    path.display()
                ),
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std::thread::Builder::new()
            .name("upmt-control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let tx = to_daemon.clone();
                    // One short-lived thread per client: control traffic is rare.
                    let _ = std::thread::Builder::new()
                        .name("upmt-control-client".into())
                        .spawn(move || serve_client(stream, tx));
                }
            })?;
        Ok(Server {
            path: path.to_owned(),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve_client(stream: UnixStream, to_daemon: Sender<Incoming>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream).take(MAX_REQUEST as u64);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = match serde_json::from_str::<Request>(line.trim_end()) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(request) => {
                let (reply, answer) = bounded(1);
                if to_daemon.send(Incoming { request, reply }).is_err() {
                    return;
                }
                answer
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or(Response::Error {
                        message: "the daemon did not answer in 10 s".into(),
                    })
            }
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() {
            return;
        }
        reader.set_limit(MAX_REQUEST as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        let h = Request::Handover {
            flows: FlowSelector::App("video".into()),
            to: "umts0".into(),
        };
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"handover","flows":{"app":"video"},"to":"umts0"}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), h);
        let all: Request =
            serde_json::from_str(r#"{"cmd":"handover","flows":"all","to":"wlan0"}"#).unwrap();
        assert!(matches!(
            all,
            Request::Handover {
                flows: FlowSelector::All,
                ..
            }
        ));
    }

    #[test]
    fn round_trip_over_a_socket() {
        let path = std::env::temp_dir().join(format!("upmt-ctl-{}.sock", std::process::id()));
        let (tx, rx) = crossbeam_channel::unbounded::<Incoming>();
        let server = Server::start(&path, tx).unwrap();
        let daemon = std::thread::spawn(move || {
            let inc = rx.recv().unwrap();
            assert_eq!(inc.request, Request::Status);
            inc.reply
                .send(Response::Ok {
                    value: serde_json::json!({"vipa": "100.64.0.2"}),
                })
                .unwrap();
        });
        let r = request(&path, &Request::Status).unwrap();
        assert_eq!(
            r,
            Response::Ok {
                value: serde_json::json!({"vipa": "100.64.0.2"})
            }
        );
        daemon.join().unwrap();
        // A second server on the same live socket is refused.
        let (tx2, _rx2) = crossbeam_channel::unbounded();
        assert!(Server::start(&path, tx2).is_err());
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn garbage_gets_an_error_not_a_hangup() {
        let path = std::env::temp_dir().join(format!("upmt-ctl-bad-{}.sock", std::process::id()));
        let (tx, _rx) = crossbeam_channel::unbounded::<Incoming>();
        let _server = Server::start(&path, tx).unwrap();
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(b"{not json\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(line.contains("bad request"), "{line}");
    }
}
