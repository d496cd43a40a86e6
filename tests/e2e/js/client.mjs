// A socket.io-client v4 client driven by a Python test: prints one JSON object per line for every event it
// receives, and runs the calls it reads from stdin (one JSON line each: {"id", "event", "data"}), printing acks.
// Usage: node client.mjs URL [TOKEN|-] [SINCE]   (TOKEN "-" connects without a token)
// HERALD_TRANSPORTS=polling (or polling,websocket) picks the transports; websocket only by default.
// HERALD_PROTOCOL=compat asks for the existing application's protocol (auth.protocol).
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const [url, token, since] = process.argv.slice(2);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const auth = token === "-" ? {} : { token };
if (since !== undefined) auth.since = Number(since);
if (process.env.HERALD_PROTOCOL) auth.protocol = process.env.HERALD_PROTOCOL;

const transports = (process.env.HERALD_TRANSPORTS || "websocket").split(",");

const socket = io(url, { auth, transports, reconnection: false, timeout: 10000 });
socket.on("connect", () => out({ event: "connect", id: socket.id, transport: socket.io.engine.transport.name }));
socket.on("connect_error", (err) => {
  out({ event: "connect_error", message: err.message });
  process.exit(0);
});
socket.on("disconnect", (reason) => out({ event: "disconnect", reason }));
// Every server event, of either protocol (`notification`, `unread_count`, `notification:new`, ...).
socket.onAny((event, data) => out({ event, data }));

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  const call = JSON.parse(line);
  socket.timeout(5000).emit(call.event, call.data, (err, ack) => {
    out({ event: "ack", id: call.id, ack: ack ?? null, error: err ? err.message : null });
  });
});
input.on("close", () => {
  socket.disconnect();
  process.exit(0);
});
// Never outlive a test that forgot to close stdin.
setTimeout(() => process.exit(3), 120000);
