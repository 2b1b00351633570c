"""ignitia_sync's ``Sock`` (flask-sock compatible) in a Flask app, under gunicorn -k ignitia_sync.gunicorn.Worker -w 1."""

from _gunicorn_host import flask_echo_app, serve


def load():
    from ignitia_sync.flask import Sock

    return flask_echo_app(Sock)


if __name__ == "__main__":
    serve(load, "ignitia_sync.gunicorn.Worker")
