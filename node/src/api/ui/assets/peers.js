// Peers: the connections, and the nodes known from their signed announcements (what they
// provide, their load, round-trip time), and the reputation this node keeps of the peers it
// used (outcomes, verdicts, bans: docs/verification.md).

import { get } from "./api.js";
import { h, card, table, badge, empty, shortId, duration } from "./dom.js";

export async function render(root, ctx) {
  const { signal } = ctx;
  const draw = async () => {
    const [list, net] = await Promise.all([get("/v1/peers", signal), get("/v1/network/services", signal)]);
    const load = new Map();
    for (const s of net.services) {
      for (const p of s.providers) load.set(p.peer_id, (load.get(p.peer_id) || 0) + p.in_flight);
    }
    const conn = new Map(list.peers.map((p) => [p.peer_id, p]));
    const nodes = list.nodes.map((n) => {
      const c = conn.get(n.peer_id);
      return [
        h("span", { class: "mono", title: n.peer_id }, shortId(n.peer_id, 20)),
        h("div", { class: "mono sub" }, (c && c.addrs.length ? c.addrs : n.addrs).slice(0, 3).map((a) => h("div", {}, a))),
        badge(c && c.connected ? "connected" : "not connected"),
        n.rtt_us !== null && n.rtt_us !== undefined ? (n.rtt_us / 1000).toFixed(2) + " ms" : "–",
        n.services.length
          ? h("div", {}, n.services.map((s) => h("div", {}, s.sid || shortId(s.service_hash, 12),
            h("span", { class: "sub" }, " · " + s.in_flight + " in flight"))))
          : h("span", { class: "sub" }, "nothing"),
        String(load.get(n.peer_id) || 0),
        duration(n.expires_in_ms),
      ];
    });
    const known = new Set(list.nodes.map((n) => n.peer_id));
    const others = list.peers.filter((p) => !known.has(p.peer_id)).map((p) => [
      h("span", { class: "mono", title: p.peer_id }, shortId(p.peer_id, 20)),
      h("div", { class: "mono sub" }, p.addrs.slice(0, 3).map((a) => h("div", {}, a))),
      badge(p.connected ? "connected" : "not connected"),
    ]);
    const rep = (list.reputation || []).map((r) => [
      h("span", { class: "mono", title: r.node }, shortId(r.node, 20)),
      String(r.successes), String(r.failures), String(r.timeouts),
      r.agreed + " / " + r.disagreed,
      r.rtt_us !== null && r.rtt_us !== undefined ? (r.rtt_us / 1000).toFixed(2) + " ms" : "–",
      Math.round(r.sample_rate * 100) + " %",
      r.banned
        ? h("span", {}, badge("banned"), h("span", { class: "sub" }, r.ban_reason ? " " + r.ban_reason : ""))
        : badge(r.distrusted ? "last (recent disagreement)" : "ok"),
    ]);
    root.replaceChildren(
      h("h1", {}, "Peers"),
      card("Nodes (" + nodes.length + ")", nodes.length
        ? table(["peer id", "addresses", "connection", "rtt", "provides", "load (in flight)", "announcement expires in"], nodes)
        : empty("No other node has announced itself yet.")),
      card("Other connections (" + others.length + ")", others.length
        ? table(["peer id", "addresses", "connection"], others)
        : empty("None: every connected peer has announced itself.")),
      card("Reputation (" + rep.length + ")", rep.length
        ? table(["node", "results", "failures", "timeouts", "agreed / disagreed", "rtt", "verified", "status"], rep)
        : empty("No peer used as a provider yet. `mesg peers ban KEY` bans one.")));
  };
  await draw();
  const timer = setInterval(() => draw().catch(() => {}), 5000);
  signal.addEventListener("abort", () => clearInterval(timer));
  ctx.setLive(true);
}
