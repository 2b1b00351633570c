"""A Flask app whose WebSocket route is behind Flask-Login (docs/testing.md)."""

from flask import Flask, request
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user

from ignitia_sync.flask import Sock

app = Flask(__name__)
app.secret_key = "tests only"
login_manager = LoginManager(app)
sock = Sock(app)


class User(UserMixin):
    def __init__(self, name):
        self.id = name


@login_manager.user_loader
def load_user(user_id):
    return User(user_id)


@app.post("/login")
def login():
    login_user(User(request.form["name"]))
    return "signed in"


@sock.route("/ws/hello", decorators=[login_required])  # anonymous: 401 before the 101
def hello(ws):
    ws.send(f"hello {current_user.id}")
