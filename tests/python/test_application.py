import json
import os
import queue
import tempfile
import threading

import pytest

import sipsimple as ss


class Recorder(ss.NotificationObserver):
    def __init__(self):
        self.items = queue.Queue()

    def handle_notification(self, notification):
        self.items.put(
            (
                notification.name(),
                notification.sender_kind(),
                notification.sender_id(),
                threading.current_thread() is threading.main_thread(),
                notification.data_json(),
                notification.get_string("reason"),
                notification.timestamp_us(),
            )
        )

    def drain(self):
        out = []
        while not self.items.empty():
            out.append(self.items.get_nowait())
        return out


@pytest.fixture
def center():
    return ss.NotificationCenter()


def test_start_stop_notifications_arrive_off_the_main_thread(center):
    app = ss.SipApplication()
    rec = Recorder()
    token = center.add_observer(rec, None, app.id())
    assert app.state() == "stopped"
    app.start(ss.Storage.memory())
    assert app.state() == "started"
    app.stop()
    assert app.state() == "stopped"
    got = rec.drain()
    assert [g[0] for g in got] == [
        "SIPApplicationWillStart",
        "SIPApplicationDidStart",
        "SIPApplicationWillEnd",
        "SIPApplicationDidEnd",
    ]
    assert all(g[1] == "SIPApplication" and g[2] == app.id() for g in got)
    assert not any(g[3] for g in got), "delivered on the main thread"
    stamps = [g[6] for g in got]
    assert stamps == sorted(stamps) and stamps[0] > 1_600_000_000_000_000
    assert center.remove_observer(token)
    assert not center.remove_observer(token)


def test_double_start_is_an_error_and_stop_is_idempotent():
    app = ss.SipApplication()
    app.stop()
    app.start(ss.Storage.memory())
    with pytest.raises(ss.SipSimpleError.InvalidState):
        app.start(ss.Storage.memory())
    app.stop()
    app.stop()


def test_name_filter_and_stop_from_inside_an_observer(center):
    app = ss.SipApplication()
    stopped = threading.Event()

    class Stopper(ss.NotificationObserver):
        def handle_notification(self, n):
            app.stop()
            stopped.set()

    token = center.add_observer(Stopper(), "SIPApplicationDidStart", app.id())
    app.start(ss.Storage.memory())
    assert stopped.wait(10)
    assert center.flush(10_000)
    assert app.state() == "stopped"
    center.remove_observer(token)


def test_corrupt_file_storage_fails_with_reason(center):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        f.write("{ not json")
    app = ss.SipApplication()
    rec = Recorder()
    token = center.add_observer(rec, None, app.id())
    with pytest.raises(ss.SipSimpleError.Storage) as exc:
        app.start(ss.Storage.file(d))
    assert "config.json" in str(exc.value)
    got = rec.drain()
    assert [g[0] for g in got] == ["SIPApplicationWillStart", "SIPApplicationDidFail", "SIPApplicationDidEnd"]
    assert "config.json" in got[1][5]
    assert "config.json" in json.loads(got[1][4])["reason"]
    with open(path) as f:
        assert f.read() == "{ not json"
    center.remove_observer(token)


def test_file_storage_round_trip():
    d = tempfile.mkdtemp()
    st = ss.Storage.file(d)
    assert st.describe().endswith("config.json")
    app = ss.SipApplication()
    app.start(st)
    app.stop()
    with pytest.raises(ss.SipSimpleError.InvalidArgument):
        ss.Storage.file("")


def test_raising_observer_does_not_break_delivery(center):
    app = ss.SipApplication()
    rec = Recorder()

    class Broken(ss.NotificationObserver):
        def handle_notification(self, n):
            raise RuntimeError("observer bug")

    t1 = center.add_observer(Broken(), None, app.id())
    t2 = center.add_observer(rec, None, app.id())
    app.start(ss.Storage.memory())
    app.stop()
    assert len(rec.drain()) == 4
    center.remove_observer(t1)
    center.remove_observer(t2)


def test_log_sink_receives_records():
    records = queue.Queue()

    class Sink(ss.LogSink):
        def log(self, level, target, message):
            records.put((level, target, message))

    ss.set_log_sink(Sink(), ss.LogLevel.DEBUG)
    app = ss.SipApplication()
    app.start(ss.Storage.memory())
    app.stop()
    ss.NotificationCenter().flush(10_000)
    ss.set_log_sink(None, ss.LogLevel.OFF)
    got = []
    while not records.empty():
        got.append(records.get_nowait())
    assert any(t.startswith("sipsimple") and "started sip engine" in m for (_, t, m) in got), got
    assert all(l in (ss.LogLevel.ERROR, ss.LogLevel.WARN, ss.LogLevel.INFO, ss.LogLevel.DEBUG) for (l, _, _) in got)


def test_version():
    assert ss.version().count(".") == 2


def test_audio_devices_are_listed_with_their_roles():
    # This machine may have none that can run; each one listed can.
    for d in ss.audio_devices():
        assert d.name and isinstance(d.description, str)
        assert d.input or d.output
        assert not d.default_input or d.input
        assert not d.default_output or d.output


def test_engine_answers_options_and_traces_over_the_binding(center):
    import socket

    app = ss.SipApplication()
    app.start(ss.Storage.memory())
    try:
        port = app.sip_local_port("udp")
        assert port and app.sip_local_port("tcp")
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            app.sip_local_port("carrier-pigeon")
        rec = Recorder()
        token = center.add_observer(rec, "SIPEngineSIPTrace", app.engine_id())
        app.set_sip_trace(True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        me = "127.0.0.1:%d" % s.getsockname()[1]
        req = (
            "OPTIONS sip:app@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP %s;branch=z9hG4bKpy1;rport\r\n"
            "From: <sip:py@127.0.0.1>;tag=p1\r\nTo: <sip:app@127.0.0.1>\r\n"
            "Call-ID: py-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n" % me
        )
        s.sendto(req.encode(), ("127.0.0.1", port))
        data, _ = s.recvfrom(65536)
        assert data.startswith(b"SIP/2.0 200 OK")
        s.close()
        stats = app.engine_statistics()
        assert stats.requests_in == 1 and stats.messages_out == 1
        assert stats.parse_errors == 0
        center.flush(5000)
        traces = [json.loads(g[4]) for g in rec.drain()]
        assert [t["received"] for t in traces] == [True, False]
        assert traces[0]["data"].startswith("OPTIONS ")
        assert traces[1]["destination_port"] == int(me.split(":")[1])
        center.remove_observer(token)
    finally:
        app.stop()
    assert app.engine_statistics() is None
    with pytest.raises(ss.SipSimpleError.InvalidState):
        app.set_sip_trace(True)
