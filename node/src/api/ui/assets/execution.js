// One execution: its facts, the timeline of its transitions, inputs and outputs, the
// signed result and its verification, and why it is not running (its diagnosis).

import { get, getOrNull, sse, query } from "./api.js";
import { h, card, facts, badge, pre, time, duration, table, shortId, empty, fill } from "./dom.js";

function timeline(e, proof) {
  const items = [["Created", e.created_at, "requested by " + shortId(e.requester, 16), ""]];
  if (e.started_at) items.push(["Started", e.started_at, e.executor ? "on " + shortId(e.executor, 16) : "", ""]);
  if (e.finished_at) {
    items.push([e.status, e.finished_at, e.error || "", e.status === "Failed" ? "bad" : "ok"]);
  }
  if (proof) items.push(["Result signed", proof.header.issued_at, "by " + shortId(proof.header.signer, 16), "ok"]);
  items.sort((a, b) => a[1] - b[1]);
  let prev = e.created_at;
  return h("ol", { class: "timeline" }, items.map(([what, at, detail, cls]) => {
    const gap = at - prev;
    prev = at;
    return h("li", { class: cls }, h("strong", {}, what), " ", h("span", { class: "sub" }, time(at) + (gap > 0 ? " (+" + duration(gap) + ")" : "")),
      detail ? h("div", { class: "sub" }, detail) : null);
  }));
}

function verification(e, proof, check) {
  if (!proof) {
    return empty(e.status === "Completed" || e.status === "Failed"
      ? "This node keeps no signed result for it." : "No result yet: it has not ended.");
  }
  const hd = proof.header;
  return h("div", { id: "verification" },
    facts([
      ["verified by this node", check ? badge(check.valid ? "valid" : "invalid") : "–"],
      ["signer", h("span", { class: "mono" }, hd.signer)],
      ["signer is the executor", badge(e.executor && hd.signer === e.executor ? "yes" : "no")],
      check && check.outcome ? ["signed outcome", badge(check.outcome)] : null,
      ["domain", hd.domain],
      ["issued", time(hd.issued_at)],
      ["valid until", time(hd.expires_at)],
      ["signature", h("span", { class: "mono" }, shortId(proof.signature, 40))],
      check && check.note ? ["note", check.note] : null,
      check && check.problems.length ? ["problems", h("span", { class: "error" }, check.problems.join("; "))] : null,
    ]),
    h("p", { class: "sub" }, "The node checked the ed25519 signature just now, that its signer is the executor the result names, " +
      "and that the result answers this execution. `mesg executions verify " + e.id + "` checks it again anywhere."));
}

function diagnosis(why) {
  if (!why) return empty("No diagnosis.");
  const peers = why.peers.map((p) => [
    h("span", { class: "mono", title: p.peer_id }, shortId(p.peer_id, 20)),
    badge(p.verdict), p.code || "", p.detail || "", p.at ? time(p.at) : "–",
  ]);
  return h("div", {},
    h("p", {}, badge(why.state), " ", h("strong", { id: "why-summary" }, why.summary)),
    facts([
      ["known nodes", why.known_nodes + " (" + why.without_service + " without the service)"],
      ["attempts", String(why.attempts)],
      why.last_error ? ["last error", why.last_error] : null,
      why.next_attempt_at ? ["next attempt", time(why.next_attempt_at)] : null,
      why.patience_until ? ["gives up at", time(why.patience_until)] : null,
      why.queued_tasks !== null && why.queued_tasks !== undefined ? ["queued tasks", String(why.queued_tasks)] : null,
    ]),
    peers.length ? table(["provider", "verdict", "code", "detail", "observed"], peers)
      : h("p", { class: "sub" }, "No provider considered."));
}

export async function render(root, ctx) {
  const { signal } = ctx;
  const id = ctx.params.id;
  const body = h("div", {});
  const draw = async () => {
    const [e, why] = await Promise.all([
      get("/v1/executions/" + encodeURIComponent(id), signal),
      getOrNull("/v1/executions/" + encodeURIComponent(id) + "/why", signal),
    ]);
    const ended = e.status === "Completed" || e.status === "Failed";
    const base = "/v1/executions/" + encodeURIComponent(id);
    const [proof, check] = ended
      ? await Promise.all([getOrNull(base + "/result", signal), getOrNull(base + "/verification", signal)])
      : [null, null];
    fill(body,
      h("h1", {}, "Execution ", h("span", { class: "mono" }, e.id), " ", badge(e.status)),
      h("div", { class: "cols" },
        card("Execution", facts([
          ["service", h("a", { href: "#/services/" + e.service_hash }, ctx.name(e.service_hash))],
          ["task", e.task_key],
          ["requester", h("span", { class: "mono" }, e.requester)],
          ["requester node", h("span", { class: "mono" }, e.requester_node)],
          ["executor", h("span", { class: "mono" }, e.executor || "–")],
          ["instance", h("span", { class: "mono" }, e.instance_hash || "–")],
          ["timeout", duration(e.timeout_ms)],
          e.parent ? ["parent", h("a", { href: "#/executions/" + e.parent, class: "mono" }, e.parent)] : null,
          e.process ? ["process step", h("span", {}, h("a", { href: "#/processes/" + e.process.process }, "process " + shortId(e.process.process, 14)),
            " · ", h("a", { href: "#/runs/" + e.process.run }, "run " + shortId(e.process.run, 14)), " · step " + e.process.step)] : null,
          e.tags && e.tags.length ? ["tags", e.tags.join(", ")] : null,
          e.idempotency_key ? ["idempotency key", e.idempotency_key] : null,
          e.cause ? ["causal depth", String(e.cause.depth)] : null,
          e.error ? ["error", h("span", { class: "error" }, e.error)] : null,
        ])),
        card("Timeline", timeline(e, proof))),
      h("div", { class: "cols" }, card("Inputs", pre(e.inputs)), card("Outputs", e.outputs === null ? empty(ended ? "None." : "Not yet.") : pre(e.outputs))),
      card("Signed result", verification(e, proof, check)),
      card("Why isn't it running?", diagnosis(why)));
    return e;
  };
  const e = await draw();
  root.append(body);
  let pending = null;
  sse("/v1/executions/stream" + query({ service: e.service_hash }), signal, (name, x) => {
    if (name !== "execution" || x.id !== id || pending) return;
    pending = setTimeout(() => { pending = null; draw().catch(() => {}); }, 200);
  }, ctx.setLive);
  // The diagnosis changes without the execution changing: refresh it while it waits.
  const timer = setInterval(() => {
    const st = body.querySelector("h1 .badge");
    if (st && (st.textContent === "Created" || st.textContent === "InProgress")) draw().catch(() => {});
  }, 3000);
  signal.addEventListener("abort", () => { clearInterval(timer); if (pending) clearTimeout(pending); });
}
