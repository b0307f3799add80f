//! Sans-IO pair tests: anchor and mobile host(s) over a virtual network and clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod util;

use std::net::Ipv4Addr;
use std::time::Duration;

use signaling_proto::body::{FlowMatch, FlowMove, Proto, TunnelTarget};
use signaling_proto::client::Event as MhEvent;
use signaling_proto::pool::Ipv4Cidr;
use signaling_proto::registrar::{Event as AnEvent, RegistrarConfig, ReleaseReason};
use signaling_proto::Path;
use util::{Dir, Pair};

fn associated_vipa(p: &Pair, i: usize) -> Option<Ipv4Addr> {
    p.mh_events[i].iter().rev().find_map(|e| match e {
        MhEvent::Associated { vipa, .. } => Some(*vipa),
        _ => None,
    })
}

fn associate(p: &mut Pair) -> Ipv4Addr {
    let now = p.now;
    p.mh().associate(now);
    p.drive_for(Duration::from_secs(1));
    associated_vipa(p, 0).expect("associated")
}

#[test]
fn association_register_401_register_200_with_vipa() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    assert!("100.64.0.0/16".parse::<Ipv4Cidr>().unwrap().contains(vipa));
    let lines: Vec<String> = p.log.iter().map(|s| s.first_line()).collect();
    assert_eq!(
        lines,
        [
            "REGISTER sip:upmt SIP/2.0",
            "SIP/2.0 401 Unauthorized",
            "REGISTER sip:upmt SIP/2.0",
            "SIP/2.0 200 OK"
        ]
    );
    let ok = p.sent("SIP/2.0 200")[0].text();
    assert!(ok.contains(&format!("\r\nVIpAddr: {vipa}\r\n")), "{ok}");
    assert!(ok.contains("\r\nExpires: 120\r\n"));
    // SHA-256 preferred.
    assert!(p.sent("REGISTER")[1].text().contains("algorithm=SHA-256"));
    assert!(
        matches!(&p.anchor_events[..], [AnEvent::Associated { user, vipa: v, .. }] if user == "mh1" && *v == vipa)
    );
    assert_eq!(p.anchor.associations(), 1);
    assert!(p.mh().is_associated());
}

#[test]
fn refresh_before_expiry_keeps_vipa_and_carries_it() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    p.drive_for(Duration::from_secs(170));
    // Refreshed at 83 s and 166 s (granted 120 s minus Timer F and 5 s margin), never expired.
    assert!(p.mh_events[0].contains(&MhEvent::Refreshed {
        vipa,
        expires: Duration::from_secs(120)
    }));
    assert_eq!(p.anchor.associations(), 1);
    let regs = p.sent("REGISTER");
    assert_eq!(regs.len(), 4, "two refreshes, no new challenge");
    assert!(regs[2].text().contains(&format!("VIpAddr: {vipa}")));
    assert!(regs[2].text().contains("nc=00000002"));
    assert!(regs[3].text().contains("nc=00000003"));
    assert_eq!(regs[2].at.as_secs(), 83);
    assert_eq!(regs[3].at.as_secs(), 166);
    assert!(!p
        .anchor_events
        .iter()
        .any(|e| matches!(e, AnEvent::Released { .. })));
}

#[test]
fn expiry_frees_vipa_then_same_host_gets_it_back() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    let now = p.now;
    p.mh()
        .setup_tunnel(now, 1, "198.18.2.1:1800".parse().unwrap())
        .unwrap();
    p.drive_for(Duration::from_secs(1));
    // Cut the link both ways.
    p.drop = Some(Box::new(|_, _| true));
    p.drive_for(Duration::from_secs(130));
    assert_eq!(p.anchor.associations(), 0);
    let released = p
        .anchor_events
        .iter()
        .find_map(|e| match e {
            AnEvent::Released {
                user,
                vipa,
                tunnels,
                reason,
            } => Some((user.clone(), *vipa, tunnels.clone(), *reason)),
            _ => None,
        })
        .expect("released");
    assert_eq!(
        released,
        ("mh1".to_owned(), vipa, vec![1], ReleaseReason::Expired)
    );
    assert!(p.mh_events[0].contains(&MhEvent::AssociationLost));
    // Meanwhile another host associates (takes the next free address, not ours).
    let other = p.add_client("mh2", "pw2");
    p.drop = Some(Box::new(|d, _| {
        matches!(d, Dir::ToAnchor(0) | Dir::ToMh(0))
    }));
    let now = p.now;
    p.mhs[other].associate(now);
    p.drive_for(Duration::from_secs(1));
    assert_ne!(associated_vipa(&p, other), Some(vipa));
    // The link comes back: re-association with backoff, same VIPA.
    p.drop = None;
    p.drive_for(Duration::from_secs(40));
    assert_eq!(associated_vipa(&p, 0), Some(vipa));
    assert_eq!(p.anchor.vipa_of("mh1"), Some(vipa));
}

#[test]
fn fourth_register_leaves_at_3_5_s_when_three_are_lost() {
    let mut p = Pair::default_pair();
    let mut dropped = 0;
    p.drop = Some(Box::new(move |d, b| {
        if d == Dir::ToAnchor(0) && b.starts_with(b"REGISTER") && dropped < 3 {
            dropped += 1;
            return true;
        }
        false
    }));
    let now = p.now;
    p.mh().associate(now);
    p.drive_for(Duration::from_secs(5));
    let regs = p.sent("REGISTER");
    let times: Vec<u128> = regs.iter().map(|s| s.at.as_millis()).collect();
    // T1 = 500 ms: sends at 0, T1, T1+2T1, T1+2T1+4T1 = 3.5 s.
    assert_eq!(&times[..4], &[0, 500, 1500, 3500]);
    assert_eq!(
        regs[3].bytes, regs[0].bytes,
        "retransmission is byte-identical"
    );
    assert!(associated_vipa(&p, 0).is_some());
}

#[test]
fn duplicate_request_answered_from_transaction() {
    let mut p = Pair::default_pair();
    associate(&mut p);
    let authed = p.sent("REGISTER")[1].bytes.clone();
    let first_ok = p.sent("SIP/2.0 200")[0].bytes.clone();
    let before = p.anchor_events.len();
    let src = Path::Udp(Pair::mh_sip_addr(0));
    p.inject_to_anchor(src, &authed);
    let t = p.anchor.poll_transmit(p.now).expect("answered");
    assert_eq!(t.payload, first_ok, "same response, same tag");
    assert_eq!(p.anchor.stats().retransmissions, 1);
    assert!(p.anchor.poll_event().is_none());
    assert_eq!(p.anchor_events.len(), before);
    // After Timer J (32 s) the transaction is gone; the same bytes are now a replayed
    // nonce-count and get a fresh challenge, not a second binding update.
    p.drive_for(Duration::from_secs(33));
    assert_eq!(p.anchor.transactions(), 0);
    p.inject_to_anchor(src, &authed);
    let t = p.anchor.poll_transmit(p.now).unwrap();
    assert!(t.payload.starts_with(b"SIP/2.0 401"));
}

#[test]
fn bad_password_gets_401_then_403() {
    let mut p = Pair::new(RegistrarConfig::default(), 0);
    p.add_client("mh1", "wrong");
    let now = p.now;
    p.mh().associate(now);
    p.drive_for(Duration::from_secs(1));
    let lines: Vec<String> = p.log.iter().map(|s| s.first_line()).collect();
    assert_eq!(lines[1], "SIP/2.0 401 Unauthorized");
    assert_eq!(lines[3], "SIP/2.0 403 Forbidden");
    assert!(p.mh_events[0].contains(&MhEvent::AuthFailed { status: 403 }));
    assert_eq!(p.anchor.associations(), 0);
    assert_eq!(p.anchor.stats().auth_failures, 1);
    // Unknown user: same answer (no user enumeration).
    let mut q = Pair::new(RegistrarConfig::default(), 0);
    q.add_client("nobody", "x");
    let now = q.now;
    q.mh().associate(now);
    q.drive_for(Duration::from_secs(1));
    assert_eq!(q.log[3].first_line(), "SIP/2.0 403 Forbidden");
}

#[test]
fn forged_nonce_rechallenged_and_identity_mismatch_forbidden() {
    let mut p = Pair::default_pair();
    associate(&mut p);
    let authed = p.sent("REGISTER")[1].text();
    let src = Path::Udp(Pair::mh_sip_addr(0));
    // Tamper with the nonce (new branch so it is a new transaction).
    let i = authed.find("nonce=\"").unwrap() + 7;
    let mut forged = authed.clone();
    forged.replace_range(i..i + 1, if &authed[i..i + 1] == "0" { "1" } else { "0" });
    let forged = forged.replacen("branch=z9hG4bK", "branch=z9hG4bKx", 1);
    p.inject_to_anchor(src, forged.as_bytes());
    assert!(p
        .anchor
        .poll_transmit(p.now)
        .unwrap()
        .payload
        .starts_with(b"SIP/2.0 401"));
    // Someone else's To with mh1's credentials.
    let other = authed
        .replace("To: <sip:mh1@upmt>", "To: <sip:mh2@upmt>")
        .replacen("branch=z9hG4bK", "branch=z9hG4bKy", 1);
    p.inject_to_anchor(src, other.as_bytes());
    assert!(p
        .anchor
        .poll_transmit(p.now)
        .unwrap()
        .payload
        .starts_with(b"SIP/2.0 403"));
    // A Digest `uri` that is not a SIP URI.
    let moved = authed
        .replacen("uri=\"sip:upmt\"", "uri=\"http://upmt/\"", 1)
        .replacen("branch=z9hG4bK", "branch=z9hG4bKz", 1);
    assert_ne!(moved, authed);
    p.inject_to_anchor(src, moved.as_bytes());
    let r = p.anchor.poll_transmit(p.now).unwrap().payload;
    assert!(
        r.starts_with(b"SIP/2.0 403 Digest URI Mismatch"),
        "{}",
        String::from_utf8_lossy(&r)
    );
}

#[test]
fn pool_exhaustion_503_with_retry_after() {
    let cfg = RegistrarConfig {
        pool: "10.99.0.0/30".parse().unwrap(), // one assignable address
        ..RegistrarConfig::default()
    };
    let mut p = Pair::new(cfg, 2);
    let now = p.now;
    p.mhs[0].associate(now);
    p.drive_for(Duration::from_secs(1));
    p.mhs[1].associate(now);
    p.drive_for(Duration::from_secs(1));
    assert_eq!(associated_vipa(&p, 0), Some(Ipv4Addr::new(10, 99, 0, 2)));
    assert!(p.mh_events[1].contains(&MhEvent::Rejected {
        status: 503,
        retry_after: Some(Duration::from_secs(60))
    }));
    let r503 = p.sent("SIP/2.0 503")[0].text();
    assert!(r503.contains("Retry-After: 60\r\n"), "{r503}");
    assert_eq!(p.anchor.stats().pool_exhausted, 1);
    // When mh1 de-registers, mh2 gets the address on its retry (after Retry-After).
    let now = p.now;
    p.mhs[0].deregister(now);
    p.drive_for(Duration::from_secs(61));
    assert!(p.mh_events[0].contains(&MhEvent::Deregistered));
    assert_eq!(associated_vipa(&p, 1), Some(Ipv4Addr::new(10, 99, 0, 2)));
}

#[test]
fn deregistration_frees_vipa() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    let now = p.now;
    p.mh().deregister(now);
    p.drive_for(Duration::from_secs(1));
    assert!(p
        .sent("REGISTER")
        .last()
        .unwrap()
        .text()
        .contains("Expires: 0\r\n"));
    assert!(p.anchor_events.contains(&AnEvent::Released {
        user: "mh1".into(),
        vipa,
        tunnels: vec![],
        reason: ReleaseReason::Deregistered
    }));
    assert_eq!(p.anchor.associations(), 0);
    assert!(p.mh_events[0].contains(&MhEvent::Deregistered));
    assert!(!p.mh().is_associated());
}

#[test]
fn tunnel_setup_learns_nat_mapping() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    let now = p.now;
    p.mhs[0].setup_tunnel(now, 1, p.anchor_tunnel).unwrap();
    p.mhs[0].setup_tunnel(now, 2, p.anchor_tunnel).unwrap();
    p.drive_for(Duration::from_secs(1));
    let ready: Vec<_> = p.mh_events[0]
        .iter()
        .filter_map(|e| match e {
            MhEvent::TunnelReady {
                link,
                tunnel_id,
                mapped,
            } => Some((*link, *tunnel_id, *mapped)),
            _ => None,
        })
        .collect();
    assert_eq!(ready.len(), 2);
    assert!(
        ready.contains(&(1, 1, Pair::mh_link_addr(0, 1)))
            || ready.contains(&(1, 2, Pair::mh_link_addr(0, 1)))
    );
    assert!(p.anchor_events.iter().any(|e| matches!(e,
        AnEvent::TunnelUp { user, vipa: v, remote, .. } if user == "mh1" && *v == vipa && *remote == Pair::mh_link_addr(0, 2))));
    // Setting up the same tunnel again returns the same ID.
    let now = p.now;
    p.mhs[0].setup_tunnel(now, 1, p.anchor_tunnel).unwrap();
    p.drive_for(Duration::from_secs(1));
    let again = p.mh_events[0].iter().rev().find_map(|e| match e {
        MhEvent::TunnelReady {
            link: 1, tunnel_id, ..
        } => Some(*tunnel_id),
        _ => None,
    });
    assert_eq!(again, ready.iter().find(|r| r.0 == 1).map(|r| r.1));
    // Tunnel setup outside a tunnel is refused.
    let msg = p.sent("MESSAGE")[0].bytes.clone();
    let msg = String::from_utf8(msg)
        .unwrap()
        .replacen("branch=z9hG4bK", "branch=z9hG4bKq", 1);
    p.inject_to_anchor(Path::Udp(Pair::mh_sip_addr(0)), msg.as_bytes());
    let r = p.anchor.poll_transmit(p.now).unwrap();
    assert!(
        r.payload.starts_with(b"SIP/2.0 403"),
        "{}",
        String::from_utf8_lossy(&r.payload)
    );
}

fn flows(vipa: Ipv4Addr) -> Vec<FlowMove> {
    vec![
        FlowMove {
            flow: FlowMatch {
                proto: Some(Proto::Tcp),
                src: Some(vipa),
                sport: Some(40000),
                dst: Some("198.18.3.1/32".parse().unwrap()),
                dport: Some(80),
            },
            tunnel: TunnelTarget::Any,
        },
        FlowMove {
            flow: FlowMatch {
                proto: Some(Proto::Udp),
                dport: Some(5004),
                ..FlowMatch::default()
            },
            tunnel: TunnelTarget::Id(2),
        },
        FlowMove {
            flow: FlowMatch {
                src: Some(Ipv4Addr::new(100, 64, 9, 9)),
                ..FlowMatch::default()
            },
            tunnel: TunnelTarget::Any,
        },
        FlowMove {
            flow: FlowMatch::default(),
            tunnel: TunnelTarget::Id(99),
        },
    ]
}

fn setup_two_tunnels(p: &mut Pair) -> Ipv4Addr {
    let vipa = associate(p);
    let now = p.now;
    let at = p.anchor_tunnel;
    p.mh().setup_tunnel(now, 1, at).unwrap();
    p.drive_for(Duration::from_millis(100));
    let now = p.now;
    p.mh().setup_tunnel(now, 2, at).unwrap();
    p.drive_for(Duration::from_millis(100));
    vipa
}

#[test]
fn handover_many_flows_in_one_message() {
    let mut p = Pair::default_pair();
    let vipa = setup_two_tunnels(&mut p);
    let now = p.now;
    let path = Path::Tunnel {
        link: 1,
        remote: p.anchor_tunnel,
    };
    let id = p.mh().request_handover(now, path, flows(vipa)).unwrap();
    p.drive_for(Duration::from_secs(1));
    let results = p.mh_events[0]
        .iter()
        .find_map(|e| match e {
            MhEvent::HandoverAck { id: i, results } if *i == id => Some(results.clone()),
            _ => None,
        })
        .expect("acked");
    let tunnels: Vec<Option<u32>> = results.iter().map(|r| r.tunnel).collect();
    assert_eq!(tunnels, [Some(1), Some(2), None, None]);
    assert!(results[2].error.as_deref().unwrap().contains("VIPA"));
    let moves = p
        .anchor_events
        .iter()
        .find_map(|e| match e {
            AnEvent::Handover { moves, .. } => Some(moves.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(moves.len(), 2);
    assert_eq!(p.sent("MESSAGE").len(), 3, "two setups + one handover");
}

#[test]
fn replayed_handover_rejected() {
    let mut p = Pair::default_pair();
    let vipa = setup_two_tunnels(&mut p);
    let now = p.now;
    let path = Path::Tunnel {
        link: 1,
        remote: p.anchor_tunnel,
    };
    p.mh().request_handover(now, path, flows(vipa)).unwrap();
    p.drive_for(Duration::from_secs(1));
    let handovers = |p: &Pair| {
        p.anchor_events
            .iter()
            .filter(|e| matches!(e, AnEvent::Handover { .. }))
            .count()
    };
    assert_eq!(handovers(&p), 1);
    let msg = p.sent("MESSAGE").last().unwrap().text();
    let from = Path::Tunnel {
        link: 0,
        remote: Pair::mh_link_addr(0, 1),
    };
    // Immediate replay with a new branch (not a retransmission): 403 Replayed.
    let replay = msg.replacen("branch=z9hG4bK", "branch=z9hG4bKr", 1);
    p.inject_to_anchor(from, replay.as_bytes());
    let r = p.anchor.poll_transmit(p.now).unwrap();
    assert!(
        r.payload.starts_with(b"SIP/2.0 403 Replayed"),
        "{}",
        String::from_utf8_lossy(&r.payload)
    );
    // Exact replay after the transaction is gone (Timer J): 403 Replayed too.
    p.drive_for(Duration::from_secs(40));
    p.inject_to_anchor(from, msg.as_bytes());
    let r = p.anchor.poll_transmit(p.now).unwrap();
    assert!(r.payload.starts_with(b"SIP/2.0 403 Replayed"));
    // Tampered body with a fresh sequence number: bad MAC.
    let tampered = msg
        .replacen("branch=z9hG4bK", "branch=z9hG4bKt", 1)
        .replace(", seq=3,", ", seq=9,")
        .replace("\"dport\":80", "\"dport\":81");
    p.inject_to_anchor(from, tampered.as_bytes());
    let r = p.anchor.poll_transmit(p.now).unwrap();
    assert!(
        r.payload.starts_with(b"SIP/2.0 403 Bad MAC"),
        "{}",
        String::from_utf8_lossy(&r.payload)
    );
    assert_eq!(handovers(&p), 1);
    assert_eq!(p.anchor.stats().replays, 2);
}

#[test]
fn message_before_association_is_refused_locally() {
    let mut p = Pair::default_pair();
    let now = p.now;
    let at = p.anchor_tunnel;
    assert!(p.mh().setup_tunnel(now, 1, at).is_err());
}

#[test]
fn anchor_restart_triggers_reassociation() {
    let mut p = Pair::default_pair();
    let vipa = associate(&mut p);
    // The anchor restarts with empty state.
    p.anchor = signaling_proto::registrar::Registrar::new(
        p.now,
        RegistrarConfig::default(),
        util::creds(),
        Box::new(<rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9)),
    )
    .unwrap();
    let now = p.now;
    let at = p.anchor_tunnel;
    p.mh().setup_tunnel(now, 1, at).unwrap();
    p.drive_for(Duration::from_secs(2));
    assert!(p.mh_events[0].contains(&MhEvent::TunnelFailed {
        link: 1,
        status: Some(403)
    }));
    assert!(p.mh_events[0].contains(&MhEvent::AssociationLost));
    // Re-associated, and the new anchor honoured the VIpAddr the host carried.
    assert_eq!(associated_vipa(&p, 0), Some(vipa));
}

#[test]
fn anchor_loss_times_out_and_retries_with_backoff() {
    let mut p = Pair::default_pair();
    associate(&mut p);
    p.drop = Some(Box::new(|_, _| true));
    // Refresh at 83 s times out at 83 + 32 s.
    p.drive_for(Duration::from_secs(83 + 32 + 30));
    assert!(p.mh_events[0].contains(&MhEvent::AssociationLost));
    let regs: Vec<Duration> = p.sent("REGISTER").iter().map(|s| s.at).collect();
    assert!(regs.len() > 5);
    // Nothing is sent in a burst: at least T1 between two REGISTERs (retransmissions
    // overlap only when a new attempt starts).
    for w in regs.windows(2) {
        assert!(w[1] >= w[0]);
    }
}

#[test]
fn rate_limit_drops_floods() {
    let cfg = RegistrarConfig {
        rate_limit: Some(signaling_proto::rate::RateLimit {
            per_second: 1.0,
            burst: 5.0,
            max_sources: 10,
        }),
        ..RegistrarConfig::default()
    };
    let mut p = Pair::new(cfg, 1);
    let opts = b"OPTIONS sip:upmt SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nMax-Forwards: 70\r\nFrom: <sip:x@h>;tag=1\r\nTo: <sip:upmt>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    for _ in 0..20 {
        p.inject_to_anchor(Path::Udp(Pair::mh_sip_addr(0)), opts);
    }
    assert_eq!(p.anchor.stats().rate_limited, 15);
}

#[test]
fn stale_nonce_on_refresh_rotates_key_and_messages_still_verify() {
    let mut p = Pair::default_pair();
    let vipa = setup_two_tunnels(&mut p);
    // Refreshes at 83, 166, 249 s reuse the nonce; the one at 332 s finds it stale (300 s).
    p.drive_for(Duration::from_secs(340));
    let stale = p.sent("SIP/2.0 401");
    assert_eq!(stale.len(), 2, "initial challenge + one stale re-challenge");
    assert!(stale[1].text().contains("stale=true"));
    assert_eq!(p.anchor.associations(), 1);
    assert_eq!(p.anchor.vipa_of("mh1"), Some(vipa));
    assert!(!p.mh_events[0].contains(&MhEvent::AssociationLost));
    // New key: a handover signed with it verifies.
    let kid_before = p.sent("MESSAGE")[0].text();
    let now = p.now;
    let path = Path::Tunnel {
        link: 1,
        remote: p.anchor_tunnel,
    };
    let id = p.mh().request_handover(now, path, flows(vipa)).unwrap();
    p.drive_for(Duration::from_secs(1));
    assert!(p.mh_events[0]
        .iter()
        .any(|e| matches!(e, MhEvent::HandoverAck { id: i, .. } if *i == id)));
    let kid = |t: &str| t.split("kid=").nth(1).unwrap()[..16].to_owned();
    assert_ne!(
        kid(&kid_before),
        kid(&p.sent("MESSAGE").last().unwrap().text())
    );
}

#[test]
fn lost_message_response_is_answered_from_the_transaction() {
    let mut p = Pair::default_pair();
    let vipa = setup_two_tunnels(&mut p);
    let mut dropped = false;
    p.drop = Some(Box::new(move |d, b| {
        let is_ack = d == Dir::ToMh(0) && String::from_utf8_lossy(b).contains("handover_ack");
        if is_ack && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    let now = p.now;
    let path = Path::Tunnel {
        link: 1,
        remote: p.anchor_tunnel,
    };
    let id = p.mh().request_handover(now, path, flows(vipa)).unwrap();
    p.drive_for(Duration::from_secs(2));
    let handovers = p
        .anchor_events
        .iter()
        .filter(|e| matches!(e, AnEvent::Handover { .. }))
        .count();
    assert_eq!(handovers, 1, "the retransmission is not processed twice");
    assert_eq!(p.anchor.stats().retransmissions, 1);
    assert_eq!(p.anchor.stats().replays, 0);
    assert!(p.mh_events[0]
        .iter()
        .any(|e| matches!(e, MhEvent::HandoverAck { id: i, .. } if *i == id)));
    let msgs = p.sent("MESSAGE");
    let last_two = &msgs[msgs.len() - 2..];
    assert_eq!(last_two[0].bytes, last_two[1].bytes);
    assert_eq!((last_two[1].at - last_two[0].at).as_millis(), 500);
}
