"""The chat example started as its page says, with no CHAT_SECRET_KEY, then restarted: in Chromium.

The process runs ``ignitia-sync chat_app:app --port N`` on a copy of ``examples/chat_app``
in a temporary folder, so that its instance folder (where the development key is kept)
is the test's own. Before: each start drew a random key, every retry of an open page was a
401 it could not see, and the page said "reconnecting" forever. Now the key survives the
restart (the page reconnects as the same user), and when the key really changed the page
asks ``/session``, finds itself signed out and goes to the sign-in page.
"""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any

import pytest

from tests.e2e.test_chat_app import ChatServer, Page
from tests.subprocess_server import ROOT, free_port, host_command


@pytest.mark.browser
def test_a_restart_keeps_the_page_signed_in_and_a_new_key_sends_it_to_sign_in(browser: Any, tmp_path: Any) -> None:
    from playwright.sync_api import expect

    shutil.copytree(os.path.join(ROOT, "examples", "chat_app"), tmp_path / "chat_app",
                    ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "CHAT_SECRET_KEY": ""}  # unset, as on a first run
    server = ChatServer(host_command("ignitia-sync", "chat_app:app", port), port, env).start()
    alice = None
    try:
        alice = Page(browser, server, "alice", "lobby")
        key = pathlib.Path(tmp_path / "instance" / "chat_secret_key")
        assert len(key.read_text().strip()) == 64  # drawn at the first start, kept in the instance folder

        server.stop()
        alice.expect_status("reconnecting")
        server.start()
        alice.expect_status("connected", timeout=30_000)  # same key: the session cookie still signs alice in
        alice.send("after the restart")
        alice.expect_message("alice", "after the restart")

        server.stop()
        alice.expect_status("reconnecting")
        key.write_text("another key\n")  # what a new CHAT_SECRET_KEY, or a lost instance folder, does
        server.start()
        expect(alice.page).to_have_url(f"{server.http}/?room=lobby", timeout=30_000)  # the sign-in page
        expect(alice.page.locator("#name")).to_be_visible()
    finally:
        if alice is not None:
            alice.close()
        server.stop()
