// Building the page. Every value from the node goes in as text (textContent or a text
// node), never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** An HTML element: h("a", {href: "#/x", class: "c"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function shortId(id, n = 10) {
  if (!id) return "–";
  const t = String(id);
  return t.length > n + 2 ? t.slice(0, n) + "…" : t;
}

export function time(ms) {
  if (!ms) return "–";
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function duration(ms) {
  if (ms === undefined || ms === null || ms < 0) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  const s = Math.floor(ms / 1000);
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}

export function ago(ms) {
  if (!ms) return "–";
  return duration(Math.max(0, Date.now() - ms)) + " ago";
}

export function bytes(n) {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

/** Compact JSON, cut to `max` characters. */
export function json(v, max = 0) {
  const t = JSON.stringify(v);
  if (t === undefined) return "–";
  return max && t.length > max ? t.slice(0, max) + "…" : t;
}

/** A coloured label for a status word. */
export function badge(status) {
  const word = String(status || "unknown");
  return h("span", { class: "badge b-" + word.toLowerCase().replace(/[^a-z_]/g, "") }, word);
}

/** A table: columns [{title}], rows of cells (nodes or text); `rowAttrs(i)` per row. */
export function table(columns, rows, rowAttrs) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r, i) => h("tr", rowAttrs ? rowAttrs(i) : {}, r.map((c) => h("td", {}, c))))));
}

/** Key/value pairs as a definition list. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function card(title, ...body) {
  return h("section", { class: "card" }, h("h2", {}, title), body);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

export function errorBox(e) {
  return h("p", { class: "error" }, "Error: " + (e && e.message ? e.message : String(e)));
}

export function pre(v) {
  return h("pre", { class: "json" }, JSON.stringify(v, null, 2));
}

export function link(href, text, title) {
  return h("a", { href, title }, text);
}
