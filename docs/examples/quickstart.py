from gevent import monkey; monkey.patch_all()  # first: blocking calls now let other connections run
from ignitia_sync import Message, Router, run


def echo(ws):                       # one greenlet per connection: plain blocking code
    for message in ws:              # ends when the client closes
        if isinstance(message, (Message.Text, Message.Binary)):
            ws.send(message)


app = Router().websocket("/echo", echo)
if __name__ == "__main__":          # or: ignitia-sync echo:app
    run(app)                        # ws://127.0.0.1:3000/echo (--port N); Ctrl-C stops it
