//! Endpoint-level robustness: mutated and random datagrams fed to an associated registrar
//! and client (both path kinds) never panic, and the registrar never answers with more than
//! the request's size + 64 bytes (the error replies of the codec; challenges are smaller
//! than the padded REGISTER).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::time::Duration;

use proptest::prelude::*;
use signaling_proto::Path;
use util::Pair;

fn seeds() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/sip");
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    v.sort();
    v
}

fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, byte, op) in edits {
        let i = pos % (data.len() + 1);
        match op {
            0 if i < data.len() => data[i] = byte,
            1 => data.insert(i, byte),
            2 if i < data.len() => {
                data.remove(i);
            }
            _ => {}
        }
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn endpoints_survive_mutated_datagrams(
        seed in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..6),
        tunnel in any::<bool>(),
    ) {
        let mut p = Pair::default_pair();
        let now = p.now;
        p.mh().associate(now);
        p.drive_for(Duration::from_secs(1));
        let all = seeds();
        let data = mutate(seed.get(&all).clone(), &edits);
        let path = if tunnel {
            Path::Tunnel { link: 0, remote: Pair::mh_link_addr(0, 1) }
        } else {
            Path::Udp(Pair::mh_sip_addr(0))
        };
        p.inject_to_anchor(path, &data);
        while let Some(t) = p.anchor.poll_transmit(p.now) {
            prop_assert!(t.payload.len() <= data.len() + 64, "{} -> {}", data.len(), t.payload.len());
        }
        let now = p.now;
        let from = Path::Udp(p.anchor_sip);
        p.mh().handle_datagram(now, from, &data);
        p.drive_for(Duration::from_secs(40));
        prop_assert_eq!(p.anchor.associations(), 1);
    }
}
