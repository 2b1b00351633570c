"""Differential tests of the C accelerator ``_framing`` against its Python twin ``framing_python``.

Both modules are imported directly, whatever ``IGNITIA_SYNC_PURE_PYTHON`` says, and fed the
same input (hypothesis): the returned values (with their types), the messages appended to
``out`` (types and data), the exception type when one is raised, and the input buffer
(never changed) must be identical. The messages the C code builds without their dataclass
``__init__`` must be real, frozen, hashable, picklable, GC-visible instances, and a parse
loop must not leak.

Without a built accelerator the module is skipped (a machine without a compiler), unless
``IGNITIA_SYNC_BUILD_EXTENSION=yes`` (CI built it): then the import error fails the run.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pickle
import struct
import sys
import tracemalloc
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ignitia_sync.message import Binary, Ping, Pong, Text
from ignitia_sync.sansio import framing_python

try:
    from ignitia_sync.sansio import _framing
except ImportError as exc:
    if os.environ.get("IGNITIA_SYNC_BUILD_EXTENSION") == "yes":
        raise ImportError(f"IGNITIA_SYNC_BUILD_EXTENSION=yes, yet the C accelerator is missing: {exc}") from exc
    pytest.skip(f"the C accelerator ignitia_sync.sansio._framing is not built: {exc}", allow_module_level=True)

try:  # what framing_python.unmask is when websockets is installed (and pure Python not forced)
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets is a test dependency
    apply_mask = None

C: ModuleType = _framing
P: ModuleType = framing_python

COMMON = (0x81, 0x82, 0x89, 0x8A)
#: First bytes that are not common: fragments (FIN=0), RSV bits, close, continuation, reserved opcodes.
UNCOMMON = (0x01, 0x02, 0x09, 0x0A, 0x00, 0x80, 0x88, 0x08, 0x83, 0x87, 0x8B, 0x8F, 0xC1, 0xC2, 0xA1, 0x91,
            0xF1, 0xC9, 0x7F, 0xFF)
BOUNDARIES = (0, 1, 2, 3, 4, 5, 7, 8, 9, 124, 125, 126, 127, 128, 511, 512, 513, 65535, 65536, 65537)
LIMITS = (0, -1, 1, 2, 124, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 2**63 - 1, 2**63, 2**64, 2**70,
          -(2**70))
UTF8_UNITS = tuple(c.encode() for c in ("a", "\x00", "\x7f", "\u00e9", "\u07ff", "\u0800", "\u20ac", "\uffff",
                                        "\U0001d11e", "\U0010ffff"))
#: Overlong, surrogate, out of range, stray continuation, truncated multibyte.
BAD_UTF8 = (b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf",
            b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xff", b"\xfe", b"\x80", b"\xbf", b"\xc3",
            b"\xe2\x82", b"\xf0\x9f\x98")
OPCODES = (0, 1, 2, 8, 9, 10)
FIRSTS = (0x80, 0xC0, 0x00)


def xor(data: bytes, key: bytes) -> bytes:
    """The test's own masking: byte by byte when short, as one big integer when long."""
    if len(data) < 64:
        return bytes(b ^ key[i & 3] for i, b in enumerate(data))
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def head(first: int, length: int, mask_bit: int, form: str = "minimal") -> bytes:
    """A frame header declaring ``length`` in the minimal encoding or forced to the 126/127 form."""
    if form == "126" and length < 65536:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    if form == "127" or length >= 65536:
        return struct.pack("!BBQ", first, mask_bit | 127, length)
    if length < 126:
        return bytes((first, mask_bit | length))
    return struct.pack("!BBH", first, mask_bit | 126, length)


def raw_frame(first: int, payload: bytes, masked: bool, key: bytes = b"\x9a\x0b\x3c\xd4", *,
              form: str = "minimal", declared: int | None = None, mask_bit: int | None = None) -> bytes:
    """One frame with every field under the test's control."""
    bit = (0x80 if masked else 0) if mask_bit is None else mask_bit
    length = len(payload) if declared is None else declared
    if bit:
        return head(first, length, bit, form) + key + xor(payload, key)
    return head(first, length, bit, form) + payload


def outcome(impl: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """What a call gives: ("ok", type, value) or ("raised", exception type)."""
    try:
        value = impl(*args)
    except Exception as exc:
        return ("raised", type(exc))
    if isinstance(value, tuple):
        return ("ok", tuple, tuple((type(v), v) for v in value))
    return ("ok", type(value), value)


def run_parse(module: ModuleType, data: bytes, masked: bool, limit: int, prefill: list[Any]) -> tuple[Any, ...]:
    """One module's parse of ``data``: its outcome and ``out`` as (type, data type, data) triples."""
    buf = bytearray(data)
    out = list(prefill)
    result = outcome(module.parse, buf, masked, limit, out)
    assert buf == data, "parse changed its buffer"
    assert all(a is b for a, b in zip(out, prefill, strict=False)), "parse touched what out held"
    return result, [(type(m), type(getattr(m, "data", None)), getattr(m, "data", m)) for m in out]


def same_parse(data: bytes, masked: bool, limit: int, prefill: list[Any] | None = None) -> tuple[Any, ...]:
    """Assert both twins parse ``data`` identically; return the common result."""
    prefill = prefill or []
    native = run_parse(C, data, masked, limit, prefill)
    python = run_parse(P, data, masked, limit, prefill)
    assert native == python
    return native


# ---------------------------------------------------------------- generators


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """Payload bytes: random, valid UTF-8, or a pattern of a boundary length, maybe with bad UTF-8 spliced in."""
    kind = draw(st.sampled_from(("random", "text", "pattern", "pattern")))
    if kind == "random":
        data = draw(st.binary(max_size=300))
    elif kind == "text":
        data = draw(st.text(max_size=150)).encode()
    else:
        length = draw(st.sampled_from(BOUNDARIES))
        unit = draw(st.sampled_from(UTF8_UNITS) | st.binary(min_size=1, max_size=5))
        data = (unit * (length // len(unit) + 1))[:length]  # may end in a truncated multibyte character
    if data and draw(st.integers(0, 3)) == 0:
        bad = draw(st.sampled_from(BAD_UTF8))
        at = draw(st.integers(0, len(data)))
        data = (data[:at] + bad + data[at + len(bad) :])[: max(len(data), len(bad))]
    return data


@st.composite
def frames(draw: st.DrawFn, masked: bool) -> bytes:
    """One frame: mostly a clean common one, else any first byte, mask bit, length encoding or declared length."""
    if draw(st.integers(0, 4)) < 3:  # clean: what parse reads, so streams get past their first frame
        first = draw(st.sampled_from(COMMON))
        if first == 0x81:
            unit = draw(st.sampled_from(UTF8_UNITS))
            text = draw(st.text(max_size=150).map(str.encode)
                        | st.sampled_from(BOUNDARIES).map(lambda n: unit * (n // len(unit))))
            return raw_frame(first, text, masked, draw(st.binary(min_size=4, max_size=4)))
        payload = draw(payloads())
        return raw_frame(first, payload[:125] if first & 0x08 else payload, masked,
                         draw(st.binary(min_size=4, max_size=4)))
    payload = draw(payloads())
    first = draw(st.sampled_from(COMMON) | st.sampled_from(COMMON) | st.sampled_from(UNCOMMON)
                 | st.integers(0, 255))
    mask_bit = 0x80 if masked else 0
    if draw(st.integers(0, 9)) == 0:
        mask_bit ^= 0x80
    form = draw(st.sampled_from(("minimal",) * 6 + ("126", "127")))
    declared = None
    if draw(st.integers(0, 9)) == 0:
        declared = draw(st.sampled_from((0, 1, 125, 126, 65535, 65536, 2**63 - 1, 2**63, 2**63 + 5, 2**64 - 1))
                        | st.integers(0, len(payload) + 10))
        if declared >= 65536:
            form = "127"
    key = draw(st.binary(min_size=4, max_size=4))
    return raw_frame(first, payload, masked, key, form=form, declared=declared, mask_bit=mask_bit)


@st.composite
def streams(draw: st.DrawFn, masked: bool) -> bytes:
    """A few frames, maybe with garbage inserted, maybe cut short at a random point."""
    data = b"".join(draw(st.lists(frames(masked), min_size=1, max_size=5)))
    if draw(st.booleans()):
        garbage = draw(st.binary(min_size=1, max_size=20))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + garbage + data[at:]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return data


limits = st.sampled_from(LIMITS) | st.integers(-3, 70_000) | st.just(1 << 20)
prefills = st.lists(st.sampled_from((Text("x"), Binary(b"y"), Ping(), Pong(b"z"), "not a message", 7)),
                    max_size=3)
binary_like = st.sampled_from((bytes, bytearray, memoryview, "offset view"))


def as_type(data: bytes, kind: Any) -> Any:
    """``data`` as bytes, bytearray, memoryview, or a memoryview starting 3 bytes into its object."""
    if kind == "offset view":
        return memoryview(b"abc" + data)[3:]
    return kind(data)


SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- parse


@SLOW
@given(st.data(), st.booleans(), limits, prefills)
def test_parse_agrees_on_mixed_streams(data: st.DataObject, masked: bool, limit: int, prefill: list[Any]) -> None:
    """Both twins agree on streams of valid, invalid, garbled and cut frames, in both roles, for any limit."""
    same_parse(data.draw(streams(masked)), masked, limit, prefill)


@SLOW
@given(st.booleans(), st.lists(st.tuples(st.sampled_from(COMMON), payloads(), st.binary(min_size=4, max_size=4)),
                               min_size=1, max_size=6), st.integers(min_value=0))
def test_parse_reads_valid_streams_and_stops_at_any_cut(masked: bool, specs: list[Any], cut: int) -> None:
    """On valid frames both read every message (text only while UTF-8), and a cut stream stops incomplete at a frame boundary."""
    specs = [(first, payload[:125] if first & 0x08 else payload, key) for first, payload, key in specs]
    pieces = [raw_frame(first, payload, masked, key) for first, payload, key in specs]
    data = b"".join(pieces)
    bounds = [0]
    for piece in pieces:
        bounds.append(bounds[-1] + len(piece))
    expected: list[Any] = []
    for first, payload, _ in specs:
        if first == 0x81:
            try:
                expected.append(Text(payload.decode()))
            except UnicodeDecodeError:
                break  # parse stops before the first text frame that is not UTF-8
        else:
            expected.append({0x82: Binary, 0x89: Ping, 0x8A: Pong}[first](payload))
    stop = len(expected)  # index of the bad text frame, or len(specs)
    for end in (len(data), cut % (len(data) + 1)):
        whole = max(i for i, bound in enumerate(bounds) if bound <= end)
        read = min(stop, whole)
        decided = read == stop < len(specs) and bounds[stop + 1] <= end  # the bad frame is all there
        result, out = same_parse(data[:end], masked, 1 << 20)
        assert result == ("ok", tuple, ((int, bounds[read]), (bool, not decided)))
        assert out == [(type(m), type(m.data), m.data) for m in expected[:read]]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans(), limits)
def test_parse_agrees_on_random_bytes(data: bytes, masked: bool, limit: int) -> None:
    """Both twins agree on random bytes."""
    same_parse(data, masked, limit)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(COMMON), st.integers(0, 255), st.binary(min_size=0, max_size=8), st.booleans(), limits)
def test_parse_agrees_on_random_headers(first: int, second: int, rest: bytes, masked: bool, limit: int) -> None:
    """Both twins agree on a common first byte followed by any second byte and extended length."""
    same_parse(bytes((first, second)) + rest + bytes(140), masked, limit)


def edge_frames(masked: bool) -> list[tuple[str, bytes]]:
    """Hand-written frames at each decision of parse."""
    bit = 0x80 if masked else 0
    key = b"\x00\xff\x10\x01" if masked else b""
    return [
        ("empty text", raw_frame(0x81, b"", masked)),
        ("125 binary", raw_frame(0x82, bytes(range(125)), masked)),
        ("126 binary", raw_frame(0x82, bytes(126), masked)),
        ("65535 binary", raw_frame(0x82, b"\x01" * 65535, masked)),
        ("65536 binary", raw_frame(0x82, b"\x02" * 65536, masked)),
        ("65536 text", raw_frame(0x81, "\u20ac".encode() * 21845 + b"a", masked)),
        ("text truncated multibyte", raw_frame(0x81, b"ok\xe2\x82", masked)),
        ("text overlong", raw_frame(0x81, b"\xc0\xaf", masked)),
        ("text surrogate", raw_frame(0x81, b"\xed\xa0\x80", masked)),
        ("text over 512 then bad", raw_frame(0x81, b"a" * 600 + b"\xff", masked)),
        ("ping 125", raw_frame(0x89, b"p" * 125, masked)),
        ("ping with 126 form", raw_frame(0x89, b"p" * 10, masked, form="126")),
        ("pong 126 long", raw_frame(0x8A, b"p" * 126, masked)),
        ("ping with 127 form", raw_frame(0x89, b"p" * 10, masked, form="127")),
        ("126 form under 126", raw_frame(0x82, b"b" * 125, masked, form="126")),
        ("126 form of 0", raw_frame(0x82, b"", masked, form="126")),
        ("127 form under 65536", raw_frame(0x82, b"b" * 65535, masked, form="127")),
        ("127 form of 126", raw_frame(0x82, b"b" * 126, masked, form="127")),
        ("127 top bit", head(0x82, 2**63, bit, "127") + key),
        ("127 all ones", head(0x82, 2**64 - 1, bit, "127") + key),
        ("127 max positive", head(0x82, 2**63 - 1, bit, "127") + key + b"x"),
        ("wrong mask bit", raw_frame(0x82, b"abc", masked, mask_bit=bit ^ 0x80)),
        ("fragment", raw_frame(0x01, b"abc", masked)),
        ("continuation", raw_frame(0x80, b"abc", masked)),
        ("close", raw_frame(0x88, b"\x03\xe8", masked)),
        ("rsv1", raw_frame(0xC1, b"abc", masked)),
        ("rsv2", raw_frame(0xA2, b"abc", masked)),
        ("rsv3", raw_frame(0x92, b"abc", masked)),
        ("reserved data opcode", raw_frame(0x83, b"abc", masked)),
        ("reserved control opcode", raw_frame(0x8B, b"abc", masked)),
    ]


EDGE_LIMITS = (0, -1, 2, 125, 126, 65535, 65536, 2**63 - 1, 2**63, 2**70, -(2**70))


@pytest.mark.parametrize("masked", [True, False], ids=["server", "client"])
def test_parse_agrees_on_each_edge_frame_alone_after_a_frame_and_cut(masked: bool) -> None:
    """Each hand-written edge frame gives the same result alone, after a valid frame, before one, and cut anywhere in its head."""
    lead = raw_frame(0x82, b"lead", masked)
    for _name, piece in edge_frames(masked):
        for limit in EDGE_LIMITS:
            same_parse(piece, masked, limit)
            same_parse(lead + piece + lead, masked, limit, [Text("before")])
        cuts = {*range(min(len(piece), 20)), len(piece) - 1, len(piece) // 2}
        for cut in cuts:
            same_parse(lead + piece[:cut], masked, 1 << 20)


def test_parse_edge_results() -> None:
    """The decisions themselves, not only the agreement: shortest encodings, control lengths, top bit, limit."""
    readable = {"empty text", "125 binary", "126 binary", "65535 binary", "65536 binary", "65536 text", "ping 125"}
    for masked in (True, False):
        for name, piece in edge_frames(masked):
            result, _ = same_parse(piece, masked, 2**70)
            if name in readable:
                assert result[2] == ((int, len(piece)), (bool, True)), name
            else:  # the frame is wsproto's, except the huge one that is only incomplete
                assert result[2] == ((int, 0), (bool, name == "127 max positive")), name
    piece = raw_frame(0x82, b"abc", False)
    assert same_parse(piece, False, 2)[0][2] == ((int, 0), (bool, False))
    assert same_parse(piece, False, 3)[0][2] == ((int, len(piece)), (bool, True))


@given(st.booleans(), prefills, st.lists(st.tuples(st.sampled_from(COMMON), st.binary(max_size=20)), max_size=4))
def test_parse_appends_after_what_out_holds(masked: bool, prefill: list[Any], specs: list[Any]) -> None:
    """Both twins append after a pre-filled out list and leave its items (the same objects) in place."""
    data = b"".join(raw_frame(first, payload if first != 0x81 else payload.hex().encode(), masked)
                    for first, payload in specs)
    _, out = same_parse(data, masked, 1 << 20, prefill)
    assert len(out) == len(prefill) + len(specs)


def test_parse_reads_masked_by_truth_value() -> None:
    """A masked flag is read by truth value in both (any truthy object is a server)."""
    data = raw_frame(0x82, b"ab", True)
    for flag in (1, "yes", [0]):
        assert same_parse(data, flag, 10)[0][2] == ((int, len(data)), (bool, True))


# ---------------------------------------------------------------- building frames


@given(st.sampled_from(OPCODES), st.sampled_from(FIRSTS), st.sampled_from(BOUNDARIES) | st.integers(0, 300),
       binary_like, st.binary(min_size=1, max_size=3))
def test_frame_agrees(opcode: int, first: int, length: int, kind: Any, unit: bytes) -> None:
    """frame() gives the same bytes for each opcode, FIN/RSV byte, boundary length and payload type."""
    payload = (unit * length)[:length]
    native = outcome(C.frame, opcode, as_type(payload, kind), first)
    assert native == outcome(P.frame, opcode, as_type(payload, kind), first)
    assert native == ("ok", bytes, head(first | opcode, length, 0) + payload)
    if first == 0x80:
        assert outcome(C.frame, opcode, as_type(payload, kind)) == native == outcome(P.frame, opcode, payload)


@given(st.text(max_size=200) | st.sampled_from(("", "a", "\u00e9", "\U0001f600")).flatmap(
    lambda unit: st.sampled_from(BOUNDARIES).map(lambda n: unit * n)))
@example("")
@example("a" * 65536)
@example("\u00e9" * 63)
def test_text_frame_agrees(text: str) -> None:
    """text_frame() gives the same bytes on ASCII, non-ASCII and empty text, at the length boundaries."""
    native = outcome(C.text_frame, text)
    assert native == outcome(P.text_frame, text)
    assert native == ("ok", bytes, head(0x81, len(text.encode()), 0) + text.encode())


@pytest.mark.parametrize("text", ["\ud800", "a\udfff", "\u00e9\ud83d", "x" * 200 + "\udc00"])
def test_text_frame_lone_surrogate_raises_unicode_encode_error_in_both(text: str) -> None:
    """A lone surrogate raises UnicodeEncodeError in both twins."""
    assert outcome(C.text_frame, text) == outcome(P.text_frame, text) == ("raised", UnicodeEncodeError)


@given(st.sampled_from(OPCODES), st.sampled_from(BOUNDARIES) | st.integers(0, 300), binary_like,
       st.binary(min_size=1, max_size=3), st.binary(min_size=4, max_size=4), st.sampled_from((bytes, bytearray)))
def test_masked_frame_agrees(opcode: int, length: int, kind: Any, unit: bytes, key: bytes, key_type: Any) -> None:
    """masked_frame() gives the same bytes for each opcode, boundary length, payload type and 4-byte key."""
    payload = (unit * length)[:length]
    native = outcome(C.masked_frame, opcode, as_type(payload, kind), key_type(key))
    assert native == outcome(P.masked_frame, opcode, as_type(payload, kind), key_type(key))
    assert native == ("ok", bytes, head(0x80 | opcode, length, 0x80) + key + xor(payload, key))


# ---------------------------------------------------------------- unmask


@given(st.integers(0, 70) | st.sampled_from((255, 256, 257, 4096, 65537, (1 << 20) + 3)), binary_like,
       st.binary(min_size=1, max_size=7), st.binary(min_size=4, max_size=4), st.sampled_from((bytes, bytearray)))
def test_unmask_agrees(length: int, kind: Any, unit: bytes, key: bytes, key_type: Any) -> None:
    """unmask() gives the same bytes for lengths 0..70 and large ones, any data type and offset, bytes or bytearray keys."""
    data = (unit * length)[:length]
    native = outcome(C.unmask, as_type(data, kind), key_type(key))
    assert native == outcome(P.unmask, as_type(data, kind), key_type(key))
    assert native == ("ok", bytes, xor(data, key))


@pytest.mark.skipif(apply_mask is None, reason="websockets.speedups is not installed")
@pytest.mark.parametrize("key_size", [0, 1, 3, 5, 8])
@pytest.mark.parametrize("length", [0, 1, 4, 200])
def test_wrong_key_length_raises_value_error_like_websockets(key_size: int, length: int) -> None:
    """A key that is not 4 bytes raises ValueError in C, as framing_python does over websockets' apply_mask."""
    data, key = b"d" * length, b"k" * key_size
    assert outcome(C.unmask, data, key) == outcome(apply_mask, data, key) == ("raised", ValueError)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(framing_python, "unmask", apply_mask)
        for opcode in OPCODES:
            expected = outcome(P.masked_frame, opcode, data, key)
            assert outcome(C.masked_frame, opcode, data, key) == expected == ("raised", ValueError)


@pytest.mark.parametrize("key_size", [0, 3, 5])
def test_the_python_unmask_refuses_a_key_that_is_not_4_bytes_like_c(key_size: int) -> None:
    """unmask_python (no websockets) raises ValueError as C does, instead of XORing with a wrong key."""
    for unmask in (framing_python.unmask_python, C.unmask):
        with pytest.raises(ValueError, match=r"^mask must contain 4 bytes$"):  # websockets' words
            unmask(b"data", b"k" * key_size)


@pytest.mark.parametrize("typecode", ["H", "I", "d"])
@pytest.mark.parametrize("count", [0, 3, 40, 20_000])
def test_a_memoryview_of_wide_items_is_framed_by_its_bytes_in_both(typecode: str, count: int) -> None:
    """The header says the payload's size in bytes, not its number of items (a memoryview of an array)."""
    import array

    view = memoryview(array.array(typecode, range(count)))
    key = b"\x01\x02\x03\x04"
    assert P.frame(2, view) == C.frame(2, view) == C.frame(2, view.tobytes())
    assert P.masked_frame(2, view, key) == C.masked_frame(2, view, key) == C.masked_frame(2, view.tobytes(), key)
    assert framing_python.unmask_python(view, key) == C.unmask(view, key) == C.unmask(view.tobytes(), key)


# ---------------------------------------------------------------- the messages C builds


WRONG_SHAPES = {
    "a plain class": "class Text:\n    pass",
    "a second field": "@dataclasses.dataclass(frozen=True, slots=True)\nclass Text:\n    data: str\n    more: int = 0",
    "a __post_init__": (
        "@dataclasses.dataclass(frozen=True, slots=True)\nclass Text:\n    data: str\n"
        "    def __post_init__(self):\n        pass"
    ),
    "no slots": "@dataclasses.dataclass(frozen=True)\nclass Text:\n    data: str",
    "a slot of another class": (
        "@dataclasses.dataclass(frozen=True, slots=True)\nclass Other:\n    data: str\n"
        "@dataclasses.dataclass(frozen=True)\nclass Text:\n    data: str = Other.data"
    ),
    "no class at all": "Text = None\ndel messages.Text",
}


@pytest.mark.parametrize("shape", sorted(WRONG_SHAPES))
def test_a_message_class_of_another_shape_fails_the_import_with_import_error(shape: str) -> None:
    """Never a crash nor another error: framing.py catches ImportError and runs Python instead."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import dataclasses, importlib
        import ignitia_sync.message as messages  # IGNITIA_SYNC_PURE_PYTHON: framing has not loaded C
        """
    ) + WRONG_SHAPES[shape] + textwrap.dedent(
        """
        if "Text" in globals() and Text is not None:
            messages.Text = Text
        try:
            importlib.import_module("ignitia_sync.sansio._framing")
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    env = {**os.environ, "IGNITIA_SYNC_PURE_PYTHON": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert result.stdout.startswith("ImportError: ignitia_sync.message.Text is no longer a dataclass"), (
        result.stdout + result.stderr
    )



def native_messages() -> list[Any]:
    """One message of each kind, built by the C parse from masked frames."""
    payloads = [(0x81, f"unique text \u00e9 {id(object())}"), (0x82, b"unique binary \x00\xff"),
                (0x89, b"unique ping"), (0x8A, b"unique pong")]
    data = b"".join(raw_frame(first, p.encode() if isinstance(p, str) else p, True) for first, p in payloads)
    out: list[Any] = []
    assert C.parse(bytearray(data), True, 1 << 20, out) == (len(data), True)
    return out


def test_native_messages_are_real_frozen_hashable_picklable_instances() -> None:
    """C-built messages are of the exact classes, equal, hash and repr like Python-built ones, frozen, and pickle round-trips."""
    for message in native_messages():
        cls = type(message)
        assert cls in (Text, Binary, Ping, Pong)
        twin = cls(message.data)
        assert type(message) is cls and isinstance(message, cls)
        assert message == twin and hash(message) == hash(twin) and repr(message) == repr(twin)
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.data = twin.data  # type: ignore[misc]
        copy = pickle.loads(pickle.dumps(message))
        assert type(copy) is cls and copy == message
        assert dataclasses.astuple(message) == (message.data,) and dataclasses.replace(message) == message
        match message:
            case Text(data) | Binary(data) | Ping(data) | Pong(data):
                assert data is message.data


def test_native_messages_survive_gc_and_hold_one_reference_to_their_data() -> None:
    """C-built messages are GC-visible (their data is a referent), survive collection, and count references like Python-built ones."""
    messages = native_messages()
    datas = [m.data for m in messages]
    gc.collect()
    for message, data in zip(messages, datas, strict=True):
        assert gc.is_tracked(message) == gc.is_tracked(type(message)(data))
        assert any(ref is data for ref in gc.get_referents(message))
        assert message.data == data
    del datas
    gc.collect()
    for message in native_messages():
        twin = type(message)(message.data[:1] + message.data[1:])  # an equal, distinct object
        assert sys.getrefcount(message.data) == sys.getrefcount(twin.data)
    classes = (Text, Binary, Ping, Pong)
    before = [sys.getrefcount(cls) for cls in classes]
    for _ in range(1000):
        native_messages()
    gc.collect()
    assert [sys.getrefcount(cls) for cls in classes] == before


def test_parse_loop_does_not_leak() -> None:
    """10,000 parses of 50-frame buffers (both roles, each ending in bad UTF-8) grow traced memory by under 100 KB."""
    units = [(0x81, b"hello"), (0x81, "h\u00e9llo \u20ac".encode()), (0x82, bytes(range(40))), (0x89, b"p"),
             (0x8A, b""), (0x81, "\u00e9".encode() * 300)]
    buffers = []
    for masked in (True, False):
        bad = raw_frame(0x81, b"\xc0\xaf", masked)
        buf = bytearray(b"".join(raw_frame(*units[i % len(units)], masked) for i in range(49)) + bad)
        assert C.parse(buf, masked, 1 << 20, []) == (len(buf) - len(bad), False)
        buffers.append((buf, masked))
    for _ in range(500):
        for buf, masked in buffers:
            C.parse(buf, masked, 1 << 20, [])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(5_000):
            for buf, masked in buffers:
                C.parse(buf, masked, 1 << 20, [])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, f"traced memory grew by {grown} bytes over 10,000 parses"
