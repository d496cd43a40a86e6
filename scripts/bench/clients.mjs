// Many official socket.io-client v4 connections in one Node process, for the latency, drain and burst benchmarks.
// Usage: node scripts/bench/clients.mjs CONFIG.json
//   CONFIG: {"url", "tokens": [{"user", "token"}], "concurrency": 50, "detail": false}
// Commands on stdin, one JSON line each; every answer is one JSON line on stdout:
//   {"cmd": "connect"}  -> {"event": "connected", "ok", "failed", "ms"}
//   {"cmd": "stats"}    -> {"event": "stats", "received", "latencies", "cpu_ms", "rss_mib"}
//   {"cmd": "collect"}  -> {"event": "result", latencies_ms, clients, ...}, then counts afresh (a new phase)
//   {"cmd": "stop"}     -> the same result, then exit
// A receipt's latency is receive wall time minus the `sentNs` the producer stamped into the notification's data
// (same machine, same clock). One notification version twice on one connection is a duplicate. Each connection
// is its own Engine.IO connection (forceNew): the default would multiplex them all over one websocket.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

// The official client is installed once, for the end-to-end tests.
const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, "..", "..", "tests", "e2e", "js", "package.json"));
const { io } = require("socket.io-client");
const clientVersion = require("socket.io-client/package.json").version;

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const nowMs = () => performance.timeOrigin + performance.now();

const clients = []; // {user, socket, seen: Set, notifications: Map id -> [maxVersion, versions, recvMsOfMax, count]}
let latencies = []; // ms, first receipt of each (connection, id, version) that carries a sentNs
let received = 0;
let duplicates = 0;
let dropped = 0;
let otherEvents = 0;
let stopping = false;

function onNotification(client, body) {
  const recv = nowMs();
  received += 1;
  const key = `${body.id}:${body.version}`;
  if (client.seen.has(key)) {
    duplicates += 1;
    return;
  }
  client.seen.add(key);
  const sent = body.data && body.data.sentNs;
  if (typeof sent === "number") latencies.push(recv - sent / 1e6);
  const entry = client.notifications.get(body.id) || [0, 0, 0, 0];
  entry[1] += 1;
  if (body.version >= entry[0]) {
    entry[0] = body.version;
    entry[2] = recv;
    entry[3] = body.count ?? 1;
  }
  client.notifications.set(body.id, entry);
}

function connectOne(entry) {
  return new Promise((resolve) => {
    const socket = io(config.url, {
      auth: { token: entry.token },
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: 30000,
    });
    const client = { user: entry.user, socket, seen: new Set(), notifications: new Map() };
    socket.on("notification", (body) => onNotification(client, body));
    socket.onAny((event) => {
      if (event !== "notification") otherEvents += 1;
    });
    socket.once("connect", () => {
      clients.push(client);
      socket.on("disconnect", () => {
        if (!stopping) dropped += 1;
      });
      resolve(true);
    });
    socket.once("connect_error", () => {
      socket.close();
      resolve(false);
    });
  });
}

async function connectAll() {
  const started = nowMs();
  const queue = [...config.tokens];
  let ok = 0;
  let failed = 0;
  const worker = async () => {
    while (queue.length) {
      if (await connectOne(queue.shift())) ok += 1;
      else failed += 1;
    }
  };
  await Promise.all(Array.from({ length: config.concurrency || 50 }, worker));
  out({ event: "connected", ok, failed, ms: nowMs() - started });
}

function cpuMs() {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1000;
}

function stats() {
  return {
    received,
    duplicates,
    dropped,
    other_events: otherEvents,
    latencies: latencies.length,
    connected: clients.filter((c) => c.socket.connected).length,
    cpu_ms: cpuMs(),
    rss_mib: process.memoryUsage().rss / 1048576,
  };
}

function result() {
  const perClient = clients.map((c) => {
    const notes = {};
    for (const [id, entry] of c.notifications) notes[id] = entry;
    return { user: c.user, distinct: c.seen.size, ...(config.detail ? { notifications: notes } : {}) };
  });
  return { event: "result", ...stats(), client_version: clientVersion, latencies_ms: latencies, clients: perClient };
}

function reset() {
  latencies = [];
  received = 0;
  duplicates = 0;
  otherEvents = 0;
  for (const c of clients) {
    c.seen = new Set();
    c.notifications = new Map();
  }
}

const input = createInterface({ input: process.stdin });
input.on("line", async (line) => {
  const { cmd } = JSON.parse(line);
  if (cmd === "connect") await connectAll();
  else if (cmd === "stats") out({ event: "stats", ...stats() });
  else if (cmd === "collect") {
    out(result());
    reset();
  }
  else if (cmd === "stop") {
    stopping = true;
    const final = result();
    for (const c of clients) c.socket.disconnect();
    process.stdout.write(JSON.stringify(final) + "\n", () => process.exit(0));
  }
});
input.on("close", () => process.exit(0));
// Never outlive the harness by long.
setTimeout(() => process.exit(3), (config.max_seconds || 3600) * 1000).unref();
