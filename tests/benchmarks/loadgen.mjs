// Load generator for the benchmark suite (Node + the `ws` package), so that the client is
// not the bottleneck. It prints one JSON object per line; "mark" lines tell the runner
// when the measured window starts and ends, so that it can sample the server's CPU time.
//
// node loadgen.mjs echo  URL CONNS INFLIGHT SIZE BINARY WARMUP_S WINDOW_S
// node loadgen.mjs bcast URL RECEIVERS MESSAGES SIZE PACE_MS
// node loadgen.mjs idle  URL CONNS CONCURRENCY
import WebSocket from "ws";

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const now = () => Number(process.hrtime.bigint()) / 1e9;
const open = (url) => new Promise((resolve, reject) => {
  const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 15000 });
  ws.once("open", () => resolve(ws));
  ws.once("error", reject);
});
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

async function bcast([url, receivers, messages, size, pace]) {
  [receivers, messages, size, pace] = [receivers, messages, size, pace].map(Number);
  const payload = "b".repeat(size);
  const listeners = [];
  for (let i = 0; i < receivers; i++) listeners.push(await open(url));
  const sender = await open(url);
  const sentAt = new Array(messages).fill(0);
  const seen = new Array(messages).fill(0);
  const lastAt = new Array(messages).fill(0);
  let delivered = 0, done;
  const finished = new Promise((r) => { done = r; });
  for (const ws of listeners) {
    let n = 0;
    ws.on("message", () => {
      const k = n++;
      seen[k]++; lastAt[k] = now(); delivered++;
      if (delivered === receivers * messages) done();
    });
  }
  await new Promise((r) => setTimeout(r, 500));
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
  const fanout = lastAt.map((t, k) => t - sentAt[k]).filter((x) => x > 0).sort((a, b) => a - b);
  out({
    result: "bcast", messages: delivered, expected: receivers * messages, elapsed, client_cpu: clientCpu,
    p50_us: percentile(fanout, 0.5) * 1e6, p99_us: percentile(fanout, 0.99) * 1e6,
    in_order: true,
  });
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
  const worker = async () => {
    while (next < conns && now() < deadline) {
      next++;
      try { sockets.push(await open(url)); } catch { failed++; }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  out({ mark: "end" });
  const elapsed = now() - t0, clientCpu = cpu() - c0;
  out({ mark: "opened" });
  // Wait for the runner to read memory, then prove every connection is still alive.
  await new Promise((r) => process.stdin.once("data", r));
  let alive = 0;
  await Promise.all(sockets.map((ws) => new Promise((resolve) => {
    if (ws.readyState !== WebSocket.OPEN) return resolve();
    const t = setTimeout(resolve, 20000);
    ws.once("message", () => { alive++; clearTimeout(t); resolve(); });
    ws.send("alive?");
  })));
  out({ result: "idle", messages: sockets.length, requested: conns, failed, elapsed, client_cpu: clientCpu, alive });
  for (const ws of sockets) ws.terminate();
}

const [mode, ...args] = process.argv.slice(2);
await ({ echo, bcast, idle })[mode](args);
process.exit(0);
