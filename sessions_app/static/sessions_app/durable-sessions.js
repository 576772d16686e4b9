// durable-sessions.js: a dependency-free browser client for sessions_app's WebSocket door.
//
// One socket carries every session the page follows. The client reconnects by itself
// (exponential backoff with jitter), resumes each session after the last offset it folded
// (kept in sessionStorage, so a reload resumes too), drops duplicates by offset, and folds the
// events into the same state the server's fold gives (sessions_app/domain/fold.py).
// Protocol: docs/sessions/websocket.md. Guide: docs/sessions/browser-client.md.

export const VERSION = "1";

const liveClients = new Set(); // flushed to storage when the page goes away

// --- offsets -----------------------------------------------------------------------------

export const BEGINNING = "-1";

/** Offsets are fixed-width strings that sort as strings; "-1" sorts before every offset. */
export function compareOffsets(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

// --- the fold: a mirror of sessions_app/domain/fold.py -------------------------------------

export const RunStatus = Object.freeze({
  RUNNING: "running",
  CANCELLING: "cancelling",
  CANCELLED: "cancelled",
  FINISHED: "finished",
  FAILED: "failed",
});

export const MessageStatus = Object.freeze({
  STREAMING: "streaming",
  COMPLETE: "complete",
  CANCELLED: "cancelled",
  FAILED: "failed",
});

// An agent may finish before it sees the cancel: its outcome then stands (domain/runs.py).
const TRANSITIONS = {
  running: ["cancelling", "cancelled", "finished", "failed"],
  cancelling: ["cancelled", "finished", "failed"],
  cancelled: [],
  finished: [],
  failed: [],
};
const FINAL = new Set(["cancelled", "finished", "failed"]);

export function isFinal(status) {
  return FINAL.has(status);
}

/** A fresh folded state: what a session looks like before its first entry. */
export function emptyState() {
  return {
    offset: BEGINNING,
    messages: new Map(),
    runs: new Map(),
    state: null,
    // Client-side extras, not part of server snapshots: see browser-client.md.
    jobs: new Map(),
  };
}

/** Rebuild a state from a server snapshot (`{"type":"snapshot"}` frame) or a stored copy. */
export function stateFromSnapshot(raw, offset) {
  const folded = emptyState();
  folded.offset = offset;
  folded.state = raw.state ?? null;
  for (const m of raw.messages || []) {
    folded.messages.set(m.id, { since: null, ...m, text: m.text || "" });
  }
  for (const r of raw.runs || []) {
    folded.runs.set(r.id, { reason: null, steers: [], acks: [], since: null, ...r });
  }
  for (const j of raw.jobs || []) folded.jobs.set(j.id, { ...j });
  return folded;
}

/** The plain-JSON form of a state (what `stateFromSnapshot` reads back). */
export function stateToJSON(folded) {
  return {
    offset: folded.offset,
    messages: [...folded.messages.values()],
    runs: [...folded.runs.values()],
    state: folded.state,
    jobs: [...folded.jobs.values()],
  };
}

/** What Python's `event["key"]` does: a missing field skips the event. */
function need(event, key) {
  if (!Object.hasOwn(event, key)) throw new Error(`no ${key}`);
  return event[key];
}

/** Python's str() for the values JSON can carry. */
function pyStr(value) {
  if (value === null) return "None";
  if (value === true || value === false) return value ? "True" : "False";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function touchMessage(folded, event, role) {
  need(event, "message");
  let message = folded.messages.get(event.message);
  if (message === undefined) {
    message = {
      id: event.message,
      role: role || "assistant",
      run: event.run ?? null,
      agent: event.agent ?? null,
      status: MessageStatus.STREAMING,
      text: "",
      since: event.offset ?? null, // client-side extra: where it started (null from snapshots)
    };
    folded.messages.set(event.message, message);
  }
  return message;
}

function closeMessages(folded, runId, status) {
  for (const message of folded.messages.values()) {
    if (message.run === runId && message.status === MessageStatus.STREAMING) {
      message.status = status;
    }
  }
}

function setRun(folded, runId, status, extra = {}) {
  const run = runId ? folded.runs.get(runId) : undefined;
  if (run === undefined || !TRANSITIONS[run.status].includes(status)) return;
  Object.assign(run, extra, { status });
  if (isFinal(status) && status !== RunStatus.FINISHED) {
    closeMessages(folded, runId, status === RunStatus.CANCELLED ? "cancelled" : "failed");
  }
}

const REDUCERS = {
  RUN_STARTED(folded, event, data) {
    if (folded.runs.has(need(event, "run"))) return;
    folded.runs.set(event.run, {
      id: event.run,
      status: RunStatus.RUNNING,
      parent: typeof data.parentRunId === "string" ? data.parentRunId : null,
      agent: event.agent ?? null,
      outcome: null,
      error: null,
      reason: null,
      steers: [],
      acks: [],
      since: event.offset ?? null,
    });
  },
  RUN_FINISHED(folded, event, data) {
    if (data.outcome === "cancelled") {
      const extra = { outcome: "cancelled", reason: typeof data.reason === "string" ? data.reason : null };
      setRun(folded, event.run, RunStatus.CANCELLED, extra);
      return;
    }
    const run = event.run ? folded.runs.get(event.run) : undefined;
    if (run === undefined || !TRANSITIONS[run.status].includes(RunStatus.FINISHED)) return;
    run.status = RunStatus.FINISHED;
    run.outcome = "success";
    closeMessages(folded, event.run, MessageStatus.COMPLETE);
  },
  RUN_ERROR(folded, event, data) {
    if (data.code === "cancelled") {
      setRun(folded, event.run, RunStatus.CANCELLED, { outcome: "cancelled" });
    } else {
      const error = Object.hasOwn(data, "message") ? pyStr(data.message) : "";
      setRun(folded, event.run, RunStatus.FAILED, { error });
    }
  },
  TEXT_MESSAGE_START(folded, event, data) {
    touchMessage(folded, event, data.role);
  },
  TEXT_MESSAGE_CONTENT(folded, event, data) {
    const message = touchMessage(folded, event, data.role);
    if (message.status === MessageStatus.STREAMING && typeof data.delta === "string") {
      message.text += data.delta;
    }
  },
  TEXT_MESSAGE_END(folded, event) {
    const message = folded.messages.get(need(event, "message"));
    if (message !== undefined && message.status === MessageStatus.STREAMING) {
      message.status = MessageStatus.COMPLETE;
    }
  },
  STATE_SNAPSHOT(folded, event, data) {
    folded.state = data.snapshot ?? null;
  },
  STATE_DELTA(folded, event, data) {
    try {
      folded.state = applyPatch(folded.state ?? {}, data.delta);
    } catch (error) {
      // A patch that does not apply leaves the state as it was (as on the server).
    }
  },
  CANCEL(folded, event) {
    const targets = event.run ? [event.run] : [...folded.runs.keys()];
    for (const runId of targets) setRun(folded, runId, RunStatus.CANCELLING);
  },
  // Client-side extras: the controls a run received and what its agent acknowledged.
  STEER(folded, event, data) {
    const run = folded.runs.get(event.run);
    if (run !== undefined) run.steers.push({ text: String(data.text ?? ""), offset: event.offset });
  },
  CONTROL_ACK(folded, event, data) {
    const run = folded.runs.get(event.run);
    if (run !== undefined) run.acks.push({ action: data.action, control: data.control ?? null });
  },
  CUSTOM(folded, event, data) {
    if (data.name === "sessions.FEEDBACK" && isObject(data.value)) {
      // A user's latest rating of a message replaces that user's earlier one (as on the server).
      const { message: id, user, rating, comment, correction } = data.value;
      const message = folded.messages.get(id);
      if (message === undefined || typeof user !== "string" || !["up", "down"].includes(rating)) return;
      const entry = { rating, time: event.time ?? null };
      if (comment !== undefined) entry.comment = comment;
      if (correction !== undefined) entry.correction = correction;
      message.feedback = { ...(message.feedback || {}), [user]: entry };
      return;
    }
    if (data.name !== "job.progress" || typeof data.value !== "object" || !data.value) return;
    const value = data.value;
    const id = String(value.job ?? value.id ?? "job");
    folded.jobs.set(id, { ...(folded.jobs.get(id) || {}), ...value, id });
  },
};
REDUCERS.TEXT_MESSAGE_CHUNK = REDUCERS.TEXT_MESSAGE_CONTENT;

/** Fold one delivered event into `folded`, in place. Events that do not fit are skipped. */
export function applyEvent(folded, event) {
  const reducer = REDUCERS[event.type];
  if (reducer !== undefined) {
    const data = isObject(event.data) ? event.data : {};
    try {
      reducer(folded, event, data);
    } catch (error) {
      // An event without the fields its type needs is skipped, never an error.
    }
  }
  if (event.offset !== undefined) folded.offset = event.offset;
  return folded;
}

// A small RFC 6902 JSON Patch for STATE_DELTA, rule for rule as sessions_app/domain/jsonpatch.py.
class PatchError extends Error {}

const isObject = (node) => node !== null && typeof node === "object" && !Array.isArray(node);

function tokens(pointer) {
  if (pointer === "") return [];
  if (!pointer.startsWith("/")) throw new PatchError(`bad JSON pointer ${pointer}`);
  return pointer.slice(1).split("/").map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
}

function arrayIndex(container, token, forAdd = false) {
  if (forAdd && token === "-") return container.length;
  if (!/^[0-9]+$/.test(token) || (token.length > 1 && token[0] === "0")) {
    throw new PatchError(`bad array index ${token}`);
  }
  const index = Number(token);
  if (index > (forAdd ? container.length : container.length - 1)) {
    throw new PatchError(`array index ${index} out of range`);
  }
  return index;
}

function child(node, token) {
  if (isObject(node)) {
    if (!Object.hasOwn(node, token)) throw new PatchError(`no member ${token}`);
    return node[token];
  }
  if (Array.isArray(node)) return node[arrayIndex(node, token)];
  throw new PatchError("path goes through a scalar");
}

function getPath(doc, pointer) {
  return tokens(pointer).reduce(child, doc);
}

function parentOf(doc, parts) {
  return parts.slice(0, -1).reduce(child, doc);
}

function addPath(doc, pointer, value) {
  const parts = tokens(pointer);
  if (parts.length === 0) return value;
  const parent = parentOf(doc, parts);
  const last = parts[parts.length - 1];
  if (isObject(parent)) parent[last] = value;
  else if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
  else throw new PatchError("cannot add to a scalar");
  return doc;
}

function removePath(doc, pointer) {
  const parts = tokens(pointer);
  if (parts.length === 0) throw new PatchError("cannot remove the whole document");
  const parent = parentOf(doc, parts);
  const last = parts[parts.length - 1];
  if (isObject(parent)) {
    if (!Object.hasOwn(parent, last)) throw new PatchError(`no member ${last}`);
    delete parent[last];
  } else if (Array.isArray(parent)) {
    parent.splice(arrayIndex(parent, last), 1);
  } else {
    throw new PatchError("cannot remove from a scalar");
  }
  return doc;
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length &&
      keys.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

const copyOf = (value) => (value === undefined ? null : structuredClone(value));

function applyOne(doc, op) {
  const { op: kind, path } = op;
  if (typeof path !== "string") throw new PatchError("operation without a path");
  if (kind === "add") return addPath(doc, path, copyOf(op.value));
  if (kind === "remove") return removePath(doc, path);
  if (kind === "replace") {
    getPath(doc, path);
    return path ? addPath(removePath(doc, path), path, copyOf(op.value)) : copyOf(op.value);
  }
  if (kind === "move" || kind === "copy") {
    if (typeof op.from !== "string") throw new PatchError(`${kind} needs 'from'`);
    const value = structuredClone(getPath(doc, op.from));
    if (kind === "move") doc = removePath(doc, op.from);
    return addPath(doc, path, value);
  }
  if (kind === "test") {
    if (!deepEqual(getPath(doc, path), copyOf(op.value))) throw new PatchError(`test failed at ${path}`);
    return doc;
  }
  throw new PatchError(`unknown operation ${kind}`);
}

/** Apply a JSON Patch to a copy of `doc`; throws if any operation does not apply. */
export function applyPatch(doc, operations) {
  if (operations === "" || (isObject(operations) && Object.keys(operations).length === 0)) {
    operations = []; // as Python iterates an empty str or dict: nothing to do
  }
  if (!Array.isArray(operations)) throw new PatchError("a patch is a list of operations");
  let result = structuredClone(doc);
  for (const op of operations) {
    if (!isObject(op)) throw new PatchError("an operation must be an object");
    result = applyOne(result, op);
  }
  return result;
}

// --- the client ----------------------------------------------------------------------------

const DEFAULTS = {
  url: null, // default: ws(s)://<this host>/ws/sessions/
  token: null, // a string or a function returning one (or a promise): called on every connect
  device: null, // default: a random id kept in sessionStorage (one per tab)
  label: "",
  storage: typeof sessionStorage === "undefined" ? null : sessionStorage,
  storagePrefix: "durable-sessions:",
  backoff: { initial: 250, max: 8000, factor: 2 },
  pingInterval: 15000, // ms between pings; a socket silent for pingTimeout is given up
  pingTimeout: 10000,
  saveDelay: 100, // ms: how long offset and state writes to storage are coalesced
  initialAfter: "snapshot", // where a session with nothing stored starts
  WebSocket: null, // default: the browser's WebSocket (a stand-in for tests)
};

export class ClientError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.name = "ClientError";
    this.code = frame.code;
    this.frame = frame;
  }
}

// A cookie client whose socket closes with 4401 tries again this many times (each closed with
// 4401 before a hello) before it stops as "unauthenticated".
export const LOGIN_RETRIES = 3;

/** Delay before reconnect attempt `attempt` (0-based): exponential, capped, "equal jitter". */
export function backoffDelay(attempt, { initial, max, factor }, random = Math.random) {
  const ceiling = Math.min(max, initial * factor ** attempt);
  return ceiling / 2 + random() * (ceiling / 2);
}

/**
 * One connection to /ws/sessions/, shared by every subscribed session.
 *
 * Events (EventTarget): "status" (detail.status: connecting | connected | reconnecting |
 * resumed | closed | unauthenticated), "frame" (every frame received, for debugging),
 * "error" (detail: a ClientError not tied to a request).
 */
export class SessionsClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...options.backoff } };
    this.sessions = new Map();
    this.pending = new Map(); // request id -> {resolve, reject}
    this.queue = []; // frames waiting for a connection
    this.counter = 0;
    this.attempt = 0;
    this.status = "idle";
    this.everConnected = false;
    this.stopped = true;
    this.ws = null;
    this.device = this.options.device || this._storedDevice();
    this._onOnline = () => this._reconnectNow();
  }

  /** Open the socket (idempotent). Returns the client. */
  connect() {
    if (!this.stopped) return this;
    this.stopped = false;
    this.loginRetries = 0;
    liveClients.add(this);
    if (typeof window !== "undefined") window.addEventListener("online", this._onOnline);
    this._open();
    return this;
  }

  /** Close for good: no reconnect. Subscriptions keep their stored offsets. */
  close() {
    this.stopped = true;
    liveClients.delete(this);
    clearTimeout(this.retryTimer);
    this._stopHeartbeat();
    if (typeof window !== "undefined") window.removeEventListener("online", this._onOnline);
    for (const view of this.sessions.values()) view._save(true);
    if (this.ws) this.ws.close(1000);
    this._setStatus("closed");
  }

  /** Follow a session; returns its SessionView (the same one if already followed). */
  subscribe(name) {
    let view = this.sessions.get(name);
    if (view === undefined) {
      view = new SessionView(this, name);
      this.sessions.set(name, view);
      if (this.connected) this._subscribe(view);
    }
    this.connect();
    return view;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === 1 && this.helloed;
  }

  /** Send a frame with an id; resolve with the reply, reject with a ClientError. */
  request(frame) {
    const id = `c${++this.counter}`;
    const message = { ...frame, id };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, sent: false, message });
      if (this.connected) this._sendPending(id);
      else this.queue.push(id);
    });
  }

  // --- connection --------------------------------------------------------------------------

  async _open() {
    if (this.opening) return; // an "online" event while we wait for a token
    this.opening = true;
    this._setStatus(this.everConnected ? "reconnecting" : "connecting");
    let ws;
    try {
      const url = await this._url();
      if (this.stopped) return;
      ws = new (this.options.WebSocket || WebSocket)(url);
    } catch (error) {
      this._scheduleReconnect(); // no token (site unreachable) or a malformed URL
      return;
    } finally {
      this.opening = false;
    }
    this.ws = ws;
    this.helloed = false;
    ws.onmessage = (message) => this._receive(ws, message.data);
    ws.onclose = (event) => this._closed(ws, event.code);
    ws.onerror = () => {}; // onclose follows and decides
  }

  async _url() {
    const base = this.options.url || defaultUrl();
    const url = new URL(base, typeof location === "undefined" ? undefined : location.href);
    const token = typeof this.options.token === "function"
      ? await this.options.token()
      : this.options.token;
    if (token) url.searchParams.set("token", token);
    url.searchParams.set("device", this.device);
    if (this.options.label) url.searchParams.set("label", this.options.label);
    return url.toString();
  }

  _closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.helloed = false;
    this._stopHeartbeat();
    this._failInFlight();
    for (const view of this.sessions.values()) view._detached();
    if (this.stopped) return;
    if (code === 4401 && !this.options.token) {
      // The login the cookie carried has ended (a logout, a password change). The browser may
      // soon hold a newer cookie: a password changed in this browser moves its login to a new
      // key, but the socket is closed before the response that sets it arrives; or another
      // tab logs in again. LOGIN_RETRIES tries on the usual backoff (about 1-2 s in all by
      // default); if each is closed with 4401 before a hello, the user is logged out and
      // retrying will not help until they log in again.
      this.loginRetries = (this.loginRetries || 0) + 1;
      if (this.loginRetries > LOGIN_RETRIES) {
        this.stopped = true;
        this._setStatus("unauthenticated");
        return;
      }
    }
    this._setStatus("reconnecting");
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.attempt++, this.options.backoff);
    this.retryTimer = setTimeout(() => this._open(), delay);
  }

  _reconnectNow() {
    if (this.stopped || this.ws !== null) return;
    clearTimeout(this.retryTimer);
    this._open();
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this.lastHeard = Date.now();
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > this.options.pingInterval + this.options.pingTimeout) {
        this.ws?.close(4000); // silent too long: assume a half-open socket
        if (this.ws) this._closed(this.ws, 4000);
        return;
      }
      this._send({ op: "ping" });
    }, this.options.pingInterval);
  }

  _stopHeartbeat() {
    clearInterval(this.heartbeat);
  }

  _failInFlight() {
    for (const [id, entry] of this.pending) {
      if (!entry.sent) continue;
      this.pending.delete(id);
      // It may or may not have reached the server: the caller decides whether to retry.
      entry.reject(new ClientError({ code: "disconnected", message: "connection lost" }));
    }
  }

  _send(frame) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(frame));
  }

  _sendPending(id) {
    const entry = this.pending.get(id);
    if (entry === undefined) return;
    entry.sent = true;
    this._send(entry.message);
  }

  _setStatus(status) {
    if (status === this.status) return;
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: { status } }));
  }

  // --- frames in ---------------------------------------------------------------------------

  _receive(ws, data) {
    if (ws !== this.ws) return;
    this.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (error) {
      return;
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    const handler = this[`_on_${frame.type}`];
    if (handler) handler.call(this, frame);
  }

  _on_hello(frame) {
    this.helloed = true;
    this.loginRetries = 0;
    this.device = frame.device;
    this.user = frame.user;
    this.attempt = 0;
    this._startHeartbeat();
    this.resuming = this.everConnected;
    for (const view of this.sessions.values()) this._subscribe(view);
    for (const id of this.queue.splice(0)) this._sendPending(id);
    this._setStatus(this.everConnected ? "reconnecting" : "connected");
    this.everConnected = true;
    this._maybeResumed();
  }

  _subscribe(view) {
    const id = `s${++this.counter}`;
    view._subscribing(id);
    this._send({ op: "subscribe", id, session: view.name, after: view._after() });
  }

  _maybeResumed() {
    if (!this.resuming) return;
    for (const view of this.sessions.values()) if (!view.live) return;
    this.resuming = false;
    this._setStatus("resumed");
  }

  _on_events(frame) {
    this.sessions.get(frame.session)?._events(frame.events);
  }

  _on_snapshot(frame) {
    this.sessions.get(frame.session)?._snapshot(frame);
  }

  _on_caught_up(frame) {
    const view = this.sessions.get(frame.session);
    if (view === undefined || view.subscribeId !== frame.id) return;
    view._caughtUp(frame);
    this.request({ op: "presence", session: view.name }).catch(() => {});
    this._maybeResumed();
  }

  _on_presence(frame) {
    this.sessions.get(frame.session)?._presence(frame);
    this._resolve(frame);
  }

  _on_error(frame) {
    const view = frame.session ? this.sessions.get(frame.session) : undefined;
    const subscribing = [...this.sessions.values()].find((v) => v.subscribeId === frame.id);
    if (subscribing && frame.id !== undefined) {
      subscribing._subscribeFailed(frame);
      this._maybeResumed();
      return;
    }
    if (view && frame.id === undefined && frame.code === "offset_expired") {
      // Retention overtook this live subscriber: the server dropped it; start from the snapshot.
      view._expired();
      this._subscribe(view);
      return;
    }
    if (!this._resolve(frame)) {
      this.dispatchEvent(new CustomEvent("error", { detail: new ClientError(frame) }));
    }
  }

  _on_ack(frame) {
    this._resolve(frame);
  }

  _on_unsubscribed(frame) {
    this._resolve(frame);
  }

  _on_pong(frame) {
    this._resolve(frame);
  }

  _resolve(frame) {
    const entry = frame.id === undefined ? undefined : this.pending.get(frame.id);
    if (entry === undefined) return false;
    this.pending.delete(frame.id);
    if (frame.type === "error") entry.reject(new ClientError(frame));
    else entry.resolve(frame);
    return true;
  }

  // --- storage -----------------------------------------------------------------------------

  _storedDevice() {
    const key = `${this.options.storagePrefix}device`;
    let device = this._storageGet(key);
    if (!device) {
      const bytes = new Uint8Array(6);
      crypto.getRandomValues(bytes);
      device = "d-" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
      this._storageSet(key, device);
    }
    return device;
  }

  _storageGet(key) {
    try {
      return this.options.storage?.getItem(key) ?? null;
    } catch (error) {
      return null;
    }
  }

  _storageSet(key, value) {
    try {
      if (value === null) this.options.storage?.removeItem(key);
      else this.options.storage?.setItem(key, value);
    } catch (error) {
      // Full or forbidden storage: the next reload starts from the snapshot instead.
    }
  }
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/sessions/`;
}

/**
 * One followed session: its folded state, presence, and the operations on it.
 *
 * Events: "change" (the state changed), "live" (caught up after a (re)subscribe; detail:
 * {after, resumed}), "error" (detail: a ClientError for this session).
 */
export class SessionView extends EventTarget {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.key = `${client.options.storagePrefix}session:${name}`;
    this.folded = this._restore() || emptyState();
    this.presence = { self: null, devices: [] };
    this.live = false;
    this.subscribeId = null;
    this.lastAfter = null;
    this.duplicatesDropped = 0;
    this._cache = null;
  }

  /** The folded state as plain arrays: {offset, messages, runs, state, jobs, presence}. */
  get state() {
    if (this._cache === null) {
      const plain = stateToJSON(this.folded);
      this._cache = { ...plain, presence: this.presence };
    }
    return this._cache;
  }

  get offset() {
    return this.folded.offset;
  }

  /** Runs not yet final (running or cancelling), oldest first. */
  activeRuns() {
    return this.state.runs.filter((run) => !isFinal(run.status));
  }

  sendMessage(text) {
    return this.client.request({ op: "send_message", session: this.name, text });
  }

  /** Cancel `run`, or every active run when omitted. */
  cancel(run) {
    return this.client.request(withRun({ op: "cancel", session: this.name }, run));
  }

  steer(run, text) {
    return this.client.request({ op: "steer", session: this.name, run, text });
  }

  /** Rate an assistant message "up" or "down" (a later rating replaces it); the server
   * records who rated. Optional `comment` and `correction` (a better answer). */
  feedback(message, rating, { comment, correction } = {}) {
    const frame = { op: "feedback", session: this.name, message, rating };
    if (comment) frame.comment = comment;
    if (correction) frame.correction = correction;
    return this.client.request(frame);
  }

  /** Cancel `run` (or every active run) and send `text` as a new user message, at once. */
  interrupt(text, run) {
    return this.client.request(withRun({ op: "interrupt", session: this.name, text }, run));
  }

  publish(events, producer) {
    const frame = { op: "publish", session: this.name, events };
    if (producer) frame.producer = producer;
    return this.client.request(frame);
  }

  /** Stop following; forget the stored offset and state unless `keep` is true. */
  unsubscribe({ keep = false } = {}) {
    this.client.sessions.delete(this.name);
    if (!keep) this.client._storageSet(this.key, null);
    if (this.client.connected) {
      return this.client.request({ op: "unsubscribe", session: this.name });
    }
    return Promise.resolve(null);
  }

  // --- called by the client ----------------------------------------------------------------

  _after() {
    const after =
      this.folded.offset === BEGINNING ? this.client.options.initialAfter : this.folded.offset;
    this.lastAfter = after;
    return after;
  }

  _subscribing(id) {
    this.subscribeId = id;
    this.live = false;
  }

  _detached() {
    this.live = false;
    this.subscribeId = null;
    this.presence = { self: this.presence.self, devices: [] };
    this._changed();
  }

  _events(events) {
    let changed = false;
    for (const event of events) {
      if (compareOffsets(event.offset, this.folded.offset) <= 0) {
        this.duplicatesDropped += 1; // already folded (a replay overlapping what we had)
        continue;
      }
      applyEvent(this.folded, event);
      changed = true;
    }
    if (changed) this._changed();
  }

  _snapshot(frame) {
    if (compareOffsets(frame.offset, this.folded.offset) <= 0) return;
    const jobs = this.folded.jobs;
    this.folded = stateFromSnapshot(frame.state, frame.offset);
    this.folded.jobs = jobs;
    this._changed();
  }

  _caughtUp(frame) {
    this.live = true;
    this.dispatchEvent(
      new CustomEvent("live", { detail: { after: this.lastAfter, offset: frame.offset } }),
    );
  }

  _subscribeFailed(frame) {
    this.subscribeId = null;
    if (frame.code === "offset_expired" || (frame.code === "bad_request" && this.lastAfter !== "snapshot")) {
      // Below the retained range, or beyond the head (the server's data was reset): start over
      // from the folded state the server offers.
      this._expired();
      this.client._subscribe(this);
      return;
    }
    this.dispatchEvent(new CustomEvent("error", { detail: new ClientError(frame) }));
  }

  _expired() {
    this.folded = emptyState();
    this.client._storageSet(this.key, null);
    this._changed();
  }

  _presence(frame) {
    this.presence = { self: frame.self, devices: frame.devices };
    this._changed();
  }

  _changed() {
    this._cache = null;
    this._save(false);
    this.dispatchEvent(new CustomEvent("change"));
  }

  /** Write offset and state together (at most every `saveDelay` ms while a stream runs). */
  _save(now) {
    if (!this.client.sessions.has(this.name)) return;
    const write = () => {
      clearTimeout(this.saveTimer);
      this.saveTimer = null;
      this.client._storageSet(this.key, JSON.stringify(stateToJSON(this.folded)));
    };
    if (now) write();
    else if (!this.saveTimer) this.saveTimer = setTimeout(write, this.client.options.saveDelay);
  }

  _restore() {
    const raw = this.client._storageGet(this.key);
    if (!raw) return null;
    try {
      const stored = JSON.parse(raw);
      return stateFromSnapshot(stored, stored.offset);
    } catch (error) {
      return null;
    }
  }
}

function withRun(frame, run) {
  if (run) frame.run = run;
  return frame;
}

// A reload (or a phone putting the tab away) must not lose the last offset to the save timer.
if (typeof window !== "undefined") {
  const flush = () => {
    for (const client of liveClients) {
      for (const view of client.sessions.values()) view._save(true);
    }
  };
  window.addEventListener("pagehide", flush);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flush();
  });
}
