//! The interface monitor: a thread on a `NETLINK_ROUTE` socket that sends the kernel's link
//! and address events to the daemon (parsing is in `mobility::netlink`).

use std::io;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use mobility::netlink::{self, NetEvent, RTMGRP_IPV4_IFADDR, RTMGRP_LINK};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Starts the monitor. It first reports every existing link and IPv4 address (a dump), then
/// every change, until the receiving side of `tx` is dropped.
pub fn spawn(tx: Sender<NetEvent>) -> io::Result<JoinHandle<()>> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind(&SocketAddr::new(0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR))?;
    let _ = sock.set_rx_buf_sz(1 << 20);
    let kernel = SocketAddr::new(0, 0);
    sock.send_to(&netlink::dump_links(1), &kernel, 0)?;
    std::thread::Builder::new()
        .name("upmt-netmon".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // One dump at a time per socket: addresses after links.
            let mut addrs_asked = false;
            loop {
                let n = match sock.recv(&mut &mut buf[..], 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // ENOBUFS: the kernel dropped events; re-dump to resynchronise.
                        tracing::warn!("netlink receive: {e}; re-reading interfaces");
                        addrs_asked = false;
                        if sock.send_to(&netlink::dump_links(1), &kernel, 0).is_err() {
                            return;
                        }
                        continue;
                    }
                };
                for e in netlink::parse(buf.get(..n).unwrap_or(&[])) {
                    if e == NetEvent::DumpDone && !addrs_asked {
                        addrs_asked = true;
                        let _ = sock.send_to(&netlink::dump_ipv4_addrs(2), &kernel, 0);
                    }
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Needs no privilege: every network namespace has `lo` with 127.0.0.1.
    #[test]
    fn dump_reports_loopback() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let _t = spawn(tx).unwrap();
        let mut lo_index = None;
        let mut lo_addr = false;
        while let Ok(e) = rx.recv_timeout(Duration::from_secs(5)) {
            match e {
                NetEvent::Link {
                    index,
                    name: Some(n),
                    ..
                } if n == "lo" => lo_index = Some(index),
                NetEvent::AddrAdded { index, addr, .. }
                    if Some(index) == lo_index && addr.is_loopback() =>
                {
                    lo_addr = true;
                    break;
                }
                _ => {}
            }
        }
        assert!(lo_index.is_some() && lo_addr);
    }
}
