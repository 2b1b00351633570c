// Node's ws with bufferutil (C masking), an anchor for run.py. /echo (and any path but
// /broadcast) answers each message in kind: a text, which ws has checked as UTF-8, as a
// text; a binary as a binary. /broadcast sends a text to every other /broadcast connection,
// as ws's README does. No compression. Prints "listening on ws://127.0.0.1:PORT" once it
// listens; without bufferutil's native module it prints why and exits (npm ci in
// tests/benchmarks installs it).
//
// node servers/node_ws.mjs --port PORT
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import WebSocket, { WebSocketServer } from "ws";

const require = createRequire(new URL("../", import.meta.url));  // tests/benchmarks/node_modules
let native = false;
try {  // bufferutil falls back to JavaScript, silently, when its prebuilt binary does not load
  native = require("bufferutil") !== require("bufferutil/fallback");
} catch {
  // not installed
}
if (!native) {
  process.stdout.write("node-ws: bufferutil's native module is missing: run npm ci in tests/benchmarks\n");
  process.exit(1);
}

const { values } = parseArgs({ options: { port: { type: "string" } } });
const receivers = new Set();

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(values.port), perMessageDeflate: false });
wss.on("connection", (ws, request) => {
  ws.on("error", () => {});
  if (request.url === "/broadcast") {
    receivers.add(ws);
    ws.on("close", () => receivers.delete(ws));
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      for (const receiver of receivers) {
        if (receiver !== ws && receiver.readyState === WebSocket.OPEN) receiver.send(data, { binary: false });
      }
    });
  } else {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  }
});
wss.on("listening", () => {
  process.stdout.write(`listening on ws://127.0.0.1:${wss.address().port}\n`);
});
