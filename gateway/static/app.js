"use strict";
// All user-provided text goes through textContent, never innerHTML.
const $ = (id) => document.getElementById(id);
const state = {
  token: null, me: null, ws: null, backoff: 500,
  convs: new Map(),      // id -> {id, name, messages: Map(seq -> msg), lastSeq, unread}
  current: null,
  online: new Set(),
  pending: new Map(),    // client_msg_id -> {conversation, body}
  typing: new Map(),     // conversation -> Map(user -> timeout)
  lastTypingSent: 0,
};

function showError(text) { $("error").textContent = text || ""; }
function dmId(a, b) { return a <= b ? `dm:${a}:${b}` : `dm:${b}:${a}`; }
function newId() {
  return (crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(16).slice(2));
}
function conv(id, name) {
  let c = state.convs.get(id);
  // readBy: how far each other participant has read (from `read` frames), for the ticks.
  if (!c) { c = { id, name: name || null, messages: new Map(), lastSeq: 0, unread: 0, readBy: new Map() }; state.convs.set(id, c); }
  if (name) c.name = name;
  return c;
}
function label(c) {
  if (c.id.startsWith("group:")) return "# " + (c.name || c.id.slice(6));
  const [, a, b] = c.id.split(":");
  return a === state.me ? b : a;
}
function recipient(id) {
  if (id.startsWith("group:")) return { group: id.slice(6) };
  const [, a, b] = id.split(":");
  return { user: a === state.me ? b : a };
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: Object.assign({ "Content-Type": "application/json" },
      state.token ? { Authorization: "Bearer " + state.token } : {}),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error((data && data.reason) || res.statusText);
  return data;
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  showError();
  try {
    const pasted = $("login-token").value.trim();
    state.token = pasted || (await api("POST", "/api/dev/token", { user: $("login-name").value.trim() })).token;
    state.me = (await api("GET", "/api/me")).user;
    $("me").textContent = "as " + state.me;
    $("login").hidden = true;
    $("app").hidden = false;
    // Unread counts as stored, so every device starts from the same ones.
    for (const s of await api("GET", "/api/conversations")) conv(s.conversation, s.name).unread = s.unread || 0;
    renderConvs();
    connect();
    // Invitations are not pushed over the socket: look for new ones now and then.
    loadInvites();
    state.invitePoll = state.invitePoll || setInterval(loadInvites, 5000);
  } catch (err) { showError("Log-in failed: " + err.message); }
});

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  // The token as a subprotocol, not in the URL (URLs end up in logs).
  const ws = new WebSocket(`${proto}//${location.host}/ws`, ["parley", "bearer." + state.token]);
  state.ws = ws;
  ws.onopen = () => {
    state.backoff = 500;
    $("status").textContent = "online"; $("status").className = "online";
    // Catch up on everything missed while away: seqs are contiguous, so
    // "after my last seq" is exactly what is missing.
    for (const c of state.convs.values()) sync(c);
  };
  ws.onmessage = (ev) => { try { onFrame(JSON.parse(ev.data)); } catch (err) { console.error(err); } };
  ws.onclose = (ev) => {
    $("status").textContent = "offline" + (ev.reason ? ` (${ev.reason})` : ""); $("status").className = "offline";
    state.online.clear(); renderOnline();
    if (ev.code === 4001) {
      // The token expired: reconnecting with it would only be refused.
      state.token = null; state.ws = null;
      $("app").hidden = true; $("login").hidden = false;
      showError("Session expired: log in again.");
      return;
    }
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 10000);
  };
}
function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(Object.assign({ v: 1 }, frame)));
}
function sync(c) {
  // History loaded by a sync is not "unread"; only live messages are.
  c.syncing = true;
  send({ type: "sync", conversation: c.id, after_seq: c.lastSeq, limit: 200 });
}

function onFrame(f) {
  switch (f.type) {
    case "message": addMessage(f); break;
    case "ack": {
      const p = state.pending.get(f.client_msg_id);
      state.pending.delete(f.client_msg_id);
      addMessage(Object.assign({ conversation: f.conversation, seq: f.seq, msg_id: f.msg_id, from: state.me,
                                 body: p ? p.body : "", ts: Date.now() }, p && p.amends));
      break;
    }
    case "synced": {
      const c = conv(f.conversation);
      if (f.has_more) sync(c); else c.syncing = false;
      break;
    }
    case "presence": f.online ? state.online.add(f.user) : state.online.delete(f.user); renderOnline(); break;
    case "typing": showTyping(f.conversation, f.from); break;
    case "read": {
      if (f.from === state.me) break; // one's own other device
      const c = conv(f.conversation);
      c.readBy.set(f.from, Math.max(c.readBy.get(f.from) || 0, f.seq));
      if (f.conversation === state.current) { $("read").textContent = `${f.from} read up to #${f.seq}`; renderMessages(); }
      break;
    }
    case "error": showError(`${f.code}: ${f.reason}`); break;
  }
}

function addMessage(m) {
  const c = conv(m.conversation);
  if (c.messages.has(m.seq)) return; // live push and sync can overlap
  c.messages.set(m.seq, m);
  // An edit, recall or deletion (protocol 1.1) changes the message it names.
  const target = m.target && c.messages.get(m.target);
  if (m.kind && target) { target.amended = m.kind; target.body = m.kind === "edit" ? m.body : ""; }
  stopTyping(m.conversation, m.from); // a sent message ends that user's typing
  // Only advance over a contiguous prefix, so a gap is synced next time.
  while (c.messages.has(c.lastSeq + 1)) c.lastSeq++;
  if (c.id === state.current) {
    renderMessages();
    if (m.from !== state.me) send({ type: "read", conversation: c.id, seq: m.seq });
  } else if (m.from !== state.me && !c.syncing) {
    c.unread++;
  }
  renderConvs();
}

function openConv(id, name) {
  const c = conv(id, name);
  state.current = id; c.unread = 0;
  $("title").textContent = label(c) + (id.startsWith("group:") ? `  (id: ${id.slice(6)})` : "");
  $("body").disabled = false; $("send").disabled = false; $("body").focus();
  $("typing").textContent = ""; $("read").textContent = "";
  renderConvs(); renderMessages(); sync(c);
  // Opening a conversation reads what it already holds.
  if (c.lastSeq) send({ type: "read", conversation: id, seq: c.lastSeq });
}

function renderConvs() {
  const box = $("convs"); box.replaceChildren();
  for (const c of state.convs.values()) {
    const row = document.createElement("div");
    row.className = "conv" + (c.id === state.current ? " active" : "");
    const name = document.createElement("span"); name.textContent = label(c);
    row.append(name);
    if (c.unread) { const b = document.createElement("span"); b.className = "badge"; b.textContent = c.unread; row.append(b); }
    row.onclick = () => openConv(c.id);
    box.append(row);
  }
}
async function loadInvites() {
  if (!state.token) return;
  let invites;
  try { invites = await api("GET", "/api/invites"); } catch (err) { return; }
  const box = $("invites"); box.replaceChildren();
  for (const inv of invites) {
    const row = document.createElement("div"); row.className = "conv invite";
    const name = document.createElement("span"); name.textContent = `${inv.name} (from ${inv.invited_by})`;
    const path = `/api/groups/${encodeURIComponent(inv.group)}`;
    const accept = document.createElement("button"); accept.textContent = "Join"; accept.className = "accept";
    accept.onclick = async () => {
      showError();
      try { await api("POST", path + "/join"); openConv("group:" + inv.group, inv.name); }
      catch (err) { showError("Joining failed: " + err.message); }
      loadInvites();
    };
    const decline = document.createElement("button"); decline.textContent = "Decline"; decline.className = "decline";
    decline.onclick = async () => {
      try { await api("POST", path + "/decline"); } catch (err) { showError("Declining failed: " + err.message); }
      loadInvites();
    };
    row.append(name, accept, decline);
    box.append(row);
  }
  $("invites-box").hidden = invites.length === 0;
}
function renderOnline() {
  const box = $("online"); box.replaceChildren();
  for (const u of [...state.online].sort()) {
    const row = document.createElement("div"); row.className = "conv";
    const name = document.createElement("span");
    const dot = document.createElement("span"); dot.className = "dot";
    name.append(dot, document.createTextNode(u));
    row.append(name);
    row.onclick = () => openConv(dmId(state.me, u));
    box.append(row);
  }
}
function renderMessages() {
  const c = state.convs.get(state.current); const box = $("messages");
  box.replaceChildren();
  if (!c) return;
  for (const seq of [...c.messages.keys()].sort((a, b) => a - b)) {
    const m = c.messages.get(seq);
    if (m.kind) continue; // an amendment shows on the message it changed
    const div = document.createElement("div"); div.className = "msg" + (m.from === state.me ? " mine" : "");
    const meta = document.createElement("div"); meta.className = "meta";
    meta.textContent = `#${m.seq} ${m.from} · ${new Date(m.ts).toLocaleTimeString()}`;
    // Read ticks on one's own messages: ✓ stored, ✓✓ read by someone else.
    if (m.from === state.me) {
      const read = [...c.readBy.values()].some((seq) => seq >= m.seq);
      const tick = document.createElement("span"); tick.className = "tick" + (read ? " read" : "");
      tick.textContent = read ? " ✓✓" : " ✓"; tick.title = read ? "read" : "stored";
      meta.append(tick);
    }
    const body = document.createElement("div"); body.className = "body";
    const gone = { recall: "message recalled", delete: "message deleted" }[m.amended];
    body.textContent = gone || m.body + (m.amended === "edit" ? " (edited)" : "");
    if (gone) div.classList.add("gone");
    div.append(meta, body);
    if (m.from === state.me && !gone) div.append(amendButtons(c, m));
    box.append(div);
  }
  for (const [, p] of state.pending) {
    if (p.conversation !== c.id || p.hidden) continue;
    const div = document.createElement("div"); div.className = "msg mine pending"; div.textContent = p.body;
    box.append(div);
  }
  box.scrollTop = box.scrollHeight;
}
// Edit, recall and delete for one's own message: sent like a message,
// acked with a seq of their own.
function amendButtons(c, m) {
  const row = document.createElement("span"); row.className = "amend";
  for (const kind of ["edit", "recall", "delete"]) {
    const b = document.createElement("button"); b.textContent = kind; b.className = kind;
    b.onclick = () => {
      const frame = { type: kind, client_msg_id: newId(), to: recipient(c.id), seq: m.seq };
      if (kind === "edit") {
        const text = prompt("Edit message", m.body);
        if (!text || !text.trim()) return;
        frame.body = text;
      }
      state.pending.set(frame.client_msg_id,
        { conversation: c.id, body: frame.body || "", hidden: true, amends: { kind, target: m.seq } });
      send(frame);
    };
    row.append(b);
  }
  return row;
}
function showTyping(conversation, from) {
  let users = state.typing.get(conversation);
  if (!users) { users = new Map(); state.typing.set(conversation, users); }
  clearTimeout(users.get(from));
  users.set(from, setTimeout(() => { users.delete(from); renderTyping(); }, 3000));
  renderTyping();
}
function stopTyping(conversation, from) {
  const users = state.typing.get(conversation);
  if (!users || !users.has(from)) return;
  clearTimeout(users.get(from));
  users.delete(from);
  renderTyping();
}
function renderTyping() {
  const users = state.typing.get(state.current);
  const names = users ? [...users.keys()] : [];
  $("typing").textContent = names.length ? names.join(", ") + (names.length > 1 ? " are" : " is") + " typing…" : "";
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = $("body").value;
  if (!body.trim() || !state.current) return;
  const id = newId();
  state.pending.set(id, { conversation: state.current, body });
  send({ type: "send", client_msg_id: id, to: recipient(state.current), body });
  $("body").value = "";
  renderMessages();
});
$("body").addEventListener("input", () => {
  const now = Date.now();
  if (state.current && now - state.lastTypingSent > 2000) {
    state.lastTypingSent = now;
    send({ type: "typing", conversation: state.current });
  }
});
$("new-dm").addEventListener("submit", (e) => {
  e.preventDefault();
  const u = $("dm-user").value.trim();
  if (u) { openConv(dmId(state.me, u)); $("dm-user").value = ""; }
});
$("new-group").addEventListener("submit", async (e) => {
  e.preventDefault(); showError();
  const members = $("group-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  try {
    const g = await api("POST", "/api/groups", { name: [state.me, ...members].join(", "), members });
    $("group-members").value = "";
    openConv("group:" + g.id, g.name);
  } catch (err) { showError("Creating the group failed: " + err.message); }
});
$("join-group").addEventListener("submit", async (e) => {
  e.preventDefault(); showError();
  const id = $("join-id").value.trim();
  try {
    await api("POST", `/api/groups/${encodeURIComponent(id)}/join`);
    $("join-id").value = "";
    const g = (await api("GET", "/api/groups")).find((x) => x.id === id);
    openConv("group:" + id, g && g.name);
  } catch (err) { showError("Joining failed: " + err.message); }
});
