//! Codec tests: valid messages, every rejection with its status, RFC 4475-style torture
//! cases, and properties (no panic on arbitrary bytes; round trip of what we build; rsip,
//! an independent parser, accepts what we build).

use super::*;
use proptest::prelude::*;

const REGISTER: &str = "REGISTER sip:upmt SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.100.25:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:mh1@upmt>;tag=456248\r\n\
To: <sip:mh1@upmt>\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:mh1@192.168.100.25>;expires=600\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

const MESSAGE: &str = "MESSAGE sip:upmt SIP/2.0\r\n\
v: SIP/2.0/UDP a:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP [::1];branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
f: \"Mobile \\\"1\\\"\" <sip:mh1@upmt>;tag=1\r\n\
t: sip:upmt\r\n\
i: abc\r\n\
CSeq: 7 MESSAGE\r\n\
UPMT-Auth: kid=0011223344556677, seq=7, mac=00\r\n\
c: application/json\r\n\
l: 29\r\n\r\n{\"v\":1,\"type\":\"tunnel_setup\"}";

const RESPONSE: &str = "SIP/2.0 401 Unauthorized\r\n\
Via: SIP/2.0/UDP mh.invalid;branch=z9hG4bK9;rport=4000;received=198.18.0.1\r\n\
From: <sip:mh1@upmt>;tag=ef754217\r\n\
To: <sip:mh1@upmt>;tag=abc\r\n\
Call-ID: 9b4d58adc17fdd99@mh.invalid\r\n\
CSeq: 1 REGISTER\r\n\
WWW-Authenticate: Digest realm=\"upmt\", nonce=\"00\", algorithm=SHA-256, qop=\"auth\"\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn samples_parse() {
    assert!(
        matches!(parse(MESSAGE.as_bytes()), Ok(Message::Request(_))),
        "{:?}",
        parse(MESSAGE.as_bytes())
    );
    assert!(matches!(
        parse(RESPONSE.as_bytes()),
        Ok(Message::Response(_))
    ));
    for s in [REGISTER, MESSAGE, RESPONSE] {
        assert_eq!(check_invariants(s.as_bytes()), Ok(()));
    }
}

fn req(s: &str) -> Request {
    match parse(s.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn status_of(s: &[u8]) -> Option<u16> {
    let e = parse(s).expect_err("must be rejected");
    e.reply("t1")
        .map(|r| String::from_utf8(r).unwrap()[8..11].parse().unwrap())
}

#[test]
fn parses_register() {
    let r = req(REGISTER);
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.head.via.branch, "z9hG4bKnashds7");
    assert_eq!(r.head.cseq.seq, 1826);
    assert_eq!(r.head.to.user(), Some("mh1"));
    assert_eq!(r.head.max_forwards, Some(70));
    assert_eq!(r.head.header("expires"), Some("600"));
    assert!(r.body.is_empty());
}

#[test]
fn compact_forms_folding_and_multi_via() {
    let m = "MESSAGE sip:upmt SIP/2.0\r\n\
v: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
f: <sip:mh1@upmt>;tag=1\r\n\
t: <sip:upmt>\r\n\
i: abc\r\n\
CSeq: 1\r\n MESSAGE\r\n\
c: application/json\r\n\
l: 2\r\n\r\n{}EXTRA";
    let r = req(m);
    assert_eq!(r.head.vias.len(), 2);
    assert_eq!(r.head.via.host, "a");
    assert_eq!(r.head.cseq.method, Method::Message);
    assert_eq!(r.head.content_type.as_deref(), Some("application/json"));
    // RFC 3261 §18.3: bytes past Content-Length are discarded.
    assert_eq!(r.body, b"{}");
}

#[test]
fn rejections_and_their_status() {
    let swap = |from: &str, to: &str| REGISTER.replacen(from, to, 1).into_bytes();
    assert_eq!(
        status_of(&swap("SIP/2.0\r\nVia", "SIP/3.0\r\nVia")),
        Some(505)
    );
    // Method inspection comes first (RFC 3261 §8.2.1): unknown method is 501 even when the
    // CSeq disagrees.
    assert_eq!(status_of(&swap("REGISTER sip", "FOO sip")), Some(501));
    let unknown =
        REGISTER
            .replacen("REGISTER sip", "FOO sip", 1)
            .replacen("1826 REGISTER", "1826 FOO", 1);
    assert_eq!(status_of(unknown.as_bytes()), Some(501));
    assert_eq!(
        status_of(&swap("REGISTER sip:upmt", "REGISTER tel:+1234")),
        Some(416)
    );
    assert_eq!(
        status_of(&swap("Content-Length: 0", "Content-Length: 99999")),
        Some(413)
    );
    assert_eq!(
        status_of(&swap("Content-Length: 0", "Content-Length: 5")),
        Some(400)
    );
    assert_eq!(
        status_of(&swap("Content-Length: 0", "Content-Length: -1")),
        Some(400)
    );
    assert_eq!(status_of(&swap("1826 REGISTER", "1826 MESSAGE")), Some(400));
    assert_eq!(
        status_of(&swap("1826 REGISTER", "4294967296 REGISTER")),
        Some(400)
    );
    assert_eq!(status_of(&swap("Max-Forwards: 70\r\n", "")), Some(400));
    assert_eq!(
        status_of(&swap("Max-Forwards: 70", "Max-Forwards: 300")),
        Some(400)
    );
    // Unusable Via (no branch): the reply could not be routed; dropped.
    assert_eq!(status_of(&swap(";branch=z9hG4bKnashds7", "")), None);
    assert_eq!(
        status_of(&swap(
            "Expires: 600\r\n",
            "Expires: 600\r\nCall-ID: dup\r\n"
        )),
        Some(400)
    );
    let many = "X-A: 1\r\n".repeat(MAX_HEADERS);
    assert_eq!(status_of(&swap("Expires: 600\r\n", &many)), Some(400));
    assert_eq!(
        status_of(&swap("Expires: 600\r\n", "Expires 600\r\n")),
        Some(400)
    );
    // Unusable headers: no reply at all (dropped).
    assert_eq!(
        status_of(&swap("Call-ID: 843817637684230@998sdasdh09\r\n", "")),
        None
    );
    assert_eq!(status_of(&swap("Via: SIP", "X-Via: SIP")), None);
    assert_eq!(status_of(b"SIP/2.0 200 OK\r\n\r\n"), None);
    assert_eq!(status_of(b"\r\n\r\n"), None);
    assert_eq!(status_of(b"garbage"), None);
}

#[test]
fn error_reply_is_well_formed_and_small() {
    let bad = REGISTER.replacen("1826 REGISTER", "1826 MESSAGE", 1);
    let e = parse(bad.as_bytes()).unwrap_err();
    let reply = e.reply("abc").unwrap();
    assert!(reply.len() <= bad.len());
    match parse(&reply).unwrap() {
        Message::Response(r) => {
            assert_eq!(r.status, 400);
            assert_eq!(r.head.to.tag.as_deref(), Some("abc"));
            assert_eq!(r.head.call_id, "843817637684230@998sdasdh09");
        }
        Message::Request(_) => panic!("reply is a request"),
    }
}

/// RFC 4475 §3.1.2 (invalid messages), adapted to REGISTER/MESSAGE where the original is an
/// INVITE/OPTIONS; each must be rejected (with the status shown) and never panic.
#[test]
fn rfc4475_invalid_messages() {
    let base = |start: &str, extra: &str, body: &str| -> Vec<u8> {
        format!(
            "{start}\r\nVia: SIP/2.0/UDP host5.example.net;branch=z9hG4bK93jsd\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller@example.net>;tag=134161461246\r\n\
             To: <sip:j.user@example.com>\r\nCall-ID: bzoEdfM13MDm\r\nCSeq: 8 REGISTER\r\n{extra}\r\n{body}"
        )
        .into_bytes()
    };
    // 3.1.2.4 "clerr": Content-Length larger than the message.
    assert_eq!(
        status_of(&base(
            "REGISTER sip:example.com SIP/2.0",
            "Content-Length: 9999\r\n",
            "v=0\r\n"
        )),
        Some(400)
    );
    // 3.1.2.5 "ncl": negative Content-Length.
    assert_eq!(
        status_of(&base(
            "REGISTER sip:example.com SIP/2.0",
            "Content-Length: -999\r\n",
            ""
        )),
        Some(400)
    );
    // 3.1.2.6 "scalar02": Max-Forwards / CSeq out of range.
    let m = String::from_utf8(base("REGISTER sip:example.com SIP/2.0", "", "")).unwrap();
    assert_eq!(
        status_of(
            m.replace("Max-Forwards: 70", "Max-Forwards: 300")
                .as_bytes()
        ),
        Some(400)
    );
    assert_eq!(
        status_of(
            m.replace("CSeq: 8", "CSeq: 36893488147419103232")
                .as_bytes()
        ),
        Some(400)
    );
    // 3.1.2.8 "mcl01": multiple Content-Length values.
    assert_eq!(
        status_of(&base(
            "REGISTER sip:example.com SIP/2.0",
            "Content-Length: 0\r\nl: 0\r\n",
            ""
        )),
        Some(400)
    );
    // 3.1.2.11 "insuf": missing required headers (Max-Forwards here; Call-ID => dropped).
    assert_eq!(
        status_of(m.replace("Max-Forwards: 70\r\n", "").as_bytes()),
        Some(400)
    );
    assert_eq!(
        status_of(m.replace("Call-ID: bzoEdfM13MDm\r\n", "").as_bytes()),
        None
    );
    // 3.1.2.15 "unkscm"-like: unsupported Request-URI scheme.
    assert_eq!(
        status_of(&base("REGISTER nobarsipscheme:host SIP/2.0", "", "")),
        Some(416)
    );
    // 3.1.2.16 "badvers": SIP/7.0.
    assert_eq!(
        status_of(&base("REGISTER sip:example.com SIP/7.0", "", "")),
        Some(505)
    );
    // 3.1.2.17 "mismatch01": CSeq method differs.
    assert_eq!(
        status_of(&base("MESSAGE sip:example.com SIP/2.0", "", "")),
        Some(400)
    );
    // 3.1.2.18 "mismatch02": unknown method with a mismatching CSeq -> CSeq first? The
    // method is unknown: 501.
    assert_eq!(
        status_of(
            m.replace("REGISTER sip:", "NEWMETHOD sip:")
                .replace("8 REGISTER", "8 NEWMETHOD")
                .as_bytes()
        ),
        Some(501)
    );
    // 3.1.2.19 "bigcode": response with status 4294967301: not a response, dropped.
    assert_eq!(status_of(b"SIP/2.0 4294967301 better not break the receiver\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\r\n"), None);
    // 3.1.1.x: NUL and invalid UTF-8 in a header value.
    assert_eq!(
        status_of(&base(
            "REGISTER sip:example.com SIP/2.0",
            "Subject: a\u{0}b\r\n",
            ""
        )),
        Some(400)
    );
    let mut bad = base("REGISTER sip:example.com SIP/2.0", "Subject: xx\r\n", "");
    let i = bad.windows(2).position(|w| w == b"xx").unwrap();
    bad[i] = 0xff;
    assert_eq!(status_of(&bad), Some(400));
}

fn sample_request(
    method: Method,
    user: String,
    seq: u32,
    branch: String,
    call_id: String,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
) -> Request {
    Request {
        method: method.clone(),
        uri: "sip:upmt".into(),
        head: Head {
            vias: vec![format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}")],
            via: Via {
                transport: "UDP".into(),
                host: "10.0.0.1".into(),
                port: Some(5060),
                branch,
                rport: false,
            },
            from: NameAddr::new(format!("sip:{user}@upmt"), Some("ft".into())),
            to: NameAddr::new(format!("sip:{user}@upmt"), None),
            call_id,
            cseq: CSeq { seq, method },
            max_forwards: Some(70),
            content_type: (!body.is_empty()).then(|| "application/json".to_owned()),
            headers: extra
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
        },
        body,
    }
}

fn arb_request() -> impl Strategy<Value = Request> {
    (
        prop_oneof![
            Just(Method::Register),
            Just(Method::Message),
            Just(Method::Options)
        ],
        "[a-z][a-z0-9]{0,11}",
        0u32..=crate::consts::MAX_CSEQ,
        "z9hG4bK[A-Za-z0-9]{1,20}",
        "[A-Za-z0-9]{1,20}(@[a-z0-9.]{1,10})?",
        proptest::collection::vec(("X-[A-Za-z]{1,10}", "[ -~&&[^ ]]([ -~]{0,30}[!-~])?"), 0..5),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(m, u, s, b, c, x, body)| sample_request(m, u, s, b, c, x, body))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(check_invariants(&data), Ok(()));
    }

    #[test]
    fn never_panics_on_mutated_register(
        base in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut data = [REGISTER, MESSAGE, RESPONSE][base].as_bytes().to_vec();
        for (pos, byte, op) in edits {
            let i = pos % (data.len() + 1);
            match op {
                0 => { if i < data.len() { data[i] = byte } }
                1 => data.insert(i, byte),
                _ => { if i < data.len() { data.remove(i); } }
            }
        }
        prop_assert_eq!(check_invariants(&data), Ok(()));
        if let Err(e) = parse(&data) {
            if let Some(reply) = e.reply("t") {
                // An error reply is a 4xx/5xx, does not amplify much, and parses (as a
                // response) unless the CSeq number it echoes is out of range.
                prop_assert!(reply.starts_with(b"SIP/2.0 4") || reply.starts_with(b"SIP/2.0 5"));
                prop_assert!(reply.len() <= data.len() + 64);
                let reparsed = parse(&reply);
                prop_assert!(
                    matches!(reparsed, Ok(Message::Response(_)))
                        || matches!(&reparsed, Err(e) if e.kind == ParseErrorKind::BadHeaderValue("CSeq")),
                    "{:?}", reparsed
                );
            }
        }
    }

    #[test]
    fn round_trip(r in arb_request()) {
        let bytes = r.encode();
        let back = parse(&bytes);
        prop_assert_eq!(back, Ok(Message::Request(r.clone())));
        // Differential: rsip parses what we build, and agrees on the key fields.
        let theirs = rsip::SipMessage::try_from(bytes.as_slice());
        prop_assert!(theirs.is_ok(), "rsip rejected: {:?}", theirs.err());
        if let Ok(rsip::SipMessage::Request(q)) = theirs {
            prop_assert_eq!(q.method.to_string(), r.method.to_string());
            prop_assert_eq!(q.body.len(), r.body.len());
        }
    }

    #[test]
    fn response_round_trip(r in arb_request(), status in 100u16..700, tag in "[a-z0-9]{1,8}") {
        let resp = Response::to_request(&r, status, reason_phrase(status), &tag, Some("198.18.0.1:4000".parse().unwrap()));
        let bytes = resp.encode();
        match parse(&bytes) {
            Ok(Message::Response(back)) => {
                prop_assert_eq!(back.status, status);
                prop_assert_eq!(back.head.call_id, r.head.call_id);
                prop_assert_eq!(back.head.via.branch, r.head.via.branch);
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }
}
