// Processes: each process's steps as a graph, its runs (live), and a run's steps with
// their executions.

import { get, sse } from "./api.js";
import { h, card, table, badge, empty, shortId, time, duration, facts, fill, json } from "./dom.js";
import { processGraph } from "./graph.js";

function runRow(r) {
  return [
    h("a", { href: "#/runs/" + r.id, class: "mono" }, shortId(r.id, 14)),
    badge(r.status),
    time(r.started_at),
    r.finished_at ? duration(r.finished_at - r.started_at) : "running…",
    String(Object.keys(r.steps || {}).length),
    r.cause ? String(r.cause.depth) : "–",
    r.error ? h("span", { class: "error" }, shortId(r.error, 80)) : "",
  ];
}

async function list(root, ctx) {
  const { processes } = await get("/v1/processes", ctx.signal);
  const rows = processes.map((p) => [
    h("a", { href: "#/processes/" + p.id }, p.name),
    h("span", { class: "mono sub" }, shortId(p.id, 14)),
    String(p.definition.steps.length),
    String(p.runs_running),
    String(p.max_depth),
    String(p.triggers_refused) + (p.last_refusal ? " (last: " + p.last_refusal.reason + ")" : ""),
    time(p.created_at),
  ]);
  root.append(h("h1", {}, "Processes"),
    card("Processes on this node (" + rows.length + ")", rows.length
      ? table(["name", "id", "steps", "runs running", "max depth", "triggers refused", "created"], rows)
      : empty("No process: mesg process create FILE.yml.")),
    ...processes.map((p) => card(p.name, processGraph(p.definition, null))));
  ctx.setLive(null);
}

export async function render(root, ctx) {
  if (!ctx.params.id) return list(root, ctx);
  const { signal } = ctx;
  const id = ctx.params.id;
  const [p, runs] = await Promise.all([
    get("/v1/processes/" + encodeURIComponent(id), signal),
    get("/v1/processes/" + encodeURIComponent(id) + "/runs?limit=50", signal),
  ]);
  const byId = new Map(runs.runs.map((r) => [r.id, r]));
  const tbody = h("tbody", { id: "runs" });
  const drawRuns = () => {
    const sorted = [...byId.values()].sort((a, b) => b.started_at - a.started_at).slice(0, 50);
    fill(tbody, sorted.map((r) => h("tr", { "data-run": r.id }, runRow(r).map((c) => h("td", {}, c)))));
  };
  drawRuns();
  const latest = h("div", {});
  const drawLatest = () => {
    const r = [...byId.values()].sort((a, b) => b.started_at - a.started_at)[0];
    fill(latest, r ? [h("p", {}, "Latest run ", h("a", { href: "#/runs/" + r.id, class: "mono" }, shortId(r.id, 14)), " ", badge(r.status)), processGraph(p.definition, r)]
      : processGraph(p.definition, null));
  };
  drawLatest();
  root.append(h("h1", {}, "Process ", p.name),
    card("Steps", latest, h("div", { class: "legend" }, "Arrows: the step runs after the one it comes from; dashed red: its error branch.")),
    card("Process", facts([
      ["id", h("span", { class: "mono" }, p.id)],
      ["created", time(p.created_at)],
      ["max depth", String(p.max_depth)],
      ["rate limit", p.definition.rate_limit ? p.definition.rate_limit.per_second + "/s, burst " + p.definition.rate_limit.burst : "none"],
      ["triggers refused", String(p.triggers_refused)],
      p.last_refusal ? ["last refusal", p.last_refusal.message] : null,
    ])),
    card("Runs", h("table", {},
      h("thead", {}, h("tr", {}, ["run", "status", "started", "duration", "steps", "depth", "error"].map((c) => h("th", {}, c)))),
      tbody)));
  sse("/v1/processes/" + encodeURIComponent(id) + "/logs", signal, (name, r) => {
    if (name !== "run") return;
    byId.set(r.id, r);
    drawRuns();
    drawLatest();
  }, ctx.setLive);
}

function stepRows(def, run, ctx) {
  return def.steps.map((st) => {
    const sr = run.steps[st.key];
    if (!sr) return [h("strong", {}, st.key), h("span", { class: "sub" }, "not reached"), "", "", "", ""];
    return [
      h("strong", {}, st.key),
      badge(sr.status),
      sr.attempts.length
        ? h("div", {}, sr.attempts.map((a, i) => h("div", {},
          h("a", { href: "#/executions/" + a.execution_id, class: "mono" }, "#" + (i + 1) + " " + shortId(a.execution_id, 12)),
          a.finished_at ? " " + duration(a.finished_at - a.started_at) : " running…",
          a.error ? h("span", { class: "error" }, " " + shortId(a.error, 60)) : null)))
        : "–",
      sr.finished_at ? duration(sr.finished_at - sr.started_at) : sr.retry_at ? "retry at " + time(sr.retry_at) : "…",
      sr.output === null ? "–" : h("span", { class: "mono" }, json(sr.output, 120)),
      sr.error || sr.waiting || "",
    ];
  });
}

export async function renderRun(root, ctx) {
  const { signal } = ctx;
  const id = ctx.params.id;
  const first = await get("/v1/runs/" + encodeURIComponent(id), signal);
  const p = await get("/v1/processes/" + encodeURIComponent(first.process), signal);
  const body = h("div", {});
  const draw = (run) => fill(body,
    h("h1", {}, "Run ", h("span", { class: "mono" }, run.id), " ", badge(run.status)),
    card("Steps of " + p.name, processGraph(p.definition, run)),
    card("Run", facts([
      ["process", h("a", { href: "#/processes/" + p.id }, p.name)],
      ["started", time(run.started_at)],
      ["finished", run.finished_at ? time(run.finished_at) + " (" + duration(run.finished_at - run.started_at) + ")" : "running"],
      run.trigger_execution ? ["triggered by", h("a", { href: "#/executions/" + run.trigger_execution, class: "mono" }, run.trigger_execution)] : null,
      run.cause ? ["causal depth", String(run.cause.depth)] : null,
      run.error ? ["error", h("span", { class: "error" }, run.error)] : null,
    ])),
    card("Steps and their executions", table(["step", "status", "executions", "took", "output", "error / waiting"], stepRows(p.definition, run, ctx))));
  draw(first);
  root.append(body);
  sse("/v1/processes/" + encodeURIComponent(p.id) + "/logs", signal, (name, r) => {
    if (name === "run" && r.id === id) draw(r);
  }, ctx.setLive);
}
