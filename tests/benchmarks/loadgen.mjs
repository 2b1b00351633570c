// Load generator for the benchmark suite (Node + the `ws` package), so that the client is
// not the bottleneck. It prints one JSON object per line; "mark" lines tell the runner
// when the measured window starts and ends, so that it can sample the server's CPU time.
//
// node loadgen.mjs echo  URL CONNS INFLIGHT SIZE BINARY WARMUP_S WINDOW_S
// node loadgen.mjs bcast URL[,URL...] RECEIVERS MESSAGES SIZE PACE_MS [WAIT]
// node loadgen.mjs idle  URL CONNS CONCURRENCY
//
// Echo clients use `ws`. Broadcast receivers and idle connections use RawClient below: a
// precomputed handshake and a minimal frame parser, several times cheaper than `ws` per
// handshake and per message, so that 100,000 deliveries/s or 2,000 handshakes/s measure
// the server rather than this process.
//
// bcast with several URLs (several server processes sharing a backplane) spreads the
// receivers over them round-robin and puts the sender on the first; the result then also
// has, per URL, the p50 time from a send to the first receiver and p50/p99 to the last
// receiver on that URL, and per message the time from the last receiver on the first URL
// to the first receiver on any other (hop_p50_us, hop_p99_us). WAIT=1: once
// every connection is open, print {"mark": "ready"} and send only after a line on stdin
// (the runner checks that every process is subscribed first).
import net from "node:net";
import WebSocket from "ws";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const now = () => Number(process.hrtime.bigint()) / 1e9;
const open = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 15000 });
  ws.once("open", () => resolve(ws));
  ws.once("error", reject);
});
// RFC 6455's example key, and the Sec-WebSocket-Accept it requires.
const KEY = "dGhlIHNhbXBsZSBub25jZQ==", ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

// A WebSocket client on a bare TCP socket. onMessage(opcode) runs once per complete frame.
class RawClient {
  static open(url, onMessage = () => {}) {
    const { hostname, port, pathname } = new URL(url);
    return new Promise((resolve, reject) => {
      const client = new RawClient(net.connect({ host: hostname, port: Number(port), noDelay: true }), onMessage);
      client.sock.once("error", reject);
      client.sock.once("connect", () => client.sock.write(
        `GET ${pathname} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
      client.opened = (error) => (error ? reject(error) : resolve(client));
    });
  }

  constructor(sock, onMessage) {
    this.sock = sock;
    this.onMessage = onMessage;
    this.buffer = Buffer.alloc(0);
    this.open = false;
    this.ended = false;
    sock.on("data", (chunk) => this.received(chunk));
    sock.on("close", () => { this.ended = true; });
  }

  received(chunk) {
    let data = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    if (!this.open) {
      const end = data.indexOf("\r\n\r\n");
      if (end < 0) { this.buffer = data; return; }
      const head = data.toString("latin1", 0, end);
      this.open = head.startsWith("HTTP/1.1 101") && head.includes(ACCEPT);
      this.opened(this.open ? null : new Error(head.split("\r\n")[0]));
      data = data.subarray(end + 4);
    }
    let at = 0;
    while (data.length - at >= 2) {
      let length = data[at + 1] & 0x7f, header = 2;
      if (length === 126) { header = 4; if (data.length - at < 4) break; length = data.readUInt16BE(at + 2); }
      else if (length === 127) { header = 10; if (data.length - at < 10) break; length = Number(data.readBigUInt64BE(at + 2)); }
      if (data.length - at < header + length) break;
      this.onMessage(data[at] & 0x0f);
      at += header + length;
    }
    this.buffer = at === data.length ? Buffer.alloc(0) : data.subarray(at);
  }

  sendText(text) {  // one masked text frame (payloads under 126 bytes), mask 0 for speed
    const payload = Buffer.from(text);
    this.sock.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length, 0, 0, 0, 0]), payload]));
  }

  terminate() { this.sock.destroy(); }
}

const percentile = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : null;

async function echo([url, conns, inflight, size, binary, warmup, window]) {
  [conns, inflight, size, warmup, window] = [conns, inflight, size, warmup, window].map(Number);
  const payload = binary === "1" ? Buffer.alloc(size, 7) : "x".repeat(size);
  const sockets = [];
  for (let i = 0; i < conns; i++) sockets.push(await open(url));
  let measuring = false, stopped = false;
  const counts = new Array(conns).fill(0);
  const latencies = [];
  sockets.forEach((ws, i) => {
    const sent = [];
    const send = () => { sent.push(now()); ws.send(payload); };
    ws.on("message", () => {
      const t0 = sent.shift();
      if (measuring) { counts[i]++; if (latencies.length < 2e6) latencies.push(now() - t0); }
      if (!stopped) send();
    });
    for (let k = 0; k < inflight; k++) send();
  });
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const c0 = cpu(), t0 = now();
  measuring = true;
  out({ mark: "start" });
  await new Promise((r) => setTimeout(r, window * 1000));
  measuring = false;
  out({ mark: "end" });
  const elapsed = now() - t0, clientCpu = cpu() - c0;
  stopped = true;
  latencies.sort((a, b) => a - b);
  const total = counts.reduce((a, b) => a + b, 0);
  const mean = total / conns;
  out({
    result: "echo", messages: total, elapsed, client_cpu: clientCpu,
    p50_us: percentile(latencies, 0.5) * 1e6, p99_us: percentile(latencies, 0.99) * 1e6,
    fairness: mean ? Math.min(...counts) / mean : 0,
  });
  for (const ws of sockets) ws.terminate();
}

async function bcast([urls, receivers, messages, size, pace, wait]) {
  [receivers, messages, size, pace] = [receivers, messages, size, pace].map(Number);
  urls = urls.split(",");
  const payload = "b".repeat(size);
  const sentAt = new Array(messages).fill(0);
  const lastAt = new Array(messages).fill(0);
  const groupFirstAt = urls.map(() => new Array(messages).fill(0));  // per URL
  const groupLastAt = urls.map(() => new Array(messages).fill(0));
  let delivered = 0, done;
  const finished = new Promise((r) => { done = r; });
  const receiver = (group) => {
    let n = 0;
    return (opcode) => {
      if (opcode !== 1) return;
      const t = now();
      if (!groupFirstAt[group][n]) groupFirstAt[group][n] = t;
      lastAt[n] = groupLastAt[group][n] = t; n++; delivered++;
      if (delivered === receivers * messages) done();
    };
  };
  const listeners = [];
  for (let i = 0; i < receivers; i++) {
    listeners.push(await RawClient.open(urls[i % urls.length], receiver(i % urls.length)));
  }
  const sender = await open(urls[0]);
  await new Promise((r) => setTimeout(r, 500));
  if (wait === "1") {
    out({ mark: "ready" });
    await new Promise((r) => process.stdin.once("data", r));
  }
  const c0 = cpu(), t0 = now();
  out({ mark: "start" });
  for (let k = 0; k < messages; k++) {
    sentAt[k] = now();
    sender.send(payload);
    if (pace > 0) await new Promise((r) => setTimeout(r, pace));
  }
  const timeout = setTimeout(done, 60000);
  await finished;
  clearTimeout(timeout);
  out({ mark: "end" });
  const elapsed = now() - t0, clientCpu = cpu() - c0;
  const spread = (last) => last.map((t, k) => t - sentAt[k]).filter((x) => x > 0).sort((a, b) => a - b);
  const fanout = spread(lastAt);
  const result = {
    result: "bcast", messages: delivered, expected: receivers * messages, elapsed, client_cpu: clientCpu,
    p50_us: percentile(fanout, 0.5) * 1e6, p99_us: percentile(fanout, 0.99) * 1e6,
  };
  if (urls.length > 1) {
    result.groups = urls.map((_, g) => {
      const first = spread(groupFirstAt[g]), last = spread(groupLastAt[g]);
      return { first_p50_us: percentile(first, 0.5) * 1e6, p50_us: percentile(last, 0.5) * 1e6,
               p99_us: percentile(last, 0.99) * 1e6 };
    });
    // Per message: the first receiver on another URL after the last one on the sender's.
    const hops = sentAt.map((_, k) => Math.min(...groupFirstAt.slice(1).map((first) => first[k]))
      - groupLastAt[0][k]).sort((a, b) => a - b);
    result.hop_p50_us = percentile(hops, 0.5) * 1e6;
    result.hop_p99_us = percentile(hops, 0.99) * 1e6;
  }
  out(result);
  for (const ws of [...listeners, sender]) ws.terminate();
}

async function idle([url, conns, concurrency]) {
  [conns, concurrency] = [conns, concurrency].map(Number);
  const sockets = [];
  const c0 = cpu(), t0 = now();
  out({ mark: "start" });
  // Open CONNS connections, CONCURRENCY at a time, for at most 60 s (a server that cannot
  // keep up is reported with what it managed, not waited for).
  let next = 0, failed = 0;
  const deadline = now() + 60;
  const answered = new Map();
  const worker = async () => {
    while (next < conns && now() < deadline) {
      next++;
      try {
        const client = await RawClient.open(url, (opcode) => { if (opcode === 1) answered.get(client)?.(); });
        sockets.push(client);
      } catch { failed++; }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  out({ mark: "end" });
  const elapsed = now() - t0, clientCpu = cpu() - c0;
  out({ mark: "opened" });
  // Wait for the runner to read memory, then prove every connection is still alive.
  await new Promise((r) => process.stdin.once("data", r));
  let alive = 0;
  await Promise.all(sockets.map((client) => new Promise((resolve) => {
    if (client.ended) return resolve();
    const t = setTimeout(resolve, 20000);
    answered.set(client, () => { answered.delete(client); alive++; clearTimeout(t); resolve(); });
    client.sendText("alive?");
  })));
  out({ result: "idle", messages: sockets.length, requested: conns, failed, elapsed, client_cpu: clientCpu, alive });
  for (const ws of sockets) ws.terminate();
}

const [mode, ...args] = process.argv.slice(2);
await ({ echo, bcast, idle })[mode](args);
process.exit(0);
