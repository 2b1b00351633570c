"""The sans-I/O core: bytes in, events and bytes out; nothing here reads or writes a socket.

``http`` parses request heads and builds answers, ``protocol`` parses messages and frames
them in either role (with ``frames``, the frame encoders and masking, and ``deflate``,
permessage-deflate and the size guard), ``server_handshake`` turns an upgrade request
into a 101 and a protocol, ``client_handshake`` does the same for the client. No module of this folder imports
``socket``, ``ssl``, ``gevent`` or ``threading`` (``tests/architecture/test_layout.py`` checks the folder).

Example:
    >>> from ignitia_sync.sansio.protocol import WebSocketProtocol
    >>> WebSocketProtocol().send_text("hi")
    b'\\x81\\x02hi'
"""
