"""The client's modules by job: the public names stay where users import them."""

from __future__ import annotations

import importlib

import ignitia_sync.client


def test_the_package_exports_exactly_its_public_names_from_the_modules_that_define_them():
    assert sorted(ignitia_sync.client.__all__) == [
        "Backoff", "ClientConnection", "Gap", "Joined", "Left", "Positions", "Presence", "Reconnecting", "RoomMessage",
        "RoomsConnection", "connect", "connect_rooms", "header_list", "parse_url", "reconnecting", "retryable",
    ]
    homes = {
        "Backoff": "ignitia_sync._support.backoff",
        "ClientConnection": "ignitia_sync.client.connection",
        "connect": "ignitia_sync.client.connection",
        "Reconnecting": "ignitia_sync.client.reconnect",
        "reconnecting": "ignitia_sync.client.reconnect",
        "retryable": "ignitia_sync.client.reconnect",
        "header_list": "ignitia_sync.client.url",
        "parse_url": "ignitia_sync.client.url",
        **dict.fromkeys(("Gap", "Joined", "Left", "Positions", "Presence", "RoomMessage", "RoomsConnection",
                         "connect_rooms"),
                        "ignitia_sync.client.rooms"),
    }
    for name, module in homes.items():
        assert getattr(ignitia_sync.client, name).__module__ == module, name


def test_the_url_module_opens_no_socket():
    url = importlib.import_module("ignitia_sync.client.url")
    assert not {"socket", "ssl", "gevent"} & set(vars(url))
