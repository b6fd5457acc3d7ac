// Overview: who the node is, its network, services and instances, executions per second
// (live), failures in the last hour, memory.

import { get, sse } from "./api.js";
import { h, card, facts, badge, duration, bytes, shortId, link } from "./dom.js";
import { RateChart } from "./chart.js";

const HOUR = 3600 * 1000;

export async function render(root, ctx) {
  const { signal } = ctx;
  const since = Date.now() - HOUR;
  const [node, peers, services, instances, recent, failed] = await Promise.all([
    get("/v1/node", signal),
    get("/v1/peers", signal),
    get("/v1/services", signal),
    get("/v1/instances", signal),
    get("/v1/executions?limit=1000", signal),
    get("/v1/executions?status=Failed&limit=1000", signal),
  ]);
  const loadedAt = Date.now();

  const chart = new RateChart(60);
  for (const e of recent.executions) if (e.finished_at && e.finished_at > loadedAt - 60000) chart.add(e.finished_at);
  const failedIds = new Set(failed.executions.filter((e) => (e.finished_at || e.created_at) >= since).map((e) => e.id));
  const failures = h("div", { class: "big", id: "failures" }, String(failedIds.size));
  const uptime = h("span", {}, "–");
  const tick = () => {
    if (node.uptime_ms !== undefined) uptime.textContent = duration(node.uptime_ms + Date.now() - loadedAt);
    chart.draw();
  };

  const connected = peers.peers.filter((p) => p.connected).length;
  const running = instances.instances.filter((i) => (i.state ? i.state.status : i.desired) === "running").length;
  const docker = node.docker || {};

  root.append(
    h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      card("Node", facts([
        ["peer id", h("span", { class: "mono" }, node.peer_id)],
        ["public key", h("span", { class: "mono" }, node.public_key)],
        ["version", node.version],
        ["uptime", uptime],
        ["API", node.api],
        ["data dir", node.data_dir],
        ["Docker", docker.available ? "Engine " + docker.version + " (API " + docker.api_version + ")" : h("span", { class: "error" }, docker.error || "unknown")],
        node.memory_rss_bytes !== undefined ? ["memory", bytes(node.memory_rss_bytes) + " resident"] : null,
      ])),
      card("Network",
        h("div", { class: "big" }, String(connected)),
        h("div", { class: "sub" }, "peers connected, " + peers.nodes.length + " nodes known from announcements"),
        h("p", {}, link("#/peers", "Peers →")),
        facts(node.listen_addrs.slice(0, 3).map((a, i) => [i ? "" : "listens on", h("span", { class: "mono" }, a)]))),
      card("Services",
        h("div", { class: "big" }, String(services.services.length)),
        h("div", { class: "sub" }, "deployed here; " + running + " of " + instances.instances.length + " instances running"),
        h("ul", {}, services.services.slice(0, 8).map((s) =>
          h("li", {}, link("#/services/" + s.hash, s.sid || s.name), " ",
            h("span", { class: "sub mono" }, shortId(s.hash, 12))))),
        h("p", {}, link("#/services", "Services →"))),
      card("Failures, last hour", failures,
        h("div", { class: "sub" }, "executions that failed on or through this node"),
        h("p", {}, link("#/executions?status=Failed", "Failed executions →")))),
    card("Executions per second (live)", chart.canvas, chart.label),
    card("Instances", instances.instances.length
      ? h("ul", {}, instances.instances.map((i) => h("li", {},
        (i.sid || shortId(i.service, 12)) + " ", badge(i.state ? i.state.status : i.desired), " ",
        badge(i.connected ? "connected" : "not connected"), " ",
        h("span", { class: "sub" }, i.in_flight + " in flight"))))
      : h("p", { class: "empty" }, "No instance on this node.")),
  );

  tick();
  const timer = setInterval(tick, 1000);
  signal.addEventListener("abort", () => clearInterval(timer));
  const seen = new Set();
  sse("/v1/executions/stream", signal, (name, e) => {
    if (name !== "execution") return;
    if (e.status === "Completed" || e.status === "Failed") {
      if (seen.has(e.id)) return;
      seen.add(e.id);
      chart.add(Date.now());
      if (e.status === "Failed" && !failedIds.has(e.id)) {
        failedIds.add(e.id);
        failures.textContent = String(failedIds.size);
      }
    }
  }, ctx.setLive);
}
