from flask import Flask

from ignitia_sync.flask import Sock
from ignitia_sync.metrics import mount, wsgi_app

app = Flask(__name__)
sock = Sock(app)


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())


# /metrics in front of Flask: loopback only by default (wsgi_app(allow=[...]) for your scraper)
app.wsgi_app = mount("/metrics", wsgi_app(), app.wsgi_app)
