// The chat page: the library's IgnitiaRooms client (ignitia-rooms.js) does the connecting,
// reconnecting with backoff, resuming and ordering; this file only shows what it hands over.
// Everything received is shown with textContent, never innerHTML: a message is text.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  var log = document.getElementById("log");
  var members = document.getElementById("members");
  var status = document.getElementById("status");
  var notice = document.getElementById("notice");
  var input = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var present = new Set();  // who is in the room: one entry per user, however many tabs it has
  var loaded = false;  // the room's recent history is on the page
  var reloads = 0;  // the latest reload wins
  var everJoined = false;
  var attemptOpened = false;
  var listed = false;  // this connection's first presence list came: later frames are news
  var noticeTimer = null;

  function setStatus(state) {
    status.textContent = state;
    status.dataset.state = state;
  }

  // One line under the log for what the user should know; errors fade after 8 s.
  function say(text, kind) {
    clearTimeout(noticeTimer);
    notice.textContent = text;
    notice.className = "notice-bar" + (kind ? " " + kind : "");
    if (kind === "error") {
      noticeTimer = setTimeout(function () { say(""); }, 8000);
    }
  }

  function stamp(ts) {
    var time = document.createElement("time");
    var date = new Date(ts);
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return time;
  }

  function scrolled(change) {
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    change();
    if (atBottom) { log.scrollTop = log.scrollHeight; }
  }

  // A room message: {user, text, ts} at its position in the room (epoch, offset).
  function messageItem(data, position) {
    var item = document.createElement("li");
    item.className = "msg";
    item.dataset.user = data.user;
    item.dataset.epoch = position.epoch;
    item.dataset.offset = String(position.offset);
    var user = document.createElement("b");
    user.className = "user";
    user.textContent = data.user;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = data.text;
    item.append(stamp(data.ts), " ", user, " ", text);
    return item;
  }

  function addLine(className, text) {
    var item = document.createElement("li");
    item.className = className;
    item.append(stamp(Date.now()), " ", text);
    scrolled(function () { log.append(item); });
  }

  // The room's recent messages up to `base` (the position live messages follow), from the
  // history endpoint: on the first join, and when the server could not replay what was missed
  // (the log was trimmed, its epoch changed) or lost some (a gap). Each goes in its place by
  // position, unless the page shows it already; live messages that came meanwhile stay after.
  function reload(base, explain) {
    loaded = true;
    var token = ++reloads;
    fetch(root.dataset.historyUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("history: " + response.status); }
        return response.json();
      })
      .then(function (answer) {
        if (token !== reloads || base === null) { return; }
        var shown = Array.prototype.slice.call(log.querySelectorAll(".msg")).filter(function (item) {
          return item.dataset.epoch === base.epoch;  // this epoch's, in offset order
        });
        var offsets = new Set(shown.map(function (item) { return Number(item.dataset.offset); }));
        var first = null;
        scrolled(function () {
          answer.messages.forEach(function (message) {
            var at = message.position;
            if (at.epoch !== base.epoch || at.offset > base.offset || offsets.has(at.offset)) { return; }
            var next = shown.find(function (item) { return Number(item.dataset.offset) > at.offset; }) || null;
            var item = messageItem(message, at);
            log.insertBefore(item, next);
            first = first || item;
          });
          if (explain) {
            var line = document.createElement("li");
            line.className = "event reloaded";
            line.append(stamp(Date.now()), " reloaded the room's last messages (some may have been missed)");
            log.insertBefore(line, first);
          }
        });
      })
      .catch(function (error) { say("Could not load the room's messages (" + error.message + ").", "error"); });
  }

  function explain(detail) {
    var reason = detail.reason ? ": " + detail.reason : "";
    if (detail.code === 1009) {
      say("That message was too big for the server (" + root.dataset.maxBytes + " bytes at most); " +
          "it closed the connection.", "error");
    } else if (detail.code === 1008) {
      say("The server closed the connection" + reason + ".", "error");
    } else if (detail.code === 1001) {
      say("The server is restarting" + reason + "; reconnecting.");
    } else if (detail.code !== 1000 && notice.className.indexOf("error") < 0) {
      say("Connection lost (" + detail.code + "); reconnecting.");
    }
  }

  // A refused upgrade (401: the session expired, or the server's key changed) is invisible
  // here: the WebSocket just closes with 1006. So after an attempt that never opened, ask
  // the server who we are; signed out, go to the sign-in page instead of retrying forever.
  function checkSignedIn() {
    fetch(root.dataset.sessionUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state && !state.name) {
          rooms.close();
          setStatus("signed out");
          location.assign(root.dataset.signInUrl);
        }
      })
      .catch(function () {});  // the server is down: the retries go on
  }

  function showMembers() {
    var items = Array.from(present).sort().map(function (name) {
      var item = document.createElement("li");
      item.textContent = name;
      return item;
    });
    members.replaceChildren.apply(members, items);
  }

  // What the handler sends to this page alone (not part of the room's history).
  function direct(data) {
    switch (data.type) {
      case "hello":  // the handler started: which worker serves this page
        status.dataset.worker = String(data.worker);
        if (notice.className.indexOf("error") < 0) { say(""); }
        break;
      case "present":  // who is here as this connection joined; presence frames follow
        listed = true;
        present = new Set(data.users);
        showMembers();
        break;
      case "error":
        say(data.text, "error");
        break;
    }
  }

  var rooms = new IgnitiaRooms(root.dataset.wsPath, {
    backoff: {  // shorter waits than the library's default (0-5 s first): a chat is interactive
      first: Number(root.dataset.backoffFirst), factor: Number(root.dataset.backoffFactor),
      cap: Number(root.dataset.backoffCap), resetAfter: 5
    },
    // A 1009 was our own oversized message (not sent again): come back. Otherwise the default rule.
    shouldReconnect: function (code, reason) { return code === 1009 || IgnitiaRooms.shouldReconnect(code, reason); },
    onStatus: function (state, detail) {
      if (state === "connecting") {
        attemptOpened = false;
        listed = false;
      } else if (state === "open") {
        attemptOpened = true;
      } else if (state === "reconnecting") {
        sendButton.disabled = true;
        setStatus(everJoined ? "reconnecting" : "connecting");
        explain(detail);
        if (!attemptOpened) { checkSignedIn(); }
      } else if (state === "closed") {
        sendButton.disabled = true;
        setStatus("closed");
        explain(detail);
      }
    },
    onJoined: function (room, recovery) {
      if (!recovery.complete) {
        reload(recovery.position, true);
      } else if (!loaded) {
        reload(recovery.position, false);  // a first join: show what was said before
      }
      everJoined = true;
      status.dataset.joins = String(Number(status.dataset.joins || 0) + 1);  // connections that joined so far
      status.dataset.replayed = String(recovery.replayed);  // missed messages the server sent again
      setStatus("connected");
      sendButton.disabled = false;
    },
    onGap: function (room, recovery) { reload(recovery.position, true); },
    onMessage: function (room, data, position) {
      var item = messageItem(JSON.parse(data), position);
      scrolled(function () { log.append(item); });
    },
    onDirect: function (data) { direct(JSON.parse(data)); },
    onPresence: function (room, user, joined) {
      if (joined === present.has(user)) { return; }  // known already (the first list had it)
      if (joined) { present.add(user); } else { present.delete(user); }
      showMembers();
      if (listed && user !== root.dataset.user) {  // not our own arrival, nor what the list will say
        addLine("event", user + (joined ? " joined" : " left"));
      }
    }
  });

  document.getElementById("compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    // What IgnitiaRooms sends: the server closes a bigger frame with 1009.
    if (new Blob([JSON.stringify({ type: "message", text: text })]).size > Number(root.dataset.maxBytes)) {
      say("That message is too long to send.", "error");
      return;
    }
    if (!rooms.send(text)) {
      say("Not connected: your message is kept, send it again once connected.", "error");
      return;
    }
    input.value = "";
  });

  sendButton.disabled = true;
})();
