//! Chat sessions between two applications in one process over 127.0.0.1:
//! messages queued before start, both directions, CPIM headers, Unicode,
//! 1 MiB, composing indications, a 10,000 message burst with every
//! delivery reported, a peer that ends the session mid-burst, msrps with
//! fingerprints by default, a hand-driven peer's bad messages refused on
//! the wire, and chat through the Kamailio MSRP relay.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::apps::{incoming_session, start_app, Recorder};
use serde_json::{json, Value};
use sipsimple::api::streams::ChatStream;
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{MediaStreamRegistry, NotificationCenter, SIPApplication, Session, StreamHandle};

/// An application with one account that neither registers nor uses a
/// relay; `msrp` is its msrp settings section.
fn app(user: &str, msrp: Value, global: &Value) -> SIPApplication {
    let mut doc = json!({
        "sip": {"transport_list": ["udp"]},
        "accounts": {format!("{user}@example.com"): {
            "display_name": user,
            "registration": {"enabled": false},
            "msrp": msrp,
        }},
    });
    for (k, v) in global.as_object().into_iter().flatten() {
        doc[k] = v.clone();
    }
    start_app(doc)
}

fn uri(app: &SIPApplication, user: &str) -> String {
    let a = app.sip_local_address(TransportKind::Udp).unwrap();
    format!("sip:{user}@127.0.0.1:{}", a.port())
}

fn chat(h: &StreamHandle) -> &ChatStream {
    ChatStream::of(h).expect("a chat stream")
}

fn text(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

struct Call {
    alice: SIPApplication,
    bob: SIPApplication,
    a: Session,
    b: Session,
    a_chat: StreamHandle,
    b_chat: StreamHandle,
    rec: Recorder,
    token: sipsimple::ObserverToken,
    /// Message ids alice queued before the session started.
    early: Vec<String>,
}

/// Alice calls Bob with a chat stream and queues `early` messages before
/// anything is connected; Bob accepts.
fn call(msrp: Value, early: &[&str]) -> Call {
    call_with(msrp, [&json!({}), &json!({})], early)
}

/// [`call`] with global settings for alice and bob.
fn call_with(msrp: Value, global: [&Value; 2], early: &[&str]) -> Call {
    let (rec, token) = Recorder::start();
    let alice = app("alice", msrp.clone(), global[0]);
    let bob = app("bob", msrp, global[1]);
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let a_chat = MediaStreamRegistry::default().create("chat").unwrap();
    let early: Vec<String> = early
        .iter()
        .map(|m| {
            chat(&a_chat)
                .send_message(text(m), "text/plain", None, None, Vec::new())
                .unwrap()
        })
        .collect();
    a.connect(&uri(&bob, "bob"), &[], vec![a_chat.clone()])
        .unwrap();
    let b = incoming_session(&bob, &rec);
    let proposed = b.proposed_streams();
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].stream_type(), "chat");
    let b_chat = proposed[0].clone();
    b.accept(proposed).unwrap();
    rec.wait("SIPSessionDidStart", Some(a.id().0));
    rec.wait("SIPSessionDidStart", Some(b.id().0));
    Call {
        alice,
        bob,
        a,
        b,
        a_chat,
        b_chat,
        rec,
        token,
        early,
    }
}

impl Call {
    fn finish(self) {
        if self.a.end().is_ok() {
            self.rec.wait("SIPSessionDidEnd", Some(self.b.id().0));
        }
        NotificationCenter::default().remove_observer(self.token);
        self.alice.stop();
        self.bob.stop();
    }

    fn got(&self, to: &StreamHandle) -> Vec<(String, String)> {
        self.rec
            .all("ChatStreamGotMessage", to.id().0)
            .iter()
            .map(|n| {
                (
                    n.data.get_str("content").unwrap_or("").to_string(),
                    n.data.get_str("content_type").unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn chat_both_ways_with_cpim_unicode_1mib_and_composing() {
    let c = call(json!({"transport": "tcp"}), &["first", "second"]);
    let (aid, bid) = (c.a_chat.id().0, c.b_chat.id().0);
    // The queued messages arrive first, in order, and are reported.
    c.rec.wait_count("ChatStreamGotMessage", bid, 2);
    c.rec.wait_count("ChatStreamDidDeliverMessage", aid, 2);
    assert_eq!(
        c.got(&c.b_chat)[..2],
        [
            ("first".into(), "text/plain".into()),
            ("second".into(), "text/plain".into())
        ]
    );
    let delivered: Vec<String> = c
        .rec
        .all("ChatStreamDidDeliverMessage", aid)
        .iter()
        .map(|n| n.data.get_str("message_id").unwrap().to_string())
        .collect();
    assert_eq!(delivered, c.early);
    assert_eq!(c.rec.count("ChatStreamDidSendMessage", aid), 2);

    // CPIM headers came with them: who sent it and when.
    let first = c.rec.find("ChatStreamGotMessage", Some(bid)).unwrap();
    assert!(first
        .data
        .get_str("sender")
        .unwrap()
        .contains("sip:alice@example.com"));
    let headers = first.data.get("cpim_headers").unwrap();
    assert!(headers["To"][0].as_str().unwrap().contains("bob@127.0.0.1"));
    assert!(first.data.get_str("timestamp").unwrap().ends_with('Z'));

    // Unicode both ways, and a timestamp and extra header of our choosing.
    let unicode = "Grüße, 世界! 🎉 — ünïcödé ✓";
    chat(&c.b_chat)
        .send_message(
            text(unicode),
            "text/plain",
            None,
            Some("2026-11-21T10:00:00Z".into()),
            vec![("Subject".into(), "hello".into())],
        )
        .unwrap();
    c.rec.wait("ChatStreamGotMessage", Some(aid));
    let m = c.rec.find("ChatStreamGotMessage", Some(aid)).unwrap();
    assert_eq!(m.data.get_str("content"), Some(unicode));
    assert_eq!(m.data.get_str("timestamp"), Some("2026-11-21T10:00:00Z"));
    assert_eq!(m.data.get("cpim_headers").unwrap()["Subject"][0], "hello");
    c.rec.wait("ChatStreamDidDeliverMessage", Some(bid));

    // 1 MiB of text in one message (many MSRP chunks).
    let big: String = (0..(1 << 20))
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let id = chat(&c.a_chat)
        .send_message(text(&big), "text/plain", None, None, Vec::new())
        .unwrap();
    c.rec.wait_count("ChatStreamGotMessage", bid, 3);
    assert_eq!(c.got(&c.b_chat)[2].0, big);
    c.rec.wait_count("ChatStreamDidDeliverMessage", aid, 3);
    let last = c.rec.all("ChatStreamDidDeliverMessage", aid).pop().unwrap();
    assert_eq!(last.data.get_str("message_id"), Some(id.as_str()));

    // Composing both ways; a message ends the peer's composing state.
    chat(&c.a_chat)
        .send_composing_indication("active", Some(30), None)
        .unwrap();
    let ind = c.rec.wait("ChatStreamGotComposingIndication", Some(bid));
    assert_eq!(ind.data.get_str("state"), Some("active"));
    assert_eq!(ind.data.get_i64("refresh"), Some(30));
    chat(&c.b_chat)
        .send_composing_indication("active", None, Some("2026-11-21T10:00:00Z".into()))
        .unwrap();
    let ind = c.rec.wait("ChatStreamGotComposingIndication", Some(aid));
    assert_eq!(
        ind.data.get_str("last_active"),
        Some("2026-11-21T10:00:00Z")
    );
    chat(&c.a_chat)
        .send_message(text("done typing"), "text/plain", None, None, Vec::new())
        .unwrap();
    c.rec.wait_count("ChatStreamGotComposingIndication", bid, 2);
    let idle = c
        .rec
        .all("ChatStreamGotComposingIndication", bid)
        .pop()
        .unwrap();
    assert_eq!(idle.data.get_str("state"), Some("idle"));
    // Composing indications are not chat messages. The idle indication is
    // posted just before the message that ended the composing, so wait
    // for that message; the indications, sent before it on the same
    // session, would have made their own by then.
    c.rec.wait_count("ChatStreamGotMessage", bid, 4);
    assert_eq!(c.rec.count("ChatStreamGotMessage", bid), 4);

    // Bad calls are errors, not panics.
    assert!(chat(&c.a_chat)
        .send_message(text("x"), "no-slash", None, None, Vec::new())
        .is_err());
    assert!(chat(&c.a_chat)
        .send_composing_indication("typing", None, None)
        .is_err());
    let private = chat(&c.a_chat).send_message(
        text("psst"),
        "text/plain",
        Some(vec!["<sip:carol@example.com>".into()]),
        None,
        Vec::new(),
    );
    assert!(
        private.unwrap_err().to_string().contains("private"),
        "private messages need a=chatroom:private-messages"
    );
    let info = c.a_chat.describe();
    assert_eq!(info["info"]["secure"], false);
    assert_eq!(info["info"]["setup"], "active");
    assert_eq!(c.b_chat.describe()["info"]["setup"], "passive");
    c.finish();
}

#[test]
fn disposition_notifications_for_delivery_and_display() {
    let asks = json!({"chat": {"disposition_notifications": ["positive-delivery", "display"]}});
    let c = call_with(json!({"transport": "tcp"}), [&asks, &json!({})], &[]);
    let (aid, bid) = (c.a_chat.id().0, c.b_chat.id().0);
    let id = chat(&c.a_chat)
        .send_message(text("read me"), "text/plain", None, None, Vec::new())
        .unwrap();
    let got = c.rec.wait("ChatStreamGotMessage", Some(bid));
    assert_eq!(
        got.data.get("disposition_notification").unwrap(),
        &json!(["positive-delivery", "display"])
    );
    let headers = got.data.get("cpim_headers").unwrap();
    assert_eq!(headers["imdn.Message-ID"][0], id.as_str());
    // Bob accepted it, so alice hears it was delivered: the MSRP report
    // and the disposition notification, which names her message id.
    c.rec.wait("ChatStreamDidDeliverMessage", Some(aid));
    let n = c
        .rec
        .wait("ChatStreamGotDispositionNotification", Some(aid));
    assert_eq!(n.data.get_str("message_id"), Some(id.as_str()));
    assert_eq!(n.data.get_str("kind"), Some("delivery"));
    assert_eq!(n.data.get_str("status"), Some("delivered"));
    assert!(n.data.get_str("sender").unwrap().contains("bob@"));

    // Display: when Bob's application says so, once.
    let bob_mid = got.data.get_str("message_id").unwrap().to_string();
    c.b.send_display_notification(&bob_mid).unwrap();
    c.rec
        .wait_count("ChatStreamGotDispositionNotification", aid, 2);
    let n = c
        .rec
        .all("ChatStreamGotDispositionNotification", aid)
        .pop()
        .unwrap();
    assert_eq!(n.data.get_str("message_id"), Some(id.as_str()));
    assert_eq!(n.data.get_str("kind"), Some("display"));
    assert_eq!(n.data.get_str("status"), Some("displayed"));
    let again = c.b.send_display_notification(&bob_mid).unwrap_err();
    assert!(matches!(again, sipsimple::Error::NotFound(_)), "{again}");

    // Bob asks for nothing: alice has nothing to answer, and notifications
    // never show up as chat messages.
    chat(&c.b_chat)
        .send_message(text("plain"), "text/plain", None, None, Vec::new())
        .unwrap();
    let got = c.rec.wait("ChatStreamGotMessage", Some(aid));
    assert_eq!(
        got.data.get("disposition_notification").unwrap(),
        &json!([])
    );
    assert!(c
        .a
        .send_display_notification(got.data.get_str("message_id").unwrap())
        .is_err());
    c.rec.wait("ChatStreamDidDeliverMessage", Some(bid));
    assert_eq!(c.rec.count("ChatStreamGotMessage", aid), 1);
    assert_eq!(c.rec.count("ChatStreamGotMessage", bid), 1);
    assert_eq!(c.rec.count("ChatStreamGotDispositionNotification", bid), 0);
    c.finish();

    // A recipient that does not send delivery notifications still
    // delivers (the MSRP report says so) but sends no IMDN.
    let quiet = json!({"chat": {"send_delivery_notifications": false}});
    let c = call_with(json!({"transport": "tcp"}), [&asks, &quiet], &[]);
    let aid = c.a_chat.id().0;
    chat(&c.a_chat)
        .send_message(text("anyone?"), "text/plain", None, None, Vec::new())
        .unwrap();
    c.rec.wait("ChatStreamDidDeliverMessage", Some(aid));
    // Display still works when asked for by the application.
    let got = c.rec.wait("ChatStreamGotMessage", Some(c.b_chat.id().0));
    c.b.send_display_notification(got.data.get_str("message_id").unwrap())
        .unwrap();
    let n = c
        .rec
        .wait("ChatStreamGotDispositionNotification", Some(aid));
    assert_eq!(n.data.get_str("kind"), Some("display"));
    assert_eq!(c.rec.count("ChatStreamGotDispositionNotification", aid), 1);
    c.finish();
}

#[test]
fn a_burst_of_10000_arrives_in_order_and_every_message_is_reported() {
    let c = call(json!({"transport": "tcp"}), &[]);
    let aid = c.a_chat.id().0;
    const N: usize = 10_000;
    let t0 = Instant::now();
    let ids: Vec<String> = (0..N)
        .map(|i| {
            chat(&c.a_chat)
                .send_message(
                    text(&format!("message {i}")),
                    "text/plain",
                    None,
                    None,
                    Vec::new(),
                )
                .unwrap()
        })
        .collect();
    c.rec.wait_count_for(
        "ChatStreamDidDeliverMessage",
        aid,
        N,
        Duration::from_secs(120),
    );
    let took = t0.elapsed();
    eprintln!(
        "chat burst: {N} messages sent, received and reported in {:.2} s ({:.0} messages/s)",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
    let got = c.got(&c.b_chat);
    assert_eq!(got.len(), N);
    for (i, (content, _)) in got.iter().enumerate() {
        assert_eq!(content, &format!("message {i}"));
    }
    let reported: HashSet<String> = c
        .rec
        .all("ChatStreamDidDeliverMessage", aid)
        .iter()
        .map(|n| n.data.get_str("message_id").unwrap().to_string())
        .collect();
    assert_eq!(reported, ids.iter().cloned().collect());
    assert_eq!(c.rec.count("ChatStreamDidNotDeliverMessage", aid), 0);
    c.finish();
}

#[test]
fn the_peer_ending_mid_burst_leaves_nothing_unreported() {
    let c = call(json!({"transport": "tcp"}), &[]);
    let (aid, bid) = (c.a_chat.id().0, c.b_chat.id().0);
    const N: usize = 5_000;
    let ids: Vec<String> = (0..N)
        .map(|i| {
            chat(&c.a_chat)
                .send_message(text(&format!("m{i}")), "text/plain", None, None, Vec::new())
                .unwrap()
        })
        .collect();
    c.rec.wait("ChatStreamGotMessage", Some(bid));
    c.b.end().unwrap();
    c.rec.wait("SIPSessionDidEnd", Some(c.a.id().0));
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome = |name: &str| -> Vec<String> {
        c.rec
            .all(name, aid)
            .iter()
            .map(|n| n.data.get_str("message_id").unwrap().to_string())
            .collect()
    };
    loop {
        let done = outcome("ChatStreamDidDeliverMessage").len()
            + outcome("ChatStreamDidNotDeliverMessage").len();
        if done >= N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} of {N} messages reported"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let delivered = outcome("ChatStreamDidDeliverMessage");
    let failed = outcome("ChatStreamDidNotDeliverMessage");
    let all: HashSet<String> = delivered.iter().chain(failed.iter()).cloned().collect();
    assert_eq!(all.len(), N, "each message reported exactly once");
    assert_eq!(all, ids.iter().cloned().collect());
    assert!(
        !failed.is_empty(),
        "the end came before all {N} were through"
    );
    // What Bob got is exactly what was reported delivered, or more (a
    // report can be lost with the connection), never less.
    let received = c.rec.count("ChatStreamGotMessage", bid);
    assert!(
        received >= delivered.len(),
        "{received} < {}",
        delivered.len()
    );
    // Sending on an ended stream is an error.
    assert!(chat(&c.a_chat)
        .send_message(text("late"), "text/plain", None, None, Vec::new())
        .is_err());
    NotificationCenter::default().remove_observer(c.token);
    c.alice.stop();
    c.bob.stop();
}

/// A hand-driven MSRP peer offers chat to a ChatStream and sends what a
/// broken or hostile client might: each bad message gets an error
/// response on the wire, none is delivered, and good ones still work.
#[test]
fn bad_messages_are_refused_on_the_wire_with_the_reason() {
    use sipsimple::api::msrp::{get_connector, ChunkSpec, MsrpTls, MsrpUri};
    use sipsimple::api::streams::ChatFactory;
    use sipsimple::proto::sdp::{Attribute, MediaDescription, SessionDescription};
    use sipsimple::{MediaStreamFactory, StreamContext};

    let (rec, token) = Recorder::start();
    let rt = common::runtime();
    rt.block_on(async {
        let ip: std::net::IpAddr = [127, 0, 0, 1].into();
        let mut peer = get_connector(MsrpTls::default(), None);
        let peer_path = peer
            .prepare(MsrpUri::new(false, "127.0.0.1", 0, "peer1"))
            .await
            .unwrap();
        let mut offer = SessionDescription::new("-", 1, ip, "peer");
        let mut m = MediaDescription::new("message", peer_path[0].port.unwrap(), "TCP/MSRP", &["*"]);
        m.push_attribute(Attribute::value("path", peer_path[0].to_string()));
        m.push_attribute(Attribute::value("accept-types", "message/cpim text/*"));
        m.push_attribute(Attribute::value("accept-wrapped-types", "*"));
        m.push_attribute(Attribute::value("setup", "active"));
        // The peer is a chat room that takes private messages.
        m.push_attribute(Attribute::value("chatroom", "private-messages"));
        offer.media.push(m);
        let stream = ChatFactory::default().new_from_sdp(&offer, 0).unwrap();
        let ctx = StreamContext {
            session: sipsimple::ObjectId::new(),
            direction: "incoming",
            local_ip: ip,
            runtime: tokio::runtime::Handle::current(),
            settings: Arc::new(serde_json::Map::new()),
            account: None,
            local_identity: Some("<sip:bob@example.com>".into()),
            remote_identity: Some("<sip:peer@example.com>".into()),
            msrp_tls: Default::default(),
        };
        stream.initialize(&ctx).await.unwrap();
        let local_m = stream.get_local_media(offer.media.first()).unwrap();
        assert_eq!(local_m.attribute("setup"), Some("passive"));
        let mut answer = SessionDescription::new("-", 2, ip, "bob");
        let path = sipsimple::api::msrp::parse_path(local_m.attribute("path").unwrap()).unwrap();
        answer.media.push(local_m);
        let (started, transport) = tokio::join!(stream.start(&answer, &offer, 0), peer.complete(path));
        started.unwrap();
        let mut t = transport.unwrap();
        let sid = stream.object_id().unwrap().0;

        let cpim = |inner_ct: &str, body: &str| {
            format!("From: <sip:peer@example.com>\r\nTo: <sip:bob@example.com>\r\n\r\nContent-Type: {inner_ct}\r\n\r\n{body}").into_bytes()
        };
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("text/plain", b"hello".to_vec(), 200),
            ("message/cpim", b"From: <sip:peer@example.com>\r\nno blank line".to_vec(), 400),
            ("message/cpim", b"From <broken\r\n\r\nContent-Type: text/plain\r\n\r\nx".to_vec(), 400),
            ("message/cpim", cpim("text/plain;charset=iso-8859-1", "caf\u{e9}"), 415),
            ("message/cpim", b"From: <sip:peer@example.com>\r\n\r\n\r\nno content type".to_vec(), 400),
            ("image/png", b"\x89PNG".to_vec(), 415),
            ("text/plain", b"\xff\xfe not utf-8".to_vec(), 400),
            ("message/cpim", cpim("application/im-iscomposing+xml", "<isComposing><oops>"), 400),
            ("message/cpim", cpim("message/imdn+xml", "<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\"><message-id>x</message-id></imdn>"), 400),
            ("message/cpim", cpim("text/plain", "still fine after all that"), 200),
            ("message/cpim", "From: <sip:carol@example.com>\r\nTo: <sip:bob@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nfor bob only".as_bytes().to_vec(), 200),
            ("message/cpim", "From: <sip:carol@example.com>\r\nTo: <sip:peer@example.com>\r\n\r\nContent-Type: text/plain\r\n\r\nfor the room".as_bytes().to_vec(), 200),
        ];
        for (i, (ct, body, want)) in cases.iter().enumerate() {
            let mid = format!("bad{i}");
            let mut chunk = t.make_chunk(ChunkSpec {
                data: body,
                message_id: Some(&mid),
                ..ChunkSpec::default()
            });
            chunk.head.push_header("Content-Type", ct);
            t.write_chunk(&chunk).await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(5), t.read_chunk(1 << 16))
                .await
                .expect("a response")
                .unwrap();
            assert_eq!(r.code(), Some(*want), "case {i} ({ct}): {:?}", r.head.comment());
            assert_eq!(r.transaction_id(), chunk.transaction_id());
            if *want != 200 {
                assert!(!r.head.comment().unwrap_or("").is_empty(), "case {i} says why");
            }
        }
        rec.wait_count("ChatStreamGotMessage", sid, 4);
        let got: Vec<(String, bool)> = rec
            .all("ChatStreamGotMessage", sid)
            .iter()
            .map(|n| {
                (
                    n.data.get_str("content").unwrap().to_string(),
                    n.data.get_bool("private").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("hello".into(), false),
                ("still fine after all that".into(), true),
                ("for bob only".into(), true),
                ("for the room".into(), false)
            ]
        );
        let info = stream.info();
        assert_eq!(info["refused"], 7, "{info}");
        assert_eq!(info["received"], 4);
        assert_eq!(info["private_messages"], true);

        // A private message to one participant of the room: CPIM To names
        // them, not the room.
        let chat = stream.as_any().unwrap().downcast_ref::<ChatStream>().unwrap();
        chat.send_message(
            text("psst"),
            "text/plain",
            Some(vec!["<sip:carol@example.com>".into()]),
            None,
            Vec::new(),
        )
        .unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(5), t.read_chunk(1 << 16))
            .await
            .expect("the private message")
            .unwrap();
        let body = String::from_utf8(sent.data.to_vec()).unwrap();
        assert!(body.contains("To: <sip:carol@example.com>\r\n"), "{body}");
        assert!(!body.contains("peer@example.com"), "{body}");
        assert!(body.ends_with("psst"), "{body}");
        stream.end();
    });
    NotificationCenter::default().remove_observer(token);
}

/// The account default is msrps: with no certificate configured each side
/// uses a self-signed one that the other pins through a=fingerprint.
#[test]
fn chat_over_tls_by_default_with_fingerprints() {
    let c = call(json!({}), &["over tls"]);
    let (aid, bid) = (c.a_chat.id().0, c.b_chat.id().0);
    c.rec.wait("ChatStreamGotMessage", Some(bid));
    c.rec.wait("ChatStreamDidDeliverMessage", Some(aid));
    chat(&c.b_chat)
        .send_message(text("and back"), "text/plain", None, None, Vec::new())
        .unwrap();
    c.rec.wait("ChatStreamDidDeliverMessage", Some(bid));
    for s in [&c.a_chat, &c.b_chat] {
        let info = s.describe()["info"].clone();
        assert_eq!(info["secure"], true);
        assert!(info["local_path"].as_str().unwrap().starts_with("msrps://"));
    }
    // Each side saw the other's fingerprint; the connecting side pinned
    // it (a self-signed certificate passes no CA check).
    for s in [&c.a_chat, &c.b_chat] {
        let fp = s.describe()["info"]["remote_fingerprint"].clone();
        assert!(fp.as_str().unwrap().starts_with("sha-256 "), "{fp}");
    }
    c.finish();
}

/// Bob's account uses the Kamailio MSRP relay (RFC 4976): his a=path
/// holds the relay, Alice connects to it, and chat works both ways with
/// delivery reports crossing the relay.
#[test]
fn chat_through_the_kamailio_msrp_relay() {
    use common::kamailio::{kamailio_available, start};
    if !kamailio_available() {
        return;
    }
    let k = start("msrp_relay.cfg", common::sipp::free_port());
    let (rec, token) = Recorder::start();
    let alice = app("alice", json!({"transport": "tcp"}), &json!({}));
    let bob = start_app(json!({
        "sip": {"transport_list": ["udp"]},
        "accounts": {"bob@example.com": {
            "registration": {"enabled": false},
            "auth": {"password": "bobpass"},
            "msrp": {"transport": "tcp", "relay": format!("msrp://127.0.0.1:{};tcp", k.port)},
        }},
    }));
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let a_chat = MediaStreamRegistry::default().create("chat").unwrap();
    a.connect(&uri(&bob, "bob"), &[], vec![a_chat.clone()])
        .unwrap();
    let b = incoming_session(&bob, &rec);
    let b_chat = b.proposed_streams()[0].clone();
    b.accept(vec![b_chat.clone()]).unwrap();
    rec.wait("SIPSessionDidStart", Some(b.id().0));
    rec.wait("SIPSessionDidStart", Some(a.id().0));
    let path = b_chat.describe()["info"]["local_path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        path.starts_with(&format!("msrp://127.0.0.1:{}/", k.port)) && path.contains(' '),
        "Bob's path starts at the relay: {path}"
    );
    for i in 0..20 {
        chat(&a_chat)
            .send_message(
                text(&format!("to bob {i}")),
                "text/plain",
                None,
                None,
                Vec::new(),
            )
            .unwrap();
        chat(&b_chat)
            .send_message(
                text(&format!("to alice {i}")),
                "text/plain",
                None,
                None,
                Vec::new(),
            )
            .unwrap();
    }
    rec.wait_count("ChatStreamDidDeliverMessage", a_chat.id().0, 20);
    rec.wait_count("ChatStreamDidDeliverMessage", b_chat.id().0, 20);
    let got: Vec<String> = rec
        .all("ChatStreamGotMessage", b_chat.id().0)
        .iter()
        .map(|n| n.data.get_str("content").unwrap().to_string())
        .collect();
    assert_eq!(
        got,
        (0..20).map(|i| format!("to bob {i}")).collect::<Vec<_>>()
    );
    assert_eq!(rec.count("ChatStreamGotMessage", a_chat.id().0), 20);
    a.end().unwrap();
    rec.wait("SIPSessionDidEnd", Some(b.id().0));
    NotificationCenter::default().remove_observer(token);
    alice.stop();
    bob.stop();
}

/// With `logs.trace_msrp` on (Alice only), the bytes of her chat
/// connection are posted as MSRPTransportTrace from her session: her SEND
/// with the text going out, Bob's 200 coming in; Bob, with it off, posts
/// none.
#[test]
fn msrp_wire_trace_when_asked_for() {
    let c = call_with(
        json!({"transport": "tcp"}),
        [&json!({"logs": {"trace_msrp": true}}), &json!({})],
        &[],
    );
    let (aid, bid) = (c.a_chat.id().0, c.b_chat.id().0);
    chat(&c.a_chat)
        .send_message(text("traced words"), "text/plain", None, None, Vec::new())
        .unwrap();
    c.rec.wait("ChatStreamGotMessage", Some(bid));
    c.rec.wait("ChatStreamDidDeliverMessage", Some(aid));
    let traces = c.rec.all("MSRPTransportTrace", c.a.id().0);
    let dir = |d: &str| -> Vec<String> {
        traces
            .iter()
            .filter(|n| n.data.get_str("direction") == Some(d))
            .map(|n| n.data.get_str("data").unwrap_or("").to_string())
            .collect()
    };
    // A chunk may go out in several writes (head, body, end-line).
    let (out, inc) = (dir("outgoing").concat(), dir("incoming").concat());
    let send = out.find(" SEND\r\n").expect("a SEND went out");
    assert!(out[..send].contains("MSRP "), "{out}");
    assert!(out[send..].contains("traced words"), "{out}");
    assert!(out.contains("\r\n-------"), "{out}");
    assert!(inc.contains(" 200 OK"), "{inc}");
    let first = &traces[0].data;
    assert!(first.get_str("local_path").unwrap().starts_with("msrp://"));
    assert!(first.get_str("remote_path").unwrap().starts_with("msrp://"));
    assert_eq!(first.get_bool("truncated"), Some(false));
    assert!(c.rec.all("MSRPTransportTrace", c.b.id().0).is_empty());
    c.finish();
}
