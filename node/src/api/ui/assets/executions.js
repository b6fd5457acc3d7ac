// Executions: a filterable list, newest first, updated live from the executions stream.
// Status, service and task filter on the node; requester and executor in the page.

import { get, sse, query } from "./api.js";
import { h, badge, shortId, time, duration, empty, card } from "./dom.js";

const STATUSES = ["", "Created", "InProgress", "Completed", "Failed"];

function matches(e, f, ctx) {
  if (f.status && e.status !== f.status) return false;
  if (f.service && e.service_hash !== f.service && ctx.names.get(e.service_hash) !== f.service) return false;
  if (f.task && e.task_key !== f.task) return false;
  if (f.requester && !String(e.requester).includes(f.requester)) return false;
  if (f.executor && !String(e.executor || "").includes(f.executor)) return false;
  return true;
}

function row(e, ctx) {
  const end = e.finished_at || (e.status === "InProgress" || e.status === "Created" ? null : e.created_at);
  const took = e.finished_at ? e.finished_at - (e.started_at || e.created_at) : null;
  return h("tr", { "data-id": e.id, "data-status": e.status },
    h("td", {}, h("a", { href: "#/executions/" + e.id, class: "mono" }, shortId(e.id, 12))),
    h("td", {}, badge(e.status)),
    h("td", {}, ctx.name(e.service_hash)),
    h("td", {}, e.task_key),
    h("td", { class: "mono", title: e.requester }, shortId(e.requester, 10)),
    h("td", { class: "mono", title: e.executor || "" }, shortId(e.executor, 10)),
    h("td", {}, time(e.created_at)),
    h("td", {}, took !== null ? duration(took) : end ? "–" : "running…"),
    h("td", { class: "error" }, e.error ? shortId(e.error, 60) : ""));
}

export async function render(root, ctx) {
  const { signal } = ctx;
  const f = {
    status: ctx.query.status || "", service: ctx.query.service || "", task: ctx.query.task || "",
    requester: ctx.query.requester || "", executor: ctx.query.executor || "",
  };
  const serverFilter = { status: f.status, service: f.service, task: f.task };
  const page = await get("/v1/executions" + query(Object.assign({ limit: 200 }, serverFilter)), signal);

  const input = (key, placeholder) => h("input", { name: key, value: f[key], placeholder, size: 14 });
  const form = h("form", { class: "filters", id: "filters" },
    h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: s === f.status }, s || "any status"))),
    input("service", "service (sid or hash)"), input("task", "task"),
    input("requester", "requester key"), input("executor", "executor key"),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "#/executions" }, "clear"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = {};
    for (const [k, v] of new FormData(form).entries()) if (v) q[k] = v;
    location.hash = "#/executions" + query(q);
  });

  const tbody = h("tbody", { id: "executions" });
  const rows = new Map();
  const put = (e, fresh) => {
    const old = rows.get(e.id);
    const tr = row(e, ctx);
    if (fresh) tr.classList.add("fresh");
    if (old) old.replaceWith(tr);
    else tbody.prepend(tr);
    rows.set(e.id, tr);
  };
  for (const e of page.executions.slice().reverse()) if (matches(e, f, ctx)) put(e, false);
  const none = empty("No execution matches.");
  none.hidden = rows.size > 0;
  const count = h("span", { class: "sub" }, "");
  const recount = () => { count.textContent = rows.size + " shown" + (page.next ? " (the newest 200, then live)" : ""); none.hidden = rows.size > 0; };
  recount();

  root.append(h("h1", {}, "Executions"), form,
    card(h("span", {}, "Executions ", count),
      h("table", {},
        h("thead", {}, h("tr", {}, ["id", "status", "service", "task", "requester", "executor", "created", "duration", "error"].map((c) => h("th", {}, c)))),
        tbody), none));

  sse("/v1/executions/stream" + query(serverFilter), signal, (name, e) => {
    if (name !== "execution" || !matches(e, f, ctx)) return;
    put(e, true);
    recount();
  }, ctx.setLive);
}
