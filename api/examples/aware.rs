//! An UPMT-aware application: fetches a web page over a TCP connection it declares as
//! application "video" (or the name given), so the mobile host places it by that
//! application's policy from its first packet.
//!
//! `cargo run -p upmt-api --example aware -- 198.18.3.1:8080 video` (inside the mobile
//! host's network namespace, with `upmt mobile` running there).

use std::io::{Read, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dst = args
        .next()
        .unwrap_or_else(|| "198.18.3.1:8080".into())
        .parse()?;
    let app = args.next().unwrap_or_else(|| "video".into());
    let upmt = upmt_api::Mobile::connect()?;
    let mut s = upmt.connect_tcp(&app, dst)?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = Vec::new();
    s.read_to_end(&mut body)?;
    println!("{} bytes from {dst} as application {app}", body.len());
    Ok(())
}
