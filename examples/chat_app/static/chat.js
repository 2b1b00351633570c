// The chat page's client: one WebSocket, reconnected with backoff and jitter; no framework.
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
  // Full jitter: the n-th retry waits a random time in [0, min(max, initial * factor^n)] ms,
  // so a restarted server is not hit by every page at the same instant.
  var backoff = {
    initial: Number(root.dataset.backoffInitial),
    factor: Number(root.dataset.backoffFactor),
    max: Number(root.dataset.backoffMax)
  };
  var socket = null;
  var attempt = 0;
  var STABLE_MS = 5000;  // a connection open this long resets the backoff
  var retryTimer = null;
  var presenceVersion = -1;
  var seen = new Set();

  function setStatus(state) {
    status.textContent = state;
    status.dataset.state = state;
  }

  var noticeTimer = null;

  // One line under the log for what the user should know; errors fade after 8 s.
  function say(text, kind) {
    clearTimeout(noticeTimer);
    notice.textContent = text;
    notice.className = "notice-bar" + (kind ? " " + kind : "");
    if (kind === "error") {
      noticeTimer = setTimeout(function () { say(""); }, 8000);
    }
  }

  function url() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + root.dataset.wsPath;
  }

  function connect() {
    retryTimer = null;
    var ws = new WebSocket(url());
    socket = ws;
    var opened = 0;
    ws.onopen = function () {
      opened = Date.now();
      setStatus("connected");
      sendButton.disabled = false;
    };
    ws.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      handle(data);
    };
    ws.onclose = function (event) {
      if (socket !== ws) { return; }
      socket = null;
      // The waits start again from the shortest only after a connection that lasted: a server
      // that accepts and closes at once (its backend is down) is not hammered every second.
      if (opened && Date.now() - opened >= STABLE_MS) { attempt = 0; }
      sendButton.disabled = true;
      explain(event);
      scheduleReconnect();
      if (!opened) { checkSignedIn(); }
    };
  }

  // A refused upgrade (401: the session expired, or the server's key changed) is invisible
  // here: the WebSocket just closes with 1006. So after an attempt that never opened, ask
  // the server who we are; signed out, go to the sign-in page instead of retrying forever.
  function checkSignedIn() {
    fetch(root.dataset.sessionUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (state && !state.name) {
          clearTimeout(retryTimer);
          retryTimer = null;
          setStatus("signed out");
          location.assign(root.dataset.signInUrl);
        }
      })
      .catch(function () {});  // the server is down: the retries go on
  }

  function scheduleReconnect() {
    setStatus("reconnecting");
    var ceiling = Math.min(backoff.max, backoff.initial * Math.pow(backoff.factor, attempt));
    attempt += 1;
    retryTimer = setTimeout(connect, Math.random() * ceiling);
  }

  function explain(event) {
    var reason = event.reason ? ": " + event.reason : "";
    if (event.code === 1009) {
      say("That message was too big for the server (" + root.dataset.maxBytes + " bytes at most); " +
          "it closed the connection.", "error");
    } else if (event.code === 1008) {
      say("The server closed the connection" + reason + ".", "error");
    } else if (event.code === 1001) {
      say("The server is restarting" + reason + "; reconnecting.");
    } else if (event.code !== 1000) {
      say("Connection lost (" + event.code + "); reconnecting.");
    }
  }

  function handle(data) {
    switch (data.type) {
      case "hello":
        presenceVersion = -1;  // a new connection: versions start afresh without Redis
        status.dataset.worker = String(data.worker);
        if (notice.className.indexOf("error") < 0) { say(""); }
        break;
      case "history":
        data.messages.forEach(addMessage);
        break;
      case "message":
        addMessage(data);
        break;
      case "join":
        addNotice(data, data.user + " joined");
        break;
      case "leave":
        addNotice(data, data.user + " left");
        break;
      case "presence":
        if (data.version > presenceVersion) {
          presenceVersion = data.version;
          showMembers(data.users);
        }
        break;
      case "error":
        say(data.text, "error");
        break;
    }
  }

  function stamp(ts) {
    var time = document.createElement("time");
    var date = new Date(ts);
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return time;
  }

  // Keep the log in time order: history and live messages may arrive interleaved.
  function insert(item, ts) {
    item.dataset.ts = String(ts);
    var next = null;
    for (var node = log.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.ts) <= ts) { break; }
      next = node;
    }
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.insertBefore(item, next);
    if (atBottom) { log.scrollTop = log.scrollHeight; }
  }

  function addMessage(data) {
    if (seen.has(data.id)) { return; }  // history after a reconnect repeats what we have
    seen.add(data.id);
    var item = document.createElement("li");
    item.className = "msg";
    item.dataset.user = data.user;
    item.dataset.id = data.id;
    var user = document.createElement("b");
    user.className = "user";
    user.textContent = data.user;
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = data.text;
    item.append(stamp(data.ts), " ", user, " ", text);
    insert(item, data.ts);
  }

  function addNotice(data, text) {
    if (seen.has(data.id)) { return; }
    seen.add(data.id);
    var item = document.createElement("li");
    item.className = "event";
    item.append(stamp(data.ts), " ", text);
    insert(item, data.ts);
  }

  function showMembers(users) {
    var items = users.map(function (name) {
      var item = document.createElement("li");
      item.textContent = name;
      return item;
    });
    members.replaceChildren.apply(members, items);
  }

  document.getElementById("compose").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) { return; }
    var payload = JSON.stringify({ type: "message", text: text });
    if (new Blob([payload]).size > Number(root.dataset.maxBytes)) {
      say("That message is too long to send.", "error");
      return;
    }
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      say("Not connected: your message is kept, send it again once connected.", "error");
      return;
    }
    socket.send(payload);
    input.value = "";
  });

  window.addEventListener("online", function () {  // the network is back: no need to wait
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      connect();
    }
  });

  sendButton.disabled = true;
  connect();
})();
