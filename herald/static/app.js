// Herald browser inbox: socket.io-client v4 (served from /static/vendor), no framework.
// Keeps the highest version of each notification by id, so a replay racing live events never shows a stale
// or duplicated item, and remembers the last cursor so a reconnect asks only for what it missed.
(function () {
  "use strict";

  const FETCH_LIMIT = 50;
  const $ = (id) => document.getElementById(id);
  const items = new Map(); // id -> notification body (newest version)
  let socket = null;
  let cursorKey = "herald.cursor";

  function userOf(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part)).sub || "";
    } catch (_err) {
      return "";
    }
  }

  function lastCursor() {
    const raw = localStorage.getItem(cursorKey);
    return raw === null ? null : Number(raw);
  }

  function remember(cursor) {
    const current = lastCursor();
    if (typeof cursor === "number" && (current === null || cursor > current)) {
      localStorage.setItem(cursorKey, String(cursor));
    }
  }

  function merge(body, live) {
    if (!body || typeof body.id !== "string" || typeof body.version !== "number") return false;
    const known = items.get(body.id);
    if (known && known.version >= body.version) return false;
    // The store marks every new version unread again; count it until the server's next unread_count.
    if (live && !body.read && (!known || known.read)) setBadge(badgeCount() + 1);
    items.set(body.id, body);
    remember(body.cursor);
    return true;
  }

  function setStatus(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }

  function badgeCount() {
    return Number($("badge").dataset.count) || 0;
  }

  function setBadge(count) {
    const badge = $("badge");
    badge.dataset.count = String(count);
    badge.textContent = String(count);
  }

  function when(iso) {
    const date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleString();
  }

  function render() {
    const list = $("list");
    const sorted = [...items.values()].sort((a, b) => (b.cursor || 0) - (a.cursor || 0));
    list.replaceChildren(...sorted.map((n) => {
      const li = document.createElement("li");
      li.dataset.id = n.id;
      li.dataset.version = String(n.version);
      li.className = n.read ? "read" : "unread";
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = n.text || n.type || n.id;
      const time = document.createElement("time");
      time.dateTime = n.updatedAt || "";
      time.textContent = when(n.updatedAt);
      li.append(text, time);
      li.addEventListener("click", () => markRead(n.id));
      return li;
    }));
    $("empty").hidden = items.size > 0;
  }

  function markRead(id) {
    const item = items.get(id);
    if (!socket || !item || item.read) return;
    socket.timeout(5000).emit("mark_read", { ids: [id] }, (err, ack) => {
      if (err || !ack || !ack.ok) return;
      items.set(id, { ...item, read: true });
      setBadge(ack.unread);
      render();
    });
  }

  function fetchNewest() {
    socket.timeout(5000).emit("fetch", { before: null, limit: FETCH_LIMIT }, (err, ack) => {
      if (err || !ack || !ack.ok) return;
      let changed = false;
      for (const body of ack.items) changed = merge(body, false) || changed;
      if (changed) render();
    });
  }

  function connect(token) {
    cursorKey = "herald.cursor." + userOf(token);
    $("who").textContent = userOf(token);
    setStatus("connecting", "connecting…");
    // auth as a function: every reconnect sends the cursor of the last notification seen so far.
    socket = io({ auth: (cb) => cb({ token, since: lastCursor() }) });
    socket.on("connect", () => {
      setStatus("connected", "live");
      $("mark-all").disabled = false;
      if (items.size === 0) fetchNewest();
    });
    socket.on("disconnect", () => setStatus("connecting", "reconnecting…"));
    socket.on("connect_error", (err) => {
      setStatus("error", "refused: " + err.message);
      $("login").hidden = false;
    });
    socket.on("notification", (body) => {
      if (merge(body, true)) render();
    });
    socket.on("unread_count", (data) => setBadge(data.unread));
  }

  $("mark-all").addEventListener("click", () => {
    socket.timeout(5000).emit("mark_all_read", {}, (err, ack) => {
      if (err || !ack || !ack.ok) return;
      for (const [id, item] of items) items.set(id, { ...item, read: true });
      setBadge(ack.unread);
      render();
    });
  });

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    if (socket) socket.disconnect();
    $("login").hidden = true;
    connect(token);
  });

  render();
  const token = new URLSearchParams(location.search).get("token");
  if (typeof io !== "function") {
    setStatus("error", "socket.io client missing: run scripts/build_static.sh");
  } else if (token) {
    connect(token);
  } else {
    $("login").hidden = false;
  }
})();
