/*
 * ignitia-rooms.js: the browser side of ignitia_sync's rooms wire format (subprotocol
 * "ignitia.rooms.v1"; the spec is docs/rooms-protocol.md). One file, no dependency, no build:
 *
 *   <script src="/ignitia-rooms.js"></script>
 *   const rooms = new IgnitiaRooms("/chat", {
 *     onMessage(room, data, position) { ... },   // data: a string, or a Uint8Array
 *     onJoined(room, recovery) { if (!recovery.complete) reloadRoom(room); },
 *     onGap(room, recovery) { reloadRoom(room); },
 *   });
 *   rooms.send("hi");
 *
 * It sends the hello with the last position it saw in each room, keeps those positions
 * (in memory, and in `storage` when given: sessionStorage makes a reload resume), and
 * reconnects after a drop with the Python client's backoff (full jitter; first wait 0-5 s,
 * x1.618, at most 60 s; back to the first after a connection that lasted 30 s). It stops
 * after close(), and after a close code that another attempt would get again (1002, 1003,
 * 1007, 1008 but for "slow consumer" and "rate limit exceeded", 1009, 1010, 3000-4999: a
 * policy, a revoked session, a broken frame).
 *
 * MIT licence, part of ignitia_sync.
 */
(function (root, factory) {
  "use strict";
  const IgnitiaRooms = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = IgnitiaRooms;
  } else {
    root.IgnitiaRooms = IgnitiaRooms;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const SUBPROTOCOL = "ignitia.rooms.v1";
  const MAX_RESUMED_ROOMS = 1000;
  const MAX_EPOCH_LENGTH = 32;
  // The same waits as ignitia_sync._support.backoff.Backoff() (seconds).
  const DEFAULT_BACKOFF = Object.freeze({ first: 5, factor: 1.618, cap: 60, resetAfter: 30 });
  // Closes that another attempt would get again: stop instead of hammering the server.
  const FINAL_CODES = Object.freeze([1002, 1003, 1007, 1008, 1009, 1010]);
  // ... except the server's own 1008s for a moment of trouble: worth another attempt.
  const PASSING_1008 = Object.freeze(["slow consumer", "rate limit exceeded"]);

  function checkBackoff(options) {
    const backoff = Object.assign({}, DEFAULT_BACKOFF, options || {});
    const { first, factor, cap, resetAfter } = backoff;
    if (!(first > 0 && factor >= 1 && cap >= first && resetAfter >= 0)) {
      throw new RangeError("backoff needs first > 0, factor >= 1, cap >= first, resetAfter >= 0");
    }
    return Object.freeze(backoff);
  }

  /** The longest wait (seconds) before the attempt-th retry in a row (from 0). */
  function backoffCeiling(attempt, backoff) {
    const b = checkBackoff(backoff);
    return Math.min(b.cap, b.first * Math.pow(b.factor, Math.min(attempt, 64)));
  }

  /** A random wait (seconds) in 0 .. backoffCeiling(attempt): full jitter. */
  function backoffDelay(attempt, backoff, random) {
    return (random || Math.random)() * backoffCeiling(attempt, backoff);
  }

  /**
   * When to try again, counted as the Python client's reconnecting() counts: each failed
   * attempt, and each connection that did not last resetAfter seconds, makes the next
   * wait longer; a connection that lasted starts from the first wait again.
   */
  class Retries {
    constructor(backoff, random) {
      this.backoff = checkBackoff(backoff);
      this.random = random || Math.random;
      this.failures = 0; // attempts in a row that failed, or connections that did not last
    }
    /** The wait (seconds) after an attempt that never opened. */
    failed() {
      this.failures += 1;
      return this.delay();
    }
    /** The wait (seconds) after a connection that was open for `openSeconds`. */
    dropped(openSeconds) {
      this.failures = openSeconds >= this.backoff.resetAfter ? 1 : this.failures + 1;
      return this.delay();
    }
    delay() {
      return backoffDelay(this.failures - 1, this.backoff, this.random);
    }
  }

  function isPosition(value) {
    return value !== null && typeof value === "object" &&
      typeof value.epoch === "string" && value.epoch.length > 0 && value.epoch.length <= MAX_EPOCH_LENGTH &&
      Number.isSafeInteger(value.offset) && value.offset >= 0;
  }

  function position(value) {
    return Object.freeze({ epoch: value.epoch, offset: value.offset });
  }

  /** The last position seen in each room, most recently updated last; mirrored to `storage`. */
  class Positions {
    constructor(storage, key) {
      this.storage = storage || null;
      this.key = key;
      this.map = new Map();
      if (this.storage) {
        try {
          const saved = JSON.parse(this.storage.getItem(key) || "[]");
          if (Array.isArray(saved)) {
            for (const entry of saved) {
              if (Array.isArray(entry) && typeof entry[0] === "string" && isPosition(entry[1])) {
                this.map.set(entry[0], position(entry[1]));
              }
            }
          }
        } catch (error) {
          report(error); // unreadable: start without positions
        }
      }
    }
    get(room) {
      return this.map.get(room);
    }
    set(room, value) {
      this.map.delete(room); // to the end: the most recently updated
      this.map.set(room, position(value));
      this.save();
    }
    delete(room) {
      if (this.map.delete(room)) this.save();
    }
    /** The hello's resume object: the MAX_RESUMED_ROOMS most recently updated rooms. */
    resume() {
      const entries = Array.from(this.map.entries()).slice(-MAX_RESUMED_ROOMS);
      const resume = Object.create(null); // a room may be called "__proto__"
      for (const [room, value] of entries) resume[room] = { epoch: value.epoch, offset: value.offset };
      return resume;
    }
    save() {
      if (!this.storage) return;
      try {
        this.storage.setItem(this.key, JSON.stringify(Array.from(this.map.entries())));
      } catch (error) {
        report(error); // full or disabled: the positions still live in memory
      }
    }
  }

  function report(error) {
    if (typeof reportError === "function") {
      reportError(error);
    } else if (typeof console !== "undefined") {
      console.error(error);
    }
  }

  function fromBase64(text) {
    const chars = atob(text);
    const bytes = new Uint8Array(chars.length);
    for (let i = 0; i < chars.length; i += 1) bytes[i] = chars.charCodeAt(i);
    return bytes;
  }

  function toBase64(data) {
    let bytes;
    if (data instanceof ArrayBuffer) {
      bytes = new Uint8Array(data);
    } else if (ArrayBuffer.isView(data)) {
      bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      throw new TypeError("sendBinary() takes an ArrayBuffer or a typed array (a Uint8Array)");
    }
    let chars = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      chars += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return btoa(chars);
  }

  function defaultShouldReconnect(code, reason) {
    if (code === 1008 && PASSING_1008.includes(reason)) return true;
    return !(FINAL_CODES.includes(code) || (code >= 3000 && code <= 4999));
  }

  function socketUrl(url) {
    if (typeof location === "undefined") return String(url);
    const resolved = new URL(String(url), location.href);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved.href;
  }

  const NOOP = function () {};

  class IgnitiaRooms {
    /**
     * Connect to `url` (ws:, wss:, or a path of this page's origin) at once.
     *
     * options: onMessage(room, data, position), onDirect(data), onJoined(room, recovery),
     * onGap(room, recovery), onLeft(room), onPresence(room, user, joined), onStatus(status, detail); storage (e.g.
     * sessionStorage) and storageKey; backoff ({first, factor, cap, resetAfter}, seconds);
     * shouldReconnect(code, reason); random (for tests).
     */
    constructor(url, options) {
      const o = options || {};
      this.url = socketUrl(url);
      this.onMessage = o.onMessage || NOOP;
      this.onDirect = o.onDirect || NOOP;
      this.onJoined = o.onJoined || NOOP;
      this.onGap = o.onGap || NOOP;
      this.onLeft = o.onLeft || NOOP;
      this.onPresence = o.onPresence || NOOP;
      this.onStatus = o.onStatus || NOOP;
      this.shouldReconnect = o.shouldReconnect || defaultShouldReconnect;
      this.retries = new Retries(o.backoff, o.random);
      this.positions = new Positions(o.storage, o.storageKey || "ignitia-rooms " + this.url);
      this.status = "connecting";
      this.connections = 0; // connections opened so far
      this._ws = null;
      this._openedAt = null;
      this._timer = null;
      this._stopped = false;
      this._unsent = new Set(); // rooms with a position the last hello could not carry
      this._connect();
    }

    /** The last position seen in each room: {room: {epoch, offset}}. */
    lastPositions() {
      const copy = Object.create(null);
      for (const [room, value] of this.positions.map) copy[room] = value;
      return copy;
    }

    /** Send a text message (the handler's recv() gets a Text); false when not connected. */
    send(text) {
      if (typeof text !== "string") throw new TypeError("send() takes a string; sendBinary() takes bytes");
      return this._sendFrame({ type: "message", text: text });
    }

    /** Send bytes (an ArrayBuffer or a typed array) as a Binary; false when not connected. */
    sendBinary(data) {
      return this._sendFrame({ type: "message", binary: toBase64(data) });
    }

    /** Close for good (no reconnect): code 1000 or 3000-4999. */
    close(code, reason) {
      if (this._stopped && this._ws === null && this._timer === null) return; // closed already
      this._stopped = true;
      clearTimeout(this._timer);
      this._timer = null;
      const ws = this._ws;
      this._ws = null;
      if (ws !== null && ws.readyState < 2) ws.close(code || 1000, reason || "");
      this._setStatus("closed", { code: code || 1000, reason: reason || "", final: true });
    }

    _sendFrame(frame) {
      const ws = this._ws;
      if (ws === null || ws.readyState !== 1 || this.status !== "open") return false;
      ws.send(JSON.stringify(frame));
      return true;
    }

    _setStatus(status, detail) {
      this.status = status;
      this._call(this.onStatus, status, detail || {});
    }

    _call(callback, ...args) {
      try {
        callback.apply(this, args);
      } catch (error) {
        report(error); // a callback's error does not stop the client (the message counts as delivered)
      }
    }

    _connect() {
      this._timer = null;
      if (this._stopped) return;
      this._openedAt = null;
      this._setStatus("connecting", { retry: this.retries.failures });
      let ws;
      try {
        ws = new WebSocket(this.url, [SUBPROTOCOL]);
      } catch (error) {
        // A malformed URL, or a port the browser refuses: trying again would fail the same way.
        this._stopped = true;
        this._setStatus("closed", { code: null, reason: String(error && error.message), final: true });
        return;
      }
      this._ws = ws;
      ws.onopen = () => this._opened(ws);
      ws.onmessage = (event) => this._frame(ws, event);
      ws.onclose = (event) => this._closed(ws, event);
    }

    _opened(ws) {
      if (ws !== this._ws) return;
      // (A route without the subprotocol never gets here: the browser fails that handshake.)
      this._openedAt = Date.now();
      this.connections += 1;
      const resume = this.positions.resume();
      this._unsent = new Set(Array.from(this.positions.map.keys()).filter((room) => !(room in resume)));
      ws.send(JSON.stringify({ type: "hello", resume: resume }));
      this._setStatus("open", {});
    }

    _closed(ws, event) {
      if (ws !== this._ws) return;
      this._ws = null;
      const detail = { code: event.code, reason: event.reason, wasClean: event.wasClean };
      if (this._stopped) return;
      if (this._openedAt !== null && !this.shouldReconnect(event.code, event.reason)) {
        this._stopped = true;
        this._setStatus("closed", Object.assign(detail, { final: true }));
        return;
      }
      const delay = this._openedAt === null
        ? this.retries.failed() // never opened: refused, unreachable (a browser says 1006)
        : this.retries.dropped((Date.now() - this._openedAt) / 1000);
      this._setStatus("reconnecting", Object.assign(detail, { delay: delay, retry: this.retries.failures }));
      this._timer = setTimeout(() => this._connect(), delay * 1000);
    }

    _frame(ws, event) {
      if (ws !== this._ws) return;
      let frame;
      try {
        if (typeof event.data !== "string") throw new Error("a binary frame");
        frame = JSON.parse(event.data);
        if (frame === null || typeof frame !== "object") throw new Error("not a JSON object");
      } catch (error) {
        report(new Error("ignitia-rooms: a frame that is not the rooms format: " + error.message));
        return;
      }
      const room = frame.room;
      switch (frame.type) {
        case "message":
          this._message(frame, room);
          break;
        case "joined":
          this._joined(room, frame.recovery);
          break;
        case "gap":
          if (isPosition(frame.recovery && frame.recovery.position)) this.positions.set(room, frame.recovery.position);
          this._call(this.onGap, room, frame.recovery);
          break;
        case "left":
          this.positions.delete(room); // no longer followed: a later join starts afresh
          this._call(this.onLeft, room);
          break;
        case "presence": // a user arrived (its first connection in the room) or left (its last)
          if (typeof frame.user === "string" && typeof frame.joined === "boolean") {
            this._call(this.onPresence, room, frame.user, frame.joined);
          }
          break;
        default: // a frame of a newer server: ignored
      }
    }

    _message(frame, room) {
      let data;
      if (typeof frame.text === "string") {
        data = frame.text;
      } else if (typeof frame.binary === "string") {
        try {
          data = fromBase64(frame.binary);
        } catch (error) {
          report(new Error("ignitia-rooms: a binary message that is not base64"));
          return;
        }
      } else {
        return;
      }
      if (typeof room !== "string" || !isPosition(frame.position)) {
        this._call(this.onDirect, data);
        return;
      }
      const last = this.positions.get(room);
      if (last !== undefined && last.epoch === frame.position.epoch && frame.position.offset <= last.offset) {
        return; // seen already (the server sends none twice: a safety net)
      }
      this.positions.set(room, frame.position);
      this._call(this.onMessage, room, data, this.positions.get(room));
    }

    _joined(room, recovery) {
      if (typeof room !== "string" || recovery === null || typeof recovery !== "object") return;
      let reported = recovery;
      if (this._unsent.delete(room) && recovery.complete) {
        // Its position did not fit in the hello: the server could not replay what was missed.
        reported = Object.assign({}, recovery, { complete: false, reason: "not resumed", replayed: 0 });
      }
      if (!isPosition(recovery.position)) {
        this.positions.delete(room); // a room without positions: nothing to resume
      } else if (!reported.complete || !(reported.replayed > 0) || this.positions.get(room) === undefined) {
        // Nothing to replay (or a gap): live messages follow this position. Replayed ones
        // move the position themselves as they come.
        this.positions.set(room, recovery.position);
      }
      this._call(this.onJoined, room, reported);
    }
  }

  IgnitiaRooms.SUBPROTOCOL = SUBPROTOCOL;
  IgnitiaRooms.MAX_RESUMED_ROOMS = MAX_RESUMED_ROOMS;
  IgnitiaRooms.DEFAULT_BACKOFF = DEFAULT_BACKOFF;
  IgnitiaRooms.FINAL_CODES = FINAL_CODES;
  IgnitiaRooms.shouldReconnect = defaultShouldReconnect;
  IgnitiaRooms.Retries = Retries;
  IgnitiaRooms.backoffCeiling = backoffCeiling;
  IgnitiaRooms.backoffDelay = backoffDelay;
  return IgnitiaRooms;
});
