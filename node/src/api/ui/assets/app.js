// The dashboard: login, navigation (hash routes), and the page lifecycle. Each page
// renders into <main> and follows its streams until the next navigation aborts them.

import { get, setToken, token, Unauthorized } from "./api.js";
import { h, fill, shortId, errorBox } from "./dom.js";
import * as overview from "./overview.js";
import * as peers from "./peers.js";
import * as services from "./services.js";
import * as executions from "./executions.js";
import * as execution from "./execution.js";
import * as processes from "./processes.js";
import * as events from "./events.js";

const NAV = [
  ["overview", "Overview"],
  ["peers", "Peers"],
  ["services", "Services"],
  ["executions", "Executions"],
  ["processes", "Processes"],
  ["events", "Events"],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const live = document.getElementById("live");
let current = null;
let node = null;

/** The page for a hash: "#/executions/ID?status=Failed" → [module, params, query]. */
function route(hash) {
  const [path, qs] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const q = Object.fromEntries(new URLSearchParams(qs || ""));
  switch (parts[0] || "overview") {
    case "overview": return ["overview", overview.render, {}, q];
    case "peers": return ["peers", peers.render, {}, q];
    case "services": return ["services", services.render, { id: parts[1] }, q];
    case "executions":
      return parts[1]
        ? ["executions", execution.render, { id: parts[1] }, q]
        : ["executions", executions.render, {}, q];
    case "processes": return ["processes", processes.render, { id: parts[1] }, q];
    case "runs": return ["processes", processes.renderRun, { id: parts[1] }, q];
    case "events": return ["events", events.render, {}, q];
    default: return [null, null, {}, q];
  }
}

/** Services by hash, for names (refreshed on each navigation, cheap). */
async function serviceNames(signal) {
  const names = new Map();
  try {
    const [local, net] = await Promise.all([
      get("/v1/services", signal),
      get("/v1/network/services", signal),
    ]);
    for (const s of net.services) if (s.sid) names.set(s.service_hash, s.sid);
    for (const s of local.services) names.set(s.hash, s.sid || s.name);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
  }
  return names;
}

/** true: a stream is connected; false: it was lost (reconnecting); null: a page without one. */
function setLive(on) {
  live.className = on ? "live on" : "live";
  live.textContent = on ? "live" : on === null ? "static" : "offline";
  live.title = on ? "following the node's streams" : on === null
    ? "this page shows the node as it was when loaded" : "the stream was lost: reconnecting";
}

async function show() {
  if (current) current.abort();
  const ctl = new AbortController();
  current = ctl;
  const [section, render, params, q] = route(location.hash);
  for (const a of nav.querySelectorAll("a")) {
    a.classList.toggle("active", a.dataset.page === section);
  }
  if (!render) {
    fill(main, h("p", { class: "error" }, "No such page."));
    return;
  }
  fill(main, h("p", { class: "loading" }, "Loading…"));
  setLive(null);
  try {
    const names = await serviceNames(ctl.signal);
    const ctx = {
      signal: ctl.signal,
      params,
      query: q,
      node,
      name: (hash) => names.get(hash) || shortId(hash, 12),
      names,
      setLive,
    };
    const page = h("div", { class: "page", "data-page": section });
    await render(page, ctx);
    if (!ctl.signal.aborted) fill(main, page);
  } catch (e) {
    if (ctl.signal.aborted) return;
    if (e instanceof Unauthorized) return login("The node refused the token.");
    fill(main, errorBox(e));
  }
}

function login(message) {
  if (current) current.abort();
  setToken("");
  nav.hidden = true;
  const input = h("input", {
    id: "token", type: "password", autocomplete: "current-password",
    placeholder: "API token", required: true,
  });
  const form = h("form", { class: "login", id: "login" },
    h("h2", {}, "Sign in to this node"),
    h("p", {}, "The node's API token is in DATA_DIR/api.token on its machine " +
      "(or the --api-token it was started with). It is kept in this tab only."),
    message ? h("p", { class: "error" }, message) : null,
    input,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    start();
  });
  fill(main, form);
  input.focus();
}

async function start() {
  if (!token()) return login();
  try {
    node = await get("/v1/node");
  } catch (e) {
    if (e instanceof Unauthorized) return login("The node refused the token.");
    return fill(main, errorBox(e));
  }
  fill(who, h("span", { title: node.peer_id }, "node " + shortId(node.peer_id, 16)),
    " · v" + node.version);
  nav.hidden = false;
  show();
}

fill(nav, NAV.map(([id, title]) => h("a", { href: "#/" + id, "data-page": id }, title)),
  h("button", {
    type: "button", class: "logout", title: "Forget the token in this tab",
    onclick: () => { setToken(""); fill(who); login(); },
  }, "Sign out"));
window.addEventListener("hashchange", () => { if (token() && node) show(); });
setLive(null);
start();
