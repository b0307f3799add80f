//! `appclass-classify tcp|udp SRC DST`: names the application owning a flow (SRC = the local
//! end, e.g. `100.64.0.2:40000`), as the mobile daemon would, in the current network
//! namespace. Prints `NAME SOURCE pid=PID uid=UID cgroup=ID` or `none`; for debugging and
//! tests.

use std::process::ExitCode;

use appclass::{Classifier, Config, Flow, Proto};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [proto, src, dst] = args.as_slice() else {
        eprintln!("usage: appclass-classify tcp|udp SRC_IP:PORT DST_IP:PORT");
        return ExitCode::from(2);
    };
    let proto = match proto.as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        p => {
            eprintln!("appclass-classify: unknown protocol {p:?}");
            return ExitCode::from(2);
        }
    };
    let (Ok(src), Ok(dst)) = (src.parse(), dst.parse()) else {
        eprintln!("appclass-classify: addresses are IP:PORT");
        return ExitCode::from(2);
    };
    let mut c = match Classifier::new(Config::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("appclass-classify: {e}");
            return ExitCode::from(1);
        }
    };
    match c.classify(&Flow { proto, src, dst }) {
        Some(a) => {
            let pid = a.pid.map_or("-".to_owned(), |p| p.to_string());
            let cg = a.cgroup_id.map_or("-".to_owned(), |p| p.to_string());
            println!(
                "{} {:?} pid={pid} uid={} cgroup={cg}",
                a.name, a.source, a.uid
            );
            ExitCode::SUCCESS
        }
        None => {
            println!("none");
            ExitCode::from(1)
        }
    }
}
