"""ignitia_sync.javascript: where ignitia-rooms.js is, how javascript_app serves it, that the package ships it.

What the script does in a browser: tests/e2e/test_rooms_js.py (marker ``browser``).
"""

from __future__ import annotations

import configparser
import fnmatch
import hashlib
import pathlib
import re
from typing import Any

import pytest

from ignitia_sync.broadcast.positions import MAX_EPOCH_LENGTH
from ignitia_sync.broadcast.rooms_protocol import MAX_RESUMED_ROOMS, SUBPROTOCOL
from ignitia_sync.javascript import javascript_app, javascript_path

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE = pathlib.Path(javascript_path())


def call(**environ: Any) -> tuple[str, dict[str, str], bytes]:
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(headers))

    body = b"".join(javascript_app({"REQUEST_METHOD": "GET", **environ}, start_response))
    return answer["status"], answer["headers"], body


def test_the_file_is_inside_the_package():
    assert SOURCE == ROOT / "ignitia_sync" / "static" / "ignitia-rooms.js"
    assert SOURCE.is_file()


def test_get_serves_the_file_as_javascript_with_an_etag():
    status, headers, body = call()
    assert status == "200 OK" and body == SOURCE.read_bytes()
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["Content-Length"] == str(len(body))
    assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["ETag"] == '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@pytest.mark.parametrize("form", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
def test_a_matching_if_none_match_is_a_304_without_a_body(form):
    etag = call()[1]["ETag"]
    status, headers, body = call(HTTP_IF_NONE_MATCH=form.format(etag=etag))
    assert (status, body) == ("304 Not Modified", b"")
    assert headers == {"ETag": etag, "Cache-Control": "no-cache"}


def test_another_etag_gets_the_file():
    assert call(HTTP_IF_NONE_MATCH='"0123"')[0] == "200 OK"


def test_head_has_the_headers_and_no_body():
    status, headers, body = call(REQUEST_METHOD="HEAD")
    assert status == "200 OK" and body == b"" and headers["Content-Length"] == str(SOURCE.stat().st_size)


def test_other_methods_are_refused():
    status, headers, body = call(REQUEST_METHOD="POST")
    assert status == "405 Method Not Allowed" and headers["Allow"] == "GET, HEAD" and body == b""


def test_the_wheel_and_the_sdist_ship_it():
    """setup.cfg's package_data names the file (setuptools puts package_data in both)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    patterns = [pattern.strip() for pattern in config["options.package_data"]["ignitia_sync"].split(",")]
    assert any(fnmatch.fnmatch("static/ignitia-rooms.js", pattern) for pattern in patterns)


def test_the_script_agrees_with_the_server_and_writes_no_markup():
    text = SOURCE.read_text(encoding="utf-8")
    assert f'const SUBPROTOCOL = "{SUBPROTOCOL}";' in text
    assert f"const MAX_RESUMED_ROOMS = {MAX_RESUMED_ROOMS};" in text
    assert f"const MAX_EPOCH_LENGTH = {MAX_EPOCH_LENGTH};" in text
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert unsafe not in text
    assert not re.search(r"^\s*(import|export)\b", text, re.MULTILINE)  # a classic script: no module syntax
