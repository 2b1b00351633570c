"""wsproto's private attributes that we rely on are all there, in the release installed."""

from wsproto import ConnectionType
from wsproto.connection import Connection

from ignitia_sync.sansio.deflate import _BoundedDeflate
from ignitia_sync.sansio.wsproto_private import (
    CONNECTION_ATTRIBUTES,
    DEFLATE_ATTRIBUTES,
    decoder_idle,
    missing,
)


def test_the_connection_internals_we_read_exist():
    for role in (ConnectionType.SERVER, ConnectionType.CLIENT):
        assert missing(Connection(role), CONNECTION_ATTRIBUTES) == [], "wsproto moved an attribute we read"


def test_the_deflate_internals_we_use_exist():
    deflate = _BoundedDeflate(1024)
    deflate.finalize("permessage-deflate")
    assert missing(deflate, DEFLATE_ATTRIBUTES) == [], "wsproto's PerMessageDeflate moved an attribute we use"


def test_the_decoder_is_not_idle_while_it_holds_a_partial_frame():
    conn = Connection(ConnectionType.SERVER)
    assert decoder_idle(conn)
    conn.receive_data(b"\x81\x85")  # a masked text frame's header, no mask or payload yet
    list(conn.events())
    assert not decoder_idle(conn)


def test_missing_names_what_is_absent():
    assert missing(Connection(ConnectionType.SERVER), ("_proto._no_such_thing",)) == ["_proto._no_such_thing"]
