// Calls to this node's Application API. The token lives in sessionStorage (this tab only,
// gone when it closes) and travels in the Authorization header, never in a URL.

const TOKEN_KEY = "mesg.token";

export class Unauthorized extends Error {}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  const t = token();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

/** GET a JSON answer; throws Unauthorized on 401, Error with the node's message otherwise. */
export async function get(path, signal) {
  const r = await fetch(path, { headers: headers(), signal, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized("the node wants its API token");
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try {
      const body = await r.json();
      if (body && body.message) msg = body.message;
    } catch (_) { /* not JSON */ }
    const e = new Error(msg);
    e.status = r.status;
    throw e;
  }
  return r.json();
}

/** GET, answering null for a 404 (a result not there yet, an execution gone). */
export async function getOrNull(path, signal) {
  try {
    return await get(path, signal);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Read newline-delimited JSON (container logs) until it ends or `signal` aborts. */
export async function ndjson(path, signal, onLine) {
  const r = await fetch(path, { headers: headers({ Accept: "application/x-ndjson" }), signal });
  if (r.status === 401) throw new Unauthorized("the node wants its API token");
  if (!r.ok) throw new Error(r.status + " " + r.statusText);
  await readLines(r.body, signal, (line) => {
    if (line.trim()) onLine(JSON.parse(line));
  });
}

async function readLines(body, signal, onLine) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        onLine(line);
      }
      if (signal && signal.aborted) break;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Follow a server-sent events stream with fetch (EventSource cannot send the token):
 * `onEvent(name, data)` per event, JSON-decoded. Reconnects with backoff until `signal`
 * aborts; `onState(connected)` reports the connection.
 */
export function sse(path, signal, onEvent, onState) {
  let delay = 500;
  const run = async () => {
    while (!signal.aborted) {
      try {
        const r = await fetch(path, {
          headers: headers({ Accept: "text/event-stream" }),
          signal,
          cache: "no-store",
        });
        if (r.status === 401) throw new Unauthorized("the node wants its API token");
        if (!r.ok) throw new Error(r.status + " " + r.statusText);
        if (onState) onState(true);
        delay = 500;
        let name = "message";
        let data = [];
        await readLines(r.body, signal, (line) => {
          if (line === "") {
            if (data.length) {
              let v = data.join("\n");
              try { v = JSON.parse(v); } catch (_) { /* plain text (lagged) */ }
              onEvent(name, v);
            }
            name = "message";
            data = [];
          } else if (line.startsWith(":")) {
            // a keep-alive comment
          } else if (line.startsWith("event:")) {
            name = line.slice(6).trim();
          } else if (line.startsWith("data:")) {
            data.push(line.slice(5).replace(/^ /, ""));
          }
        });
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof Unauthorized) {
          if (onState) onState(false, e);
          return;
        }
      }
      if (signal.aborted) return;
      if (onState) onState(false);
      await new Promise((ok) => setTimeout(ok, delay));
      delay = Math.min(delay * 2, 10000);
    }
  };
  run();
}
