from gevent import monkey; monkey.patch_all()  # first: blocking calls now let other connections run
from ignitia_sync import Message, Router, run


def echo(ws):
    for message in ws:
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


app = Router().websocket("/echo", echo)
if __name__ == "__main__":
    # ws://127.0.0.1:3000/echo, and http://127.0.0.1:3000/metrics for this machine only (403 otherwise)
    run(app, metrics=True, metrics_allow=["127.0.0.0/8", "::1", "10.0.0.0/8"])
