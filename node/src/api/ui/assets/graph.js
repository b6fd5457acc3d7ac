// A process's steps as a graph: boxes in columns by depth, arrows from each step to the
// steps it runs (`after`), dashed red arrows to error branches (`on_error`). With a run,
// each box shows its step's status and links to the step's last execution.

import { s } from "./dom.js";

const W = 180, H = 56, GX = 64, GY = 20, PAD = 12;

function kindOf(step) {
  const k = step.kind || {};
  if (k.trigger) {
    const src = k.trigger.source || {};
    return src.event !== undefined ? "on event " + k.trigger.service + "." + src.event
      : "on result " + k.trigger.service + "." + src.result;
  }
  if (k.task) return "task " + k.task.service + "." + k.task.task;
  if (k.filter) return "filter";
  if (k.map) return "map";
  return Object.keys(k)[0] || "step";
}

function cut(t, n) {
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

/** The SVG of a process definition, coloured by `run` (a Run) when given. */
export function processGraph(def, run) {
  const steps = def.steps || [];
  const errorParent = {};
  for (const st of steps) {
    const t = st.kind && st.kind.task;
    if (t && t.on_error) errorParent[t.on_error] = st.key;
  }
  const depth = {};
  const edges = [];
  steps.forEach((st, i) => {
    let d = 0;
    if (st.after && depth[st.after] !== undefined) {
      d = depth[st.after] + 1;
      edges.push([st.after, st.key, false]);
    } else if (errorParent[st.key] && depth[errorParent[st.key]] !== undefined) {
      d = depth[errorParent[st.key]] + 1;
      edges.push([errorParent[st.key], st.key, true]);
    } else if (i > 0) {
      d = 1;
    }
    depth[st.key] = d;
  });
  const rows = {};
  const pos = {};
  for (const st of steps) {
    const d = depth[st.key];
    const r = rows[d] || 0;
    rows[d] = r + 1;
    pos[st.key] = { x: PAD + d * (W + GX), y: PAD + r * (H + GY) };
  }
  const cols = Math.max(0, ...Object.values(depth)) + 1;
  const maxRows = Math.max(1, ...Object.values(rows));
  const width = PAD * 2 + cols * W + (cols - 1) * GX;
  const height = PAD * 2 + maxRows * H + (maxRows - 1) * GY;

  const svg = s("svg", {
    class: "graph", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "steps of " + def.name,
  }, s("defs", {}, s("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));

  for (const [from, to, err] of edges) {
    const a = pos[from], b = pos[to];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    svg.appendChild(s("path", {
      class: err ? "edge err" : "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`,
      "marker-end": "url(#arrow)", "data-from": from, "data-to": to,
    }));
  }

  for (const st of steps) {
    const p = pos[st.key];
    const sr = run && run.steps ? run.steps[st.key] : null;
    const status = sr ? sr.status : run ? "pending" : "";
    let sub = kindOf(st);
    let third = "";
    if (sr) {
      third = status + (sr.attempts && sr.attempts.length ? " · " + sr.attempts.length + " attempt" + (sr.attempts.length > 1 ? "s" : "") : "");
      if (sr.waiting) third += " · " + sr.waiting;
    } else if (run) {
      third = "not reached";
    }
    const g = s("g", { class: "box" + (status ? " st-" + status : ""), "data-step": st.key, transform: `translate(${p.x},${p.y})` },
      s("title", {}, st.key + ": " + kindOf(st) + (sr && sr.error ? "\n" + sr.error : "")),
      s("rect", { width: W, height: H, rx: 6 }),
      s("text", { x: 10, y: 18, "font-weight": "600" }, cut(st.key, 24)),
      s("text", { x: 10, y: 34, class: "kind" }, cut(sub, 28)),
      third ? s("text", { x: 10, y: 49, class: "kind" }, cut(third, 28)) : null);
    const last = sr && sr.attempts && sr.attempts.length ? sr.attempts[sr.attempts.length - 1] : null;
    svg.appendChild(last ? s("a", { href: "#/executions/" + last.execution_id }, g) : g);
  }
  return svg;
}
