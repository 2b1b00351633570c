"""flask-sock (simple-websocket) in the same Flask app, under gunicorn -k gevent -w 1 (its gevent deployment)."""

from _gunicorn_host import flask_echo_app, serve


def load():
    from flask_sock import Sock

    return flask_echo_app(Sock)


if __name__ == "__main__":
    serve(load, "gevent")
