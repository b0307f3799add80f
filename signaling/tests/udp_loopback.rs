//! Our client against our registrar over real UDP sockets on loopback (root-free).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use signaling::{ClientDriver, RegistrarDriver};
use signaling_proto::client::{ClientConfig, Event};
use signaling_proto::credentials::Credentials;
use signaling_proto::registrar::{self, RegistrarConfig};

#[test]
fn associate_refresh_state_and_deregister_over_udp() {
    let creds =
        Credentials::from_toml("realm = \"upmt\"\n[[user]]\nname = \"mh1\"\npassword = \"pw1\"\n")
            .unwrap();
    let reg = RegistrarDriver::bind("127.0.0.1:0", RegistrarConfig::default(), creds)
        .unwrap()
        .spawn()
        .unwrap();
    let cfg = ClientConfig::new("mh1", "pw1", "upmt", reg.local_addr);
    let mut mh = ClientDriver::bind("127.0.0.1:0", cfg).unwrap();
    mh.client().associate(std::time::Instant::now());
    let ev = mh.poll(Duration::from_secs(5)).unwrap();
    let Some(Event::Associated { vipa, .. }) = ev else {
        panic!("expected Associated, got {ev:?}");
    };
    assert_eq!(
        reg.events.recv_timeout(Duration::from_secs(1)).unwrap(),
        registrar::Event::Associated {
            user: "mh1".into(),
            vipa,
            expires: Duration::from_secs(600)
        }
    );
    mh.client().deregister(std::time::Instant::now());
    assert_eq!(
        mh.poll(Duration::from_secs(5)).unwrap(),
        Some(Event::Deregistered)
    );
    assert!(matches!(
        reg.events.recv_timeout(Duration::from_secs(1)).unwrap(),
        registrar::Event::Released { .. }
    ));
    let stats = reg.stop().unwrap();
    assert_eq!(stats.registrations, 1);
    assert_eq!(stats.challenges, 1);
}
