"""Accounts and settings from Python: add an account, change and save its
settings (CFGSettingsObjectDidChange names what changed), default account,
global settings, errors for bad names and values, persistence in the file."""
import json
import os
import tempfile
import threading
import time

import pytest

import sipsimple as ss


class Seen(ss.NotificationObserver):
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def handle_notification(self, n):
        with self.lock:
            self.items.append((n.name(), n.data_json()))

    def data(self, name):
        with self.lock:
            return [json.loads(d) for n, d in self.items if n == name]


def test_accounts_and_settings_persist():
    d = tempfile.mkdtemp()
    seen = Seen()
    center = ss.NotificationCenter()
    token = center.add_observer(seen, None, None)
    app = ss.SipApplication()
    app.start(ss.Storage.file(d))
    try:
        assert app.account_ids() == ["bonjour@local"]
        # No registrar here: registration off before anything is sent.
        acc = app.add_account("zoe@example.invalid", "pw")
        acc.set("registration.enabled", "false")
        acc.set("registration.expires", "900")
        assert sorted(acc.save()) == ["registration.enabled", "registration.expires"]
        assert json.loads(acc.get("registration.expires")) == 900
        assert json.loads(acc.get("auth.password")) == "pw"
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            acc.set("registration.expires", '"soon"')
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            acc.set("no.such.setting", "1")
        with pytest.raises(ss.SipSimpleError.InvalidArgument):
            acc.set("display_name", "not json")
        with pytest.raises(ss.SipSimpleError.NotFound):
            app.get_account("nobody@example.invalid")
        # The first SIP account is already the default; switching posts.
        assert app.default_account_id() == "zoe@example.invalid"
        app.set_default_account_id("bonjour@local")
        app.set_default_account_id("zoe@example.invalid")
        assert app.default_account_id() == "zoe@example.invalid"
        assert app.setting_set("rtp.audio_codec_list", '["PCMA"]') == ["rtp.audio_codec_list"]
        assert json.loads(app.setting_get("rtp.audio_codec_list")) == ["PCMA"]
        center.flush(5000)
        changed = seen.data("CFGSettingsObjectDidChange")
        assert {"modified": ["rtp.audio_codec_list"]} in changed
        assert any(sorted(c["modified"]) == ["registration.enabled", "registration.expires"] for c in changed)
        assert seen.data("SIPAccountManagerDidChangeDefaultAccount")[-1]["account"] == "zoe@example.invalid"
    finally:
        app.stop()
        center.remove_observer(token)
    doc = json.load(open(os.path.join(d, "config.json")))
    assert doc["accounts"]["zoe@example.invalid"]["registration"]["expires"] == 900
    assert doc["default_account"] == "zoe@example.invalid"
    # Loaded again at the next start.
    app = ss.SipApplication()
    app.start(ss.Storage.file(d))
    try:
        assert "zoe@example.invalid" in app.account_ids()
        app.delete_account("zoe@example.invalid")
        assert app.account_ids() == ["bonjour@local"]
    finally:
        app.stop()
