from flask import Flask, request

from ignitia_sync.flask import Sock

app = Flask(__name__)
sock = Sock(app)


@sock.route("/echo")
def echo(ws):                       # inside the upgrade request's context: request, session, g
    ws.send(f"hello {request.remote_addr}")
    while True:
        ws.send(ws.receive())       # receive() raises ConnectionClosed when the client leaves
