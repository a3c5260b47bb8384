// oxian-sse.js: the seed's SSEClient, dependency-free, as an ES module,
// with what a hub stream needs. Served by `twistd oxian --client-script
// /oxian-sse.js` (opt-in), or copied into your front end.
//
//   import { SSEClient } from "/oxian-sse.js";
//   const client = new SSEClient("/rooms/general/events", {
//     onReset: (info) => reloadFromTheSource(info.channel),
//   });
//   client.on("message", (data, event) => show(data));
//   client.on("state", (state) => badge.textContent = state);
//   client.connect();
//
// - `on(event, handler)`: handler(data, event) for a server event (`data`
//   parsed as JSON when it is JSON, else the text); several handlers per
//   event. Client events: "connected", "error", "state" (handler(state)),
//   "reset" (handler(info): the hub could not resume; also `onReset`).
// - `lastEventId` (option): resume from it on the first connect; after
//   that the id of the last event received is used on every reconnect.
// - The browser reconnects by itself after network errors (after the
//   server's `retry`). When it gives up (an error status such as a 503 at
//   `--max-streams`, or a server that is down), the client reconnects
//   with exponential backoff (1 s doubling to 30 s, with jitter), resuming
//   from the last id.
// - `token` (option): `() => Promise<string>`, a stream token
//   (oxian_tw.tokens), sent as `?token=`. It is called on every connect and
//   reconnect: the client then reconnects itself instead of letting the
//   browser reuse a stale token, and on `event: expired` it reconnects at
//   once with a fresh token, resuming from the last id.
// - `transport: "fetch"` (option), with `headers`, `method` and `body`:
//   the stream is read with fetch() instead of EventSource, so it can send
//   headers (`Authorization`) and POST a body; a `token` then goes as
//   `Authorization: Bearer`. It keeps EventSource's behaviour: events as
//   WHATWG's parser reads them, `Last-Event-ID` on every reconnect, the
//   server's `retry:` as the wait after a stream that ended, a 204 stops
//   for good, errors back off as above.

const STATES = ["idle", "connecting", "open", "reconnecting", "closed"];

export class SSEClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = options;
    this.eventSource = null;
    this.listeners = new Map();
    this.lastEventId = options.lastEventId ?? null;
    this._state = "idle";
    this._delay = options.initialDelay ?? 1000;
    this._timer = null;
    this._attached = new Set();
    this._attempt = 0;
  }

  get state() {
    return this._state;
  }

  on(event, handler) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(handler);
    if (this.eventSource) this._attach(event);
    return this;
  }

  off(event, handler) {
    this.listeners.get(event)?.delete(handler);
    return this;
  }

  connect() {
    this._stopTimer();
    if (this.eventSource) this.eventSource.close();
    this.eventSource = null;
    this._setState(this._state === "idle" || this._state === "closed" ? "connecting" : "reconnecting");
    const attempt = ++this._attempt;
    if (!this.options.token) {
      this._open(null);
      return this;
    }
    Promise.resolve()
      .then(() => this.options.token())
      .then(
        (token) => { if (attempt === this._attempt && this._state !== "closed") this._open(token); },
        (error) => {
          if (attempt !== this._attempt || this._state === "closed") return;
          this.emit("error", error);
          this._retryLater();
        },
      );
    return this;
  }

  _open(token) {
    if (this.options.transport === "fetch") {
      this._openFetch(token);
      return;
    }
    const source = new EventSource(this._address(token), {
      withCredentials: Boolean(this.options.withCredentials),
    });
    this.eventSource = source;
    this._attached = new Set();
    source.onopen = () => {
      this._delay = this.options.initialDelay ?? 1000;
      this._setState("open");
      this.emit("connected");
    };
    source.onerror = (error) => {
      if (source !== this.eventSource) return;
      this.emit("error", error);
      if (source.readyState === EventSource.CLOSED || this.options.token) {
        // The browser gave up, or would come back with a stale token.
        source.close();
        // The browser gave up: try again later, from the last id.
        this.eventSource = null;
        this._retryLater();
      } else {
        this._setState("reconnecting");
      }
    };
    this._attach("message");
    this._attach("reset");
    this._attach("expired");
    for (const event of this.listeners.keys()) this._attach(event);
  }

  close() {
    this._stopTimer();
    if (this.eventSource) {
      this.eventSource.close();
      this.eventSource = null;
    }
    this._setState("closed");
  }

  emit(event, ...args) {
    for (const handler of this.listeners.get(event) ?? []) handler(...args);
  }

  _attach(event) {
    if (this._attached.has(event) || ["connected", "error", "state"].includes(event)) return;
    if (!(this.eventSource instanceof EventSource)) return;
    this._attached.add(event);
    this.eventSource.addEventListener(event, (message) => this._deliver(event, message));
  }

  _deliver(event, message) {
      if (message.lastEventId) this.lastEventId = message.lastEventId;
      const data = parse(message.data);
      if (event === "reset") this.options.onReset?.(data);
      this.emit(event, data, message);
      // The stream token ran out: a fresh one, at once, from the last id.
      if (event === "expired" && this.options.token) this.connect();
  }

  _openFetch(token) {
    const controller = new AbortController();
    const source = { close: () => controller.abort() };
    this.eventSource = source;
    const headers = new Headers(this.options.headers ?? {});
    headers.set("Accept", "text/event-stream");
    if (this.lastEventId !== null) headers.set("Last-Event-ID", this.lastEventId);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const request = {
      method: this.options.method ?? "GET",
      headers,
      body: this.options.body,
      credentials: this.options.withCredentials ? "include" : "same-origin",
      cache: "no-store",
      signal: controller.signal,
    };
    let opened = false;
    fetch(this.url, request)
      .then(async (response) => {
        if (source !== this.eventSource) return;
        if (response.status === 204) {
          // The server says there is nothing more: stop, as EventSource does.
          this.close();
          return;
        }
        const type = response.headers.get("content-type") ?? "";
        if (!response.ok || !type.startsWith("text/event-stream")) {
          throw new Error(`HTTP ${response.status}`);
        }
        opened = true;
        this._delay = this.options.initialDelay ?? 1000;
        this._setState("open");
        this.emit("connected");
        await this._read(response.body, source);
        throw new Error("the stream ended");
      })
      .catch((error) => {
        if (source !== this.eventSource || this._state === "closed") return;
        this.emit("error", error);
        this.eventSource = null;
        if (opened && this._serverRetry !== undefined) {
          // As EventSource: after a stream that was open, the server's retry.
          this._setState("reconnecting");
          this._timer = setTimeout(() => this.connect(), this._serverRetry);
        } else {
          this._retryLater();
        }
      });
  }

  // WHATWG HTML's event stream parser, over a fetch body.
  async _read(body, source) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let type = "";
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done || source !== this.eventSource) return;
      buffer += value;
      for (;;) {
        const end = buffer.search(/[\r\n]/);
        if (end < 0 || (buffer[end] === "\r" && end === buffer.length - 1)) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (id !== null) this.lastEventId = id;
          if (data.length) {
            const message = { data: data.join("\n"), lastEventId: this.lastEventId ?? "" };
            this._deliver(type || "message", message);
          }
          data = [];
          type = "";
          id = null;
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") data.push(text);
        else if (field === "event") type = text;
        else if (field === "id" && !text.includes("\0")) id = text;
        else if (field === "retry" && /^\d+$/.test(text)) this._serverRetry = Number(text);
      }
    }
  }

  _address(token) {
    if (this.lastEventId === null && !token) return this.url;
    // EventSource sets Last-Event-ID only on its own reconnects; a new one
    // says where to resume with the query parameter oxian_tw reads too.
    const url = new URL(this.url, globalThis.location?.href);
    if (this.lastEventId !== null) url.searchParams.set("lastEventId", this.lastEventId);
    if (token) url.searchParams.set("token", token);
    return url.toString();
  }

  _retryLater() {
    this._setState("reconnecting");
    const max = this.options.maxDelay ?? 30000;
    const wait = Math.min(this._delay, max) * (0.5 + Math.random() / 2);
    this._delay = Math.min(this._delay * 2, max);
    this._timer = setTimeout(() => this.connect(), wait);
  }

  _stopTimer() {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  }

  _setState(state) {
    if (!STATES.includes(state) || state === this._state) return;
    this._state = state;
    this.emit("state", state);
  }
}

function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
