//! A host's own payloads over MSRP, the two ways the SDK's ODF editing
//! integration describes: the chat stream with one more accepted type and
//! an `a=features:odf-editor` attribute, and a stream type of the host's
//! own (`odf`, m=odf) built on the chat stream. Its own test binary: the
//! stream registry is process-wide.

mod common;

use common::apps::{incoming_session, start_app, Recorder};
use serde_json::json;
use sipsimple::api::streams::{ChatConfig, ChatFactory, ChatStream};
use sipsimple::proto::sip::transaction::TransportKind;
use sipsimple::{MediaStreamRegistry, NotificationCenter, SIPApplication, StreamHandle};

const ODF: &str = "application/odf+xml";
const DOC: &[u8] =
    b"<office:document xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\"/>";

fn app(user: &str) -> SIPApplication {
    start_app(json!({
        "sip": {"transport_list": ["udp"]},
        "accounts": {format!("{user}@example.com"): {
            "registration": {"enabled": false},
            "msrp": {"transport": "tcp"},
        }},
    }))
}

/// Alice calls Bob with one stream of `stream_type`; both sides'
/// streams, once the session started, and the ODF document Alice sent
/// as Bob received it.
fn call_and_send(rec: &Recorder, stream_type: &str) -> (StreamHandle, StreamHandle) {
    let alice = app("alice");
    let bob = app("bob");
    let account = alice
        .account_manager()
        .unwrap()
        .get_account("alice@example.com")
        .unwrap();
    let a = alice.session_manager().unwrap().new_session(&account);
    let s = MediaStreamRegistry::default().create(stream_type).unwrap();
    let port = bob.sip_local_address(TransportKind::Udp).unwrap().port();
    a.connect(&format!("sip:bob@127.0.0.1:{port}"), &[], vec![s.clone()])
        .unwrap();
    let b = incoming_session(&bob, rec);
    let proposed = b.proposed_streams();
    assert_eq!(proposed.len(), 1);
    assert_eq!(proposed[0].stream_type(), stream_type);
    let bs = proposed[0].clone();
    b.accept(proposed).unwrap();
    rec.wait("SIPSessionDidStart", Some(a.id().0));
    rec.wait("SIPSessionDidStart", Some(b.id().0));
    // Session.send_message finds the stream even when it is not `chat`.
    let id = a.send_message(DOC, ODF).unwrap();
    let got = rec.wait("ChatStreamGotMessage", Some(bs.id().0));
    assert_eq!(got.data.get_str("content_type"), Some(ODF));
    let content: Vec<u8> =
        serde_json::from_value(got.data.get("content").unwrap().clone()).unwrap();
    assert_eq!(content, DOC);
    let done = rec.wait("ChatStreamDidDeliverMessage", Some(s.id().0));
    assert_eq!(done.data.get_str("message_id"), Some(id.as_str()));
    a.end().unwrap();
    rec.wait("SIPSessionDidEnd", Some(b.id().0));
    alice.stop();
    bob.stop();
    (s, bs)
}

fn chat(h: &StreamHandle) -> &ChatStream {
    ChatStream::of(h).expect("an MSRP message stream")
}

#[test]
fn a_host_carries_its_own_payload_in_chat_or_in_its_own_stream_type() {
    let (rec, token) = Recorder::start();

    // Variant 1: the chat stream, extended.
    let mut types: Vec<String> = ChatConfig::default().accept_types;
    types.push(ODF.into());
    let config = ChatConfig::with_defaults(
        "chat",
        None,
        Some(types),
        None,
        &["features:odf-editor".into()],
    )
    .unwrap();
    ChatFactory::register(config).unwrap();
    let (a, b) = call_and_send(&rec, "chat");
    for s in [&a, &b] {
        // Each side sees the other's feature, and the peer takes ODF.
        assert_eq!(chat(s).remote_attribute_values("features"), ["odf-editor"]);
        let info = s.describe();
        let remote: Vec<String> =
            serde_json::from_value(info["info"]["remote_accept_types"].clone()).unwrap();
        assert!(remote.iter().any(|t| t == ODF), "{info}");
    }

    // The built-in chat type back as it was.
    ChatFactory::register(ChatConfig::default()).unwrap();

    // Variant 2: a stream type of its own, m=odf, accepting only ODF.
    let odf = ChatConfig::with_defaults(
        "odf",
        Some("odf"),
        Some(vec![ODF.into()]),
        Some(vec![]),
        &[],
    )
    .unwrap();
    ChatFactory::register(odf).unwrap();
    let (a, b) = call_and_send(&rec, "odf");
    assert_eq!(a.stream_type(), "odf");
    assert_eq!(b.stream_type(), "odf");
    assert!(chat(&b).remote_attribute_values("features").is_empty());
    assert!(MediaStreamRegistry::default().unregister("odf"));

    // Bad configurations are errors, not streams.
    type Case<'a> = (&'a str, Option<&'a str>, Vec<String>, Vec<String>);
    let bad: Vec<Case> = vec![
        ("odf", Some("m edia"), vec![ODF.into()], vec![]),
        ("odf", None, vec![], vec![]),
        ("odf", None, vec!["not a type".into()], vec![]),
        (
            "odf",
            None,
            vec![ODF.into()],
            vec!["path:msrp://evil".into()],
        ),
        ("odf", None, vec![ODF.into()], vec!["x:y\r\na=z".into()]),
        ("o d f", None, vec![ODF.into()], vec![]),
    ];
    for (name, media, types, attrs) in bad {
        let r = ChatConfig::with_defaults(name, media, Some(types.clone()), None, &attrs)
            .and_then(ChatFactory::register);
        assert!(r.is_err(), "{name} {media:?} {types:?} {attrs:?}");
    }
    assert!(!MediaStreamRegistry::default()
        .types()
        .contains(&"o d f".to_string()));
    NotificationCenter::default().remove_observer(token);
}
