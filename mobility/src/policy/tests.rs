//! Tests of the policy parser and engine: the paper's use case, hysteresis, rules, errors.

use super::*;

const PAPER: &str = include_str!("../../../examples/policy.toml");

fn q(state: PathState, rtt: f64) -> Quality {
    Quality {
        state,
        rtt_ms: Some(rtt),
        jitter_ms: Some(1.0),
        loss_pct: 0.0,
        sent: 0,
        received: 0,
        lost: 0,
    }
}
fn up(rtt: f64) -> Quality {
    q(PathState::Up, rtt)
}
fn down() -> Quality {
    q(PathState::Down, 0.0)
}
fn flow(proto: u8, dst: &str, port: u16) -> FlowMatchInput {
    FlowMatchInput {
        proto,
        dst: dst.parse().unwrap(),
        dst_port: port,
    }
}
fn web() -> FlowMatchInput {
    flow(6, "198.18.3.1", 80)
}
fn tun(i: &str) -> Decision {
    Decision::Tunnel(i.to_owned())
}
fn mv(app: &str, from: Decision, to: Decision) -> Move {
    Move {
        app: app.into(),
        from,
        to,
    }
}
const COSTS: &[(&str, u32)] = &[("wlan0", 1), ("umts0", 10)];

fn paper_engine(t: Instant) -> Engine {
    let mut e = Engine::new(Policy::parse(PAPER).unwrap(), COSTS);
    e.set_paths(t, &[("wlan0", up(20.0)), ("umts0", up(80.0))]);
    for app in ["video", "backup", "voip"] {
        e.decide(t, Some(app), &web());
    }
    e
}

#[test]
fn paper_initial_placement() {
    let t = Instant::now();
    let mut e = paper_engine(t);
    assert_eq!(e.current("video"), Some(&tun("wlan0")));
    assert_eq!(e.current("backup"), Some(&tun("wlan0")));
    assert_eq!(e.current("voip"), Some(&tun("umts0")));
    assert!(e.is_realtime("video") && e.is_realtime("voip") && !e.is_realtime("backup"));
    assert_eq!(e.realtime_paths(), vec!["umts0", "wlan0"]);
    assert_eq!(
        e.decisions(),
        vec![
            ("backup", &tun("wlan0")),
            ("video", &tun("wlan0")),
            ("voip", &tun("umts0"))
        ]
    );
    // Unknown application: the default policy.
    let p = e.decide(t, Some("firefox"), &web());
    assert_eq!(p.class, DEFAULT_CLASS);
    assert!(!p.realtime);
    assert_eq!(e.reevaluate(t), vec![]);
}

#[test]
fn paper_wlan_down_and_back() {
    let t0 = Instant::now();
    let mut e = paper_engine(t0);
    let t1 = t0 + Duration::from_secs(10);
    e.set_paths(t1, &[("wlan0", down()), ("umts0", up(80.0))]);
    let moves = e.reevaluate(t1);
    assert_eq!(
        moves,
        vec![
            mv("backup", tun("wlan0"), Decision::Wait),
            mv("video", tun("wlan0"), tun("umts0")),
        ]
    );
    // New backup flows wait too; voip stayed.
    assert_eq!(
        e.decide(t1, Some("backup"), &web()).decision,
        Decision::Wait
    );
    assert_eq!(e.current("voip"), Some(&tun("umts0")));

    // wlan0 back: backup resumes at once, video only after the hold-down.
    let t2 = t1 + Duration::from_secs(1);
    e.set_paths(t2, &[("wlan0", up(20.0)), ("umts0", up(80.0))]);
    assert_eq!(
        e.reevaluate(t2),
        vec![mv("backup", Decision::Wait, tun("wlan0"))]
    );
    let hold = e.policy().hysteresis.hold_down;
    assert_eq!(e.poll_timeout(), Some(t2 + hold));
    assert_eq!(e.reevaluate(t2 + hold - Duration::from_millis(1)), vec![]);
    assert_eq!(
        e.reevaluate(t2 + hold),
        vec![mv("video", tun("umts0"), tun("wlan0"))]
    );
    assert_eq!(e.current("voip"), Some(&tun("umts0")));
}

#[test]
fn all_down_everyone_waits_then_best_available() {
    let t0 = Instant::now();
    let mut e = paper_engine(t0);
    e.set_paths(t0, &[]);
    let moves = e.reevaluate(t0);
    assert_eq!(moves.len(), 3);
    assert!(moves.iter().all(|m| m.to == Decision::Wait));
    // umts0 comes back first: video and voip take it at once, backup keeps waiting.
    e.set_paths(t0, &[("umts0", up(80.0))]);
    let moves = e.reevaluate(t0);
    assert_eq!(
        moves,
        vec![
            mv("video", Decision::Wait, tun("umts0")),
            mv("voip", Decision::Wait, tun("umts0")),
        ]
    );
}

#[test]
fn quality_threshold_moves_with_margin_and_hold_down() {
    let t0 = Instant::now();
    let mut e = paper_engine(t0);
    let max = e.policy().apps["video"].limits.max_rtt_ms.unwrap();
    // RTT over video's limit on wlan0: video (real-time) moves at once; backup has no
    // limit and stays.
    let t1 = t0 + Duration::from_secs(1);
    e.set_paths(t1, &[("wlan0", up(max + 50.0)), ("umts0", up(80.0))]);
    assert_eq!(
        e.reevaluate(t1),
        vec![mv("video", tun("wlan0"), tun("umts0"))]
    );
    // Just under the limit: inside the margin band, not good yet.
    let t2 = t1 + Duration::from_secs(10);
    e.set_paths(t2, &[("wlan0", up(max - 1.0)), ("umts0", up(80.0))]);
    assert_eq!(e.reevaluate(t2), vec![]);
    assert_eq!(e.reevaluate(t2 + Duration::from_secs(60)), vec![]);
    // Clearly good: back after the hold-down only.
    let t3 = t2 + Duration::from_secs(61);
    e.set_paths(t3, &[("wlan0", up(max * 0.5)), ("umts0", up(80.0))]);
    assert_eq!(e.reevaluate(t3), vec![]);
    let hold = e.policy().hysteresis.hold_down;
    assert_eq!(
        e.reevaluate(t3 + hold),
        vec![mv("video", tun("umts0"), tun("wlan0"))]
    );
}

#[test]
fn non_realtime_tolerates_short_degradation() {
    let text = r#"
[app.bulk]
interfaces = ["wlan0", "umts0"]
max_loss_pct = 10
[hysteresis]
degrade_ms = 2000
"#;
    let t0 = Instant::now();
    let mut e = Engine::new(Policy::parse(text).unwrap(), COSTS);
    e.set_paths(t0, &[("wlan0", up(10.0)), ("umts0", up(50.0))]);
    assert_eq!(e.decide(t0, Some("bulk"), &web()).decision, tun("wlan0"));
    let mut lossy = up(10.0);
    lossy.loss_pct = 30.0;
    let t1 = t0 + Duration::from_secs(1);
    e.set_paths(t1, &[("wlan0", lossy), ("umts0", up(50.0))]);
    assert_eq!(e.reevaluate(t1), vec![]);
    assert_eq!(e.poll_timeout(), Some(t1 + Duration::from_secs(2)));
    assert_eq!(
        e.reevaluate(t1 + Duration::from_secs(2)),
        vec![mv("bulk", tun("wlan0"), tun("umts0"))]
    );
    // A path in doubt (keepalive missing) counts as degraded too.
    let mut e = Engine::new(Policy::parse(PAPER).unwrap(), COSTS);
    e.set_paths(t0, &[("wlan0", up(10.0)), ("umts0", up(50.0))]);
    e.decide(t0, Some("video"), &web());
    e.set_paths(
        t1,
        &[("wlan0", q(PathState::Doubt, 10.0)), ("umts0", up(50.0))],
    );
    assert_eq!(
        e.reevaluate(t1),
        vec![mv("video", tun("wlan0"), tun("umts0"))]
    );
}

#[test]
fn flapping_link_moves_at_most_once_per_hold_down() {
    let t0 = Instant::now();
    let mut e = paper_engine(t0);
    let hold = e.policy().hysteresis.hold_down;
    let mut video_moves = 0;
    let mut t = t0;
    // wlan0 flaps: 1 s down, 2 s up, for a minute.
    for i in 0..20 {
        t += Duration::from_secs(1);
        e.set_paths(t, &[("wlan0", down()), ("umts0", up(80.0))]);
        video_moves += e.reevaluate(t).iter().filter(|m| m.app == "video").count();
        t += Duration::from_secs(2);
        e.set_paths(t, &[("wlan0", up(20.0)), ("umts0", up(80.0))]);
        video_moves += e.reevaluate(t).iter().filter(|m| m.app == "video").count();
        let _ = i;
    }
    assert!(hold > Duration::from_secs(2));
    // One move away, none back (never up for a whole hold-down).
    assert_eq!(video_moves, 1);
    assert_eq!(e.current("video"), Some(&tun("umts0")));
    // Quality flapping around the limit: same.
    let max = e.policy().apps["video"].limits.max_rtt_ms.unwrap();
    let mut e = paper_engine(t0);
    let mut moves = 0;
    let mut t = t0;
    for i in 0..100 {
        t += Duration::from_millis(500);
        let rtt = if i % 2 == 0 { max + 10.0 } else { max - 10.0 };
        e.set_paths(t, &[("wlan0", up(rtt)), ("umts0", up(80.0))]);
        moves += e.reevaluate(t).iter().filter(|m| m.app == "video").count();
    }
    let windows = (t - t0).as_secs_f64() / hold.as_secs_f64();
    assert!(
        (moves as f64) <= windows.ceil(),
        "{moves} moves in {windows} hold-downs"
    );
    assert_eq!(moves, 1);
}

#[test]
fn dst_port_rules() {
    let text = r#"
[app.video]
interfaces = ["wlan0", "umts0"]
realtime = true

[app.voip]
interfaces = ["umts0", "wlan0"]
realtime = true

# RTP of the video app rides the voip policy.
[[rule]]
app = "video"
proto = "udp"
dst_port = "5004-5005"
use = "voip"

# Any DNS goes on umts0 only.
[[rule]]
name = "dns"
proto = "udp"
dst_port = 53
interfaces = ["umts0"]

[[rule]]
name = "lan"
dst = "198.18.3.0/24"
proto = "tcp"
interfaces = ["wlan0"]
never = ["umts0"]
"#;
    let t = Instant::now();
    let mut e = Engine::new(Policy::parse(text).unwrap(), COSTS);
    e.set_paths(t, &[("wlan0", up(10.0)), ("umts0", up(50.0))]);
    let rtp = e.decide(t, Some("video"), &flow(17, "198.18.3.1", 5004));
    assert_eq!((rtp.class.as_str(), rtp.decision), ("voip", tun("umts0")));
    assert!(rtp.realtime);
    let other = e.decide(t, Some("video"), &flow(17, "198.18.3.1", 5006));
    assert_eq!(
        (other.class.as_str(), other.decision),
        ("video", tun("wlan0"))
    );
    let dns = e.decide(t, None, &flow(17, "9.9.9.9", 53));
    assert_eq!((dns.class.as_str(), dns.decision), ("dns", tun("umts0")));
    let dns_tcp = e.decide(t, None, &flow(6, "9.9.9.9", 53));
    assert_eq!(dns_tcp.class, DEFAULT_CLASS);
    let lan = e.decide(t, Some("voip"), &flow(6, "198.18.3.7", 443));
    assert_eq!((lan.class.as_str(), lan.decision), ("lan", tun("wlan0")));
    let v6 = e.decide(t, None, &flow(6, "2001:db8::1", 443));
    assert_eq!(v6.class, DEFAULT_CLASS);
    // The inline rule class waits when wlan0 goes, never spills onto umts0.
    e.set_paths(t, &[("umts0", up(50.0))]);
    let moves = e.reevaluate(t);
    assert!(moves.contains(&mv("lan", tun("wlan0"), Decision::Wait)));
    assert!(moves.contains(&mv("video", tun("wlan0"), tun("umts0"))));
}

#[test]
fn any_cost_and_max_cost() {
    let text = r#"
[default]
interfaces = ["any"]
[app.cheap]
max_cost = 5
[app.eth-first]
interfaces = ["eth0", "any"]
"#;
    let t = Instant::now();
    let costs = &[("wlan0", 1), ("umts0", 10), ("eth0", 0)];
    let mut e = Engine::new(Policy::parse(text).unwrap(), costs);
    e.set_paths(t, &[("wlan0", up(10.0)), ("umts0", up(50.0))]);
    assert_eq!(e.decide(t, None, &web()).decision, tun("wlan0"));
    assert_eq!(
        e.decide(t, Some("eth-first"), &web()).decision,
        tun("wlan0")
    );
    assert_eq!(e.decide(t, Some("cheap"), &web()).decision, tun("wlan0"));
    e.set_paths(t, &[("umts0", up(50.0))]);
    let moves = e.reevaluate(t);
    assert!(moves.contains(&mv("cheap", tun("wlan0"), Decision::Wait)));
    assert!(moves.contains(&mv("default", tun("wlan0"), tun("umts0"))));
    // Pins: allowed ones only.
    assert!(e.pin("cheap", Some("umts0")).is_err());
    assert!(e.pin("nosuch", Some("umts0")).is_err());
    e.set_paths(t, &[("wlan0", up(10.0)), ("umts0", up(50.0))]);
    assert_eq!(
        e.reevaluate(t),
        vec![mv("cheap", Decision::Wait, tun("wlan0"))]
    );
    let t = t + Duration::from_secs(10);
    assert_eq!(
        e.reevaluate(t),
        vec![
            mv("default", tun("umts0"), tun("wlan0")),
            mv("eth-first", tun("umts0"), tun("wlan0")),
        ]
    );
    e.pin("default", Some("umts0")).unwrap();
    assert_eq!(
        e.reevaluate(t),
        vec![mv("default", tun("wlan0"), tun("umts0"))]
    );
    // Pinned, it stays even though wlan0 is preferred and stable.
    assert_eq!(e.reevaluate(t + Duration::from_secs(60)), vec![]);
    e.pin("default", None).unwrap();
    assert_eq!(
        e.reevaluate(t + Duration::from_secs(60)),
        vec![mv("default", tun("umts0"), tun("wlan0"))]
    );
}

#[test]
fn reload_keeps_paths_and_moves_what_changed() {
    let t = Instant::now();
    let mut e = paper_engine(t);
    let swapped = PAPER.replace(
        "interfaces = [\"umts0\", \"wlan0\"]",
        "interfaces = [\"wlan0\", \"umts0\"]",
    );
    assert_ne!(swapped, PAPER);
    e.reload(t, Policy::parse(&swapped).unwrap());
    // voip now prefers wlan0, which has been good for longer than the hold-down.
    let later = t + Duration::from_secs(60);
    assert_eq!(
        e.reevaluate(later),
        vec![mv("voip", tun("umts0"), tun("wlan0"))]
    );
    // A reload that drops an application forgets its class; a pin to an interface the
    // new policy forbids is ignored.
    e.pin("video", Some("umts0")).unwrap();
    assert_eq!(
        e.reevaluate(later),
        vec![mv("video", tun("wlan0"), tun("umts0"))]
    );
    let no_voip = "[app.video]\ninterfaces = [\"wlan0\"]\nnever = [\"umts0\"]\n";
    e.reload(later, Policy::parse(no_voip).unwrap());
    assert_eq!(e.current("voip"), None);
    assert_eq!(
        e.reevaluate(later),
        vec![mv("video", tun("umts0"), tun("wlan0"))]
    );
    assert_eq!(e.decide(later, Some("voip"), &web()).class, DEFAULT_CLASS);
    // A bad file is refused; the engine keeps its policy.
    assert!(Policy::parse("[app.video]\ninterfaces = \"wlan0\"").is_err());
    assert!(!e.is_realtime("video"));
}

fn err(text: &str) -> String {
    Policy::parse(text).unwrap_err().to_string()
}

#[test]
fn bad_policies_are_refused_with_a_useful_message() {
    let e = err("[app.video]\ninterfcaes = [\"wlan0\"]\n");
    assert!(
        e.contains("unknown field") && e.contains("interfcaes"),
        "{e}"
    );
    assert!(e.contains("line 2"), "{e}");
    let e = err("[app.video]\ninterfaces = []\n");
    assert!(
        e.contains("app.video.interfaces") && e.contains("empty"),
        "{e}"
    );
    let e = err("[app.video]\ninterfaces = [\"wlan0\", \"wlan0\"]\n");
    assert!(e.contains("twice"), "{e}");
    let e = err("[app.video]\ninterfaces = [\"wlan 0\"]\n");
    assert!(e.contains("not an interface name"), "{e}");
    let e = err("[app.backup]\ninterfaces = [\"wlan0\"]\nnever = [\"wlan0\"]\n");
    assert!(e.contains("both preferred"), "{e}");
    let e = err("[app.backup]\nnever = [\"any\"]\n");
    assert!(e.contains("app.backup.never"), "{e}");
    let e = err("[app.video]\nmax_loss_pct = 150\n");
    assert!(e.contains("app.video.max_loss_pct"), "{e}");
    let e = err("[app.video]\nmax_rtt_ms = -1\n");
    assert!(e.contains("max_rtt_ms"), "{e}");
    let e = err("[app.video]\n[[rule]]\napp = \"vidoe\"\nuse = \"video\"\n");
    assert!(
        e.contains("rule[0].app") && e.contains("vidoe") && e.contains("video"),
        "{e}"
    );
    let e = err("[[rule]]\nproto = \"udp\"\nuse = \"voip\"\n");
    assert!(
        e.contains("rule[0].use") && e.contains("none defined"),
        "{e}"
    );
    let e = err("[[rule]]\nproto = \"udp\"\n");
    assert!(e.contains("needs `use"), "{e}");
    let e = err("[app.a]\n[[rule]]\nproto = \"udp\"\nuse = \"a\"\ninterfaces = [\"x\"]\n");
    assert!(e.contains("not both"), "{e}");
    let e = err("[[rule]]\ninterfaces = [\"wlan0\"]\n");
    assert!(e.contains("at least one match"), "{e}");
    let e = err("[[rule]]\nproto = \"sctpx\"\ninterfaces = [\"wlan0\"]\n");
    assert!(e.contains("rule[0].proto"), "{e}");
    let e = err("[[rule]]\nproto = \"tcp\"\ndst_port = 70000\ninterfaces = [\"wlan0\"]\n");
    assert!(e.contains("rule[0].dst_port"), "{e}");
    let e = err("[[rule]]\nproto = \"tcp\"\ndst_port = \"90-80\"\ninterfaces = [\"w\"]\n");
    assert!(e.contains("rule[0].dst_port"), "{e}");
    let e = err("[[rule]]\ndst_port = 80\ninterfaces = [\"wlan0\"]\n");
    assert!(e.contains("needs proto"), "{e}");
    let e = err("[[rule]]\ndst = \"10.0.0.0/33\"\ninterfaces = [\"wlan0\"]\n");
    assert!(e.contains("rule[0].dst"), "{e}");
    let e = err("[app.default]\n");
    assert!(e.contains("reserved"), "{e}");
    let e = err("[app.\"a/b\"]\n");
    assert!(e.contains("app.a/b"), "{e}");
    let e = err("[hysteresis]\nmargin_pct = 100\n");
    assert!(e.contains("hysteresis.margin_pct"), "{e}");
    let e = err("[hysteresis]\nhold_down = 5\n");
    assert!(e.contains("unknown field"), "{e}");
    let e = err("[[rule]]\nname = \"x\"\nproto = \"tcp\"\ninterfaces = [\"a\"]\n[[rule]]\nname = \"x\"\nproto = \"udp\"\ninterfaces = [\"a\"]\n");
    assert!(e.contains("used twice"), "{e}");
    let e = err("[bogus]\n");
    assert!(e.contains("unknown field") && e.contains("bogus"), "{e}");
    // Interfaces checked against the mobile host's.
    let p = Policy::parse(PAPER).unwrap();
    assert!(p.check_interfaces(&["wlan0", "umts0"]).is_ok());
    let e = p.check_interfaces(&["wlan0"]).unwrap_err().to_string();
    assert!(e.contains("umts0"), "{e}");
}

#[test]
fn example_policy_is_the_papers() {
    let p = Policy::parse(PAPER).unwrap();
    let names: Vec<&str> = p.apps.keys().map(String::as_str).collect();
    assert_eq!(names, ["backup", "video", "voip"]);
    let n = |s: &str| IfaceChoice::Named(s.into());
    assert_eq!(p.apps["video"].interfaces, [n("wlan0"), n("umts0")]);
    assert!(p.apps["video"].realtime);
    assert_eq!(p.apps["backup"].interfaces, [n("wlan0")]);
    assert_eq!(p.apps["backup"].never, ["umts0"]);
    assert_eq!(p.apps["voip"].interfaces, [n("umts0"), n("wlan0")]);
    assert_eq!(p.interfaces(), ["umts0", "wlan0"]);
    // Serializable for `upmt policy show`.
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["apps"]["backup"]["never"][0], "umts0");
}

proptest::proptest! {
    #[test]
    fn parse_never_panics(text in "[a-z_\\[\\]\".=0-9 \n-]{0,200}") {
        let _ = Policy::parse(&text);
    }

    /// Random path histories: no class ever rides a forbidden or unusable interface,
    /// and a class waits only when none of its allowed interfaces is usable.
    #[test]
    fn engine_never_spills(steps in proptest::collection::vec(
        (0u64..3000, 0u8..4, 0u8..4, 1u32..400, 0u32..20), 1..60)) {
        let t0 = Instant::now();
        let mut e = Engine::new(Policy::parse(PAPER).unwrap(), COSTS);
        let mut t = t0;
        let st = |s: u8| [PathState::Up, PathState::Down, PathState::Doubt, PathState::Probing][s as usize];
        for (dt, w, u, rtt, loss) in steps {
            t += Duration::from_millis(dt);
            let mut qw = q(st(w), f64::from(rtt));
            qw.loss_pct = f64::from(loss);
            let qu = q(st(u), f64::from(rtt) / 2.0);
            e.set_paths(t, &[("wlan0", qw), ("umts0", qu)]);
            for app in ["video", "backup", "voip", "other"] {
                e.decide(t, Some(app), &web());
            }
            e.reevaluate(t);
            for (class, usable_allowed) in [
                ("video", vec![("wlan0", w), ("umts0", u)]),
                ("backup", vec![("wlan0", w)]),
                ("voip", vec![("umts0", u), ("wlan0", w)]),
            ] {
                let ok: Vec<&str> = usable_allowed
                    .iter()
                    .filter(|(_, s)| st(*s).usable())
                    .map(|(i, _)| *i)
                    .collect();
                match e.current(class) {
                    Some(Decision::Tunnel(i)) => {
                        proptest::prop_assert!(ok.contains(&i.as_str()), "{class} on {i}")
                    }
                    Some(Decision::Wait) => proptest::prop_assert!(ok.is_empty(), "{class} waits"),
                    None => proptest::prop_assert!(false, "{class} undecided"),
                }
            }
        }
    }
}

#[test]
fn cidr() {
    let c = Cidr::parse("198.18.0.0/15").unwrap();
    assert!(c.contains("198.19.255.1".parse().unwrap()));
    assert!(!c.contains("198.20.0.1".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    assert!(Cidr::parse("0.0.0.0/0")
        .unwrap()
        .contains("1.2.3.4".parse().unwrap()));
    let h = Cidr::parse("10.0.0.1").unwrap();
    assert_eq!(h.len, 32);
    assert!(!h.contains("10.0.0.2".parse().unwrap()));
    assert!(Cidr::parse("2001:db8::/32")
        .unwrap()
        .contains("2001:db8:1::1".parse().unwrap()));
    assert_eq!(Cidr::parse("x/3"), None);
    assert_eq!(Cidr::parse("::/129"), None);
    assert_eq!(c.to_string(), "198.18.0.0/15");
}
