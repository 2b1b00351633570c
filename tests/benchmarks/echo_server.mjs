// The echo server of the client scenario C1 (Node + the `ws` package, no compression): not
// one of the contestants, and cheap per message, so that the Python clients set the pace.
// It prints "listening on ws://127.0.0.1:PORT" once it listens (PORT 0 or none: any free port).
//
// node echo_server.mjs [PORT]
import { WebSocketServer } from "ws";

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2] || 0), perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {});
});
wss.on("listening", () => {
  process.stdout.write(`listening on ws://127.0.0.1:${wss.address().port}\n`);
});
