"""The guide's rate-limited handler, twice: the guide's own sliding window, and the route option.

* ``/limited``: the handler keeps the guide's RateLimiter (10 messages a minute) and answers
  "Rate limit exceeded. Please slow down." when it is passed.
* ``/strict``: the route's RateLimit (a token bucket per connection plus one per client IP)
  closes a flooding connection with 1008.

Run: python examples/rate_limited.py [--port N]   or   ignitia-sync examples.rate_limited:app
"""

from gevent import monkey

monkey.patch_all()

from ignitia_sync import (  # noqa: E402
    KeyedLimiter,
    Message,
    RateLimit,
    Router,
    SlidingWindow,
    TokenBucket,
    WebSocketConnection,
    run,
)


def rate_limited_websocket(ws: WebSocketConnection) -> None:
    rate_limiter = SlidingWindow(10, 60.0)  # 10 requests a minute
    for message in ws:
        if not isinstance(message, (Message.Text, Message.Binary)):
            continue
        if not rate_limiter.allow():
            ws.send_text("Rate limit exceeded. Please slow down.")
            continue
        if isinstance(message, Message.Text):
            ws.send_text(f"Processed: {message.data}")


def strict(ws: WebSocketConnection) -> None:
    for message in ws:
        if isinstance(message, Message.Text):
            ws.send_text(f"Processed: {message.data}")


STRICT = RateLimit(
    per_connection=lambda: TokenBucket(rate=5, burst=10),
    per_key=KeyedLimiter(lambda: TokenBucket(rate=20, burst=40)),
    key="ip",
    action="close",
)

app = Router().websocket("/limited", rate_limited_websocket).websocket("/strict", strict, rate_limit=STRICT)

if __name__ == "__main__":
    run(app)
