// Events: a live tail, newest first, with a service filter.

import { get, sse, query } from "./api.js";
import { h, card, empty, time, shortId, json } from "./dom.js";

const KEEP = 500;

export async function render(root, ctx) {
  const { signal } = ctx;
  const service = ctx.query.service || "";
  const { events } = await get("/v1/events" + query({ service, limit: 100 }), signal);
  const select = h("select", { name: "service" },
    h("option", { value: "" }, "every service"),
    [...new Set(ctx.names.values())].sort().map((n) => h("option", { value: n, selected: n === service }, n)));
  if (service && ![...ctx.names.values()].includes(service)) select.append(h("option", { value: service, selected: true }, service));
  select.addEventListener("change", () => { location.hash = "#/events" + query({ service: select.value }); });
  const tbody = h("tbody", { id: "events" });
  const none = empty("No event yet: they appear here as services emit them.");
  const row = (e) => h("tr", { "data-id": e.id },
    h("td", {}, time(e.created_at)),
    h("td", {}, ctx.name(e.service_hash)),
    h("td", {}, h("strong", {}, e.key)),
    h("td", { class: "mono", title: e.instance_hash }, shortId(e.instance_hash, 10)),
    h("td", { class: "mono", title: e.emitter }, shortId(e.emitter, 10)),
    h("td", { class: "mono" }, json(e.data, 200)));
  const seen = new Set();
  for (const e of events.slice().reverse()) { seen.add(e.id); tbody.prepend(row(e)); }
  none.hidden = events.length > 0;
  root.append(h("h1", {}, "Events"),
    h("div", { class: "filters" }, h("label", {}, "Service ", select)),
    card("Live tail", h("table", {},
      h("thead", {}, h("tr", {}, ["time", "service", "event", "instance", "emitter", "data"].map((c) => h("th", {}, c)))),
      tbody), none));
  sse("/v1/events/stream" + query({ service }), signal, (name, e) => {
    if (name !== "event" || seen.has(e.id)) return;
    seen.add(e.id);
    const tr = row(e);
    tr.classList.add("fresh");
    tbody.prepend(tr);
    none.hidden = true;
    while (tbody.children.length > KEEP) tbody.lastElementChild.remove();
  }, ctx.setLive);
}
