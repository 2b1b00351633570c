"""The guide's three handler kinds on one router.

* ``/simple``   websocket_handler: prints each text and answers "Acknowledged".
* ``/messages`` websocket_message_handler: text is upper-cased, binary reversed.
* ``/batch``    websocket_batch_handler(50 messages, 100 ms): one reply per message,
  sent as one batch, plus a "batch of N" marker so clients can see the batching.

Run: python examples/handler_kinds.py [--port N]   or   ignitia-sync examples.handler_kinds:app
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402

from ignitia_sync import (  # noqa: E402
    Message,
    Router,
    WebSocketConnection,
    run,
    websocket_batch_handler,
    websocket_handler,
    websocket_message_handler,
)

log = logging.getLogger("examples.handler_kinds")


def simple(ws: WebSocketConnection) -> None:
    while (message := ws.recv()) is not None:
        match message:
            case Message.Text(text):
                log.info("Received: %s", text)
                ws.send_text("Acknowledged")
            case Message.Close(_):
                break


def process_text_message(text: str) -> str:
    return text.upper()


def process_binary_data(data: bytes) -> bytes:
    return data[::-1]


def per_message(ws: WebSocketConnection, message: Message) -> None:
    match message:
        case Message.Text(text):
            ws.send_text(process_text_message(text))
        case Message.Binary(data):
            ws.send_bytes(process_binary_data(data))


def process_message_batch(messages: list[Message]) -> list[Message]:
    replies: list[Message] = [Message.text(f"batch of {len(messages)}")]
    for message in messages:
        if isinstance(message, Message.Text):
            replies.append(Message.text(message.data.upper()))
        elif isinstance(message, Message.Binary):
            replies.append(Message.binary(message.data))
    return replies


def batch(ws: WebSocketConnection, messages: list[Message]) -> None:
    ws.send_batch(process_message_batch(messages))


app = (
    Router()
    .websocket("/simple", websocket_handler(simple))
    .websocket("/messages", websocket_message_handler(per_message))
    .websocket("/batch", websocket_batch_handler(batch, 50, 100))
)

if __name__ == "__main__":
    run(app)
