"""Sessions from Python: a stream type defined in Python (UDP "ping"),
two applications calling each other over 127.0.0.1, an incoming session
answered from inside an observer callback, hold, end, and errors for
calls made in the wrong state."""
import json
import re
import socket
import threading
import time

import pytest

import sipsimple as ss


class PingStreams(ss.StreamHandler):
    """Each stream binds a UDP socket, offers it as m=application UDP
    x-pyping, and at start sends a greeting to the peer's address."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sockets = {}
        self.received = []
        self.calls = []

    def _note(self, what, sid):
        with self.lock:
            self.calls.append((what, sid))

    def new_from_sdp(self, stream_id, sdp, index):
        media = [l for l in sdp.split("\r\n") if l.startswith("m=")]
        ok = index < len(media) and media[index].endswith("UDP x-pyping")
        if ok:
            self._note("new_from_sdp", stream_id)
        return ok

    def new_outgoing(self, stream_id):
        self._note("new_outgoing", stream_id)

    def initialize(self, stream_id, local_ip, direction):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((local_ip, 0))
        s.settimeout(5)
        with self.lock:
            self.sockets[stream_id] = s
        self._note("initialize", stream_id)

    def get_local_media(self, stream_id, remote_media):
        port = self.sockets[stream_id].getsockname()[1]
        return "m=application %d UDP x-pyping\r\na=greeting:hi\r\n" % port

    def start(self, stream_id, local_sdp, remote_sdp, index):
        ip = re.search(r"c=IN IP4 (\S+)", remote_sdp).group(1)
        ports = re.findall(r"m=application (\d+) ", remote_sdp)
        s = self.sockets[stream_id]

        def read():
            try:
                data, _ = s.recvfrom(100)
                with self.lock:
                    self.received.append((stream_id, data))
            except OSError:
                pass

        threading.Thread(target=read, daemon=True).start()
        s.sendto(b"hello from %d" % stream_id, (ip, int(ports[index])))
        self._note("start", stream_id)

    def update(self, stream_id, local_sdp, remote_sdp, index):
        self._note("update", stream_id)

    def hold(self, stream_id):
        self._note("hold", stream_id)

    def unhold(self, stream_id):
        self._note("unhold", stream_id)

    def end(self, stream_id):
        self._note("end", stream_id)
        with self.lock:
            s = self.sockets.pop(stream_id, None)
        if s:
            s.close()


class Events(ss.NotificationObserver):
    def __init__(self, bob):
        self.bob = bob
        self.lock = threading.Lock()
        self.seen = []

    def handle_notification(self, n):
        with self.lock:
            self.seen.append((n.name(), n.sender_id(), n.data_json()))
        if n.name() == "SIPSessionNewIncoming":
            # Answer from inside the callback (calls from here are allowed).
            s = self.bob.get_session(n.sender_id())
            if s is not None:
                s.send_ring_indication()
                s.accept(None)

    def wait(self, name, sender, count=1, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if sum(1 for x in self.seen if x[0] == name and x[1] == sender) >= count:
                    return
            time.sleep(0.01)
        raise AssertionError("no %s from %d" % (name, sender))

    def ids(self, name):
        with self.lock:
            return [x[1] for x in self.seen if x[0] == name]


def start_app():
    st = ss.Storage.memory()
    app = ss.SipApplication()
    app.start(st)
    return app


@pytest.fixture
def endpoints():
    handler = PingStreams()
    ss.register_stream_type("pyping", 0, True, handler)
    alice, bob = start_app(), start_app()
    yield handler, alice, bob
    alice.stop()
    bob.stop()
    assert ss.unregister_stream_type("pyping")


def test_msrp_stream_types_for_host_payloads():
    """The ODF editing extension's own MSRP type, and bad configurations."""
    ss.register_msrp_stream_type("odf", "odf", ["application/odf+xml"], None, ["features:odf-editor"])
    assert ss.unregister_stream_type("odf")
    with pytest.raises(ss.SipSimpleError.InvalidArgument):
        ss.register_msrp_stream_type("odf", None, ["no type"], None, [])
    with pytest.raises(ss.SipSimpleError.InvalidArgument):
        ss.register_msrp_stream_type("odf", None, None, None, ["path:msrp://x"])
    assert not ss.unregister_stream_type("odf")


def test_call_with_a_python_stream(endpoints):
    handler, alice, bob = endpoints
    assert "pyping" in ss.stream_types()
    events = Events(bob)
    center = ss.NotificationCenter()
    token = center.add_observer(events, None, None)
    try:
        account = ss.Account("alice@example.com", "Alice")
        call = alice.new_session(account)
        assert call.state() == "NULL"
        with pytest.raises(ss.SipSimpleError.InvalidState):
            call.end()
        with pytest.raises(ss.SipSimpleError.NotFound):
            call.connect("sip:bob@127.0.0.1:5060", [], ["no-such-type"])
        port = bob.sip_local_port("udp")
        call.connect("sip:bob@127.0.0.1:%d" % port, [], ["pyping"])
        events.wait("SIPSessionDidStart", call.id())
        incoming = events.ids("SIPSessionNewIncoming")
        assert len(incoming) == 1
        events.wait("SIPSessionDidStart", incoming[0])
        events.wait("SIPSessionGotRingIndication", call.id())
        assert call.state() == "established"
        assert call.stream_types() == ["pyping"]
        # The greetings crossed on the addresses each SDP gave.
        end = time.time() + 5
        while len(handler.received) < 2 and time.time() < end:
            time.sleep(0.01)
        assert len(handler.received) == 2
        call.hold()
        events.wait("SIPSessionDidChangeHoldState", incoming[0])
        events.wait("SIPSessionDidChangeHoldState", call.id())
        assert '"on_hold_by_local":true' in call.info_json()
        with pytest.raises(ss.SipSimpleError.InvalidState):
            call.accept(None)
        end = time.time() + 5
        while call.state() != "established" and time.time() < end:
            time.sleep(0.01)
        call.end()
        events.wait("SIPSessionDidEnd", call.id())
        events.wait("SIPSessionDidEnd", incoming[0])
        # Every stream made got its end call once.
        made = {sid for what, sid in handler.calls if what in ("new_outgoing", "new_from_sdp")}
        ended = [sid for what, sid in handler.calls if what == "end"]
        assert sorted(ended) == sorted(made)
        assert sum(1 for w, _ in handler.calls if w == "hold") == 2
    finally:
        center.remove_observer(token)


def test_chat_from_python():
    """A chat session (MSRP over TLS, the account default): a message
    queued before the session starts, one each way, delivery reports, a
    composing indication, and errors for a session without chat."""
    alice, bob = start_app(), start_app()
    events = Events(bob)
    center = ss.NotificationCenter()
    token = center.add_observer(events, None, None)
    try:
        account = ss.Account("alice@example.com", "Alice")
        plain = alice.new_session(account)
        with pytest.raises(ss.SipSimpleError.InvalidState):
            plain.send_message(b"nobody listens", None)
        call = alice.new_session(account)
        port = bob.sip_local_port("udp")
        call.connect("sip:bob@127.0.0.1:%d" % port, [], ["chat"])
        early = call.send_message("queued before start ✓".encode(), "text/plain")
        events.wait("SIPSessionDidStart", call.id())
        incoming = events.ids("SIPSessionNewIncoming")[0]
        events.wait("SIPSessionDidStart", incoming)
        b = bob.get_session(incoming)
        b.send_message(b"hello alice", None)
        # Nothing received asked for a display notification (RFC 5438).
        with pytest.raises(ss.SipSimpleError.NotFound):
            b.send_display_notification("no-such-message")
        call.send_composing_indication("active", 30)

        def got(name):
            with events.lock:
                return [x for x in events.seen if x[0] == name]

        end = time.time() + 10
        while time.time() < end and (
            len(got("ChatStreamDidDeliverMessage")) < 2 or len(got("ChatStreamGotComposingIndication")) < 1
        ):
            time.sleep(0.01)
        delivered = [x[2] for x in got("ChatStreamDidDeliverMessage")]
        assert len(delivered) == 2
        assert any(early in d for d in delivered)
        contents = [x[2] for x in got("ChatStreamGotMessage")]
        assert any("queued before start" in c for c in contents)
        assert any("hello alice" in c for c in contents)
        assert '"state":"active"' in got("ChatStreamGotComposingIndication")[0][2]
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            call.send_composing_indication("typing", None)
        call.end()
        events.wait("SIPSessionDidEnd", incoming)
    finally:
        center.remove_observer(token)
        alice.stop()
        bob.stop()


def test_file_transfer_from_python(tmp_path):
    """Alice sends Bob a file (push) and pulls it back by its selector; the
    receivers keep each file once its hash matches."""
    alice, bob = start_app(), start_app()
    inbox_a, inbox_b = tmp_path / "alice", tmp_path / "bob"
    alice.setting_set("file_transfer.directory", json.dumps(str(inbox_a)))
    bob.setting_set("file_transfer.directory", json.dumps(str(inbox_b)))
    src = tmp_path / "notes.txt"
    data = b"".join(b"line %d\n" % i for i in range(20000))
    src.write_bytes(data)
    events = Events(bob)
    center = ss.NotificationCenter()
    token = center.add_observer(events, None, None)
    try:
        account = ss.Account("alice@example.com", "Alice")
        port = bob.sip_local_port("udp")
        push = alice.new_session(account)
        with pytest.raises(ss.SipSimpleError.Io):
            push.connect_file("sip:bob@127.0.0.1:%d" % port, [], str(tmp_path / "missing"))
        push = alice.new_session(account)
        push.connect_file("sip:bob@127.0.0.1:%d" % port, [], str(src))

        def finished(direction):
            with events.lock:
                return [json.loads(x[2]) for x in events.seen
                        if x[0] == "FileTransferStreamDidFinish" and json.loads(x[2])["direction"] == direction]

        end = time.time() + 20
        while time.time() < end and not finished("receive"):
            time.sleep(0.01)
        got = finished("receive")[0]
        assert got["error"] is False and got["hash_verified"] is True
        assert open(got["file_path"], "rb").read() == data
        push.end()

        # Pull it back from Bob by name and hash; Bob answers with the file
        # from inside his callback.
        class Server(ss.NotificationObserver):
            def handle_notification(self, n):
                if n.name() == "SIPSessionNewIncoming":
                    s = bob.get_session(n.sender_id())
                    if s is not None:
                        s.set_file_source(got["file_path"])
                        s.accept(None)

        center.remove_observer(token)
        token = center.add_observer(Server(), "SIPSessionNewIncoming", None)
        token2 = center.add_observer(events, "FileTransferStreamDidFinish", None)
        pull = alice.new_session(account)
        pull.connect_pull("sip:bob@127.0.0.1:%d" % port, [], 'name:"notes.txt" hash:%s' % got["hash"])
        end = time.time() + 20
        while time.time() < end and len(finished("receive")) < 2:
            time.sleep(0.01)
        back = finished("receive")[1]
        assert back["error"] is False and back["hash_verified"] is True
        assert back["file_path"].startswith(str(inbox_a))
        assert open(back["file_path"], "rb").read() == data
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            alice.new_session(account).connect_pull("sip:bob@127.0.0.1:%d" % port, [], "size:x")
        pull.end()
        center.remove_observer(token2)
    finally:
        center.remove_observer(token)
        alice.stop()
        bob.stop()
