// Services: deployed services with their tasks and events, their instances and health,
// and each instance's recent logs.

import { get, ndjson } from "./api.js";
import { h, card, table, badge, empty, shortId, time, duration, facts, fill } from "./dom.js";

function params(map) {
  const keys = Object.keys(map || {});
  return keys.length ? keys.join(", ") : "–";
}

function logsButton(instance, signal) {
  const out = h("pre", { class: "logs", hidden: true });
  const button = h("button", { type: "button" }, "Show logs");
  button.addEventListener("click", async () => {
    out.hidden = false;
    fill(out, "Loading…");
    const lines = [];
    try {
      await ndjson("/v1/instances/" + encodeURIComponent(instance) + "/logs?tail=200", signal, (l) => {
        if (l.text !== undefined) lines.push((l.key !== "service" ? "[" + l.key + "] " : "") + l.text.replace(/\n$/, ""));
        else if (l.message) lines.push("(" + l.message + ")");
      });
      out.textContent = lines.length ? lines.join("\n") : "(no output)";
      out.scrollTop = out.scrollHeight;
    } catch (e) {
      out.textContent = "Could not read the logs: " + e.message;
    }
  });
  return h("div", {}, button, out);
}

export async function render(root, ctx) {
  const { signal } = ctx;
  const [services, instances] = await Promise.all([get("/v1/services", signal), get("/v1/instances", signal)]);
  root.append(h("h1", {}, "Services"));
  if (!services.services.length) {
    root.append(card("Deployed services", empty("No service is deployed on this node: mesg service deploy DIR --start.")));
  }
  const only = ctx.params.id;
  for (const s of services.services) {
    if (only && s.hash !== only && s.sid !== only) continue;
    const d = s.definition;
    const mine = instances.instances.filter((i) => i.service === s.hash);
    const tasks = Object.entries(d.tasks || {}).map(([k, t]) => [
      h("strong", {}, k), t.description || "", params(t.inputs), params(t.outputs),
      t.timeout_ms ? duration(t.timeout_ms) : "default",
    ]);
    const events = Object.entries(d.events || {}).map(([k, e]) => [h("strong", {}, k), e.description || "", params(e.data)]);
    const inst = mine.map((i) => {
      const st = i.state;
      return [
        h("span", { class: "mono", title: i.hash }, shortId(i.hash, 14)),
        h("div", {}, badge(st ? st.status : i.desired), st && st.reason ? h("div", { class: "sub" }, st.reason) : null),
        badge(i.connected ? "connected" : "not connected"),
        String(i.in_flight),
        st ? h("div", {}, st.containers.map((c) => h("div", { class: "sub" },
          c.key + ": " + c.state + (c.restart_count ? " (" + c.restart_count + " restarts)" : "")))) : "–",
        time(i.created_at),
        logsButton(i.hash, signal),
      ];
    });
    root.append(h("section", { class: "card service", "data-service": s.sid || s.name },
      h("h2", {}, (s.sid || s.name) + " ", h("span", { class: "sub mono" }, s.hash)),
      d.description ? h("p", {}, d.description) : null,
      facts([
        ["name", d.name],
        ["publisher", h("span", { class: "mono" }, s.sid_publisher || s.publisher)],
        ["package", shortId(s.package_hash, 16) + " (" + s.package_size + " bytes)"],
        ["deployed", time(s.deployed_at)],
        s.image ? ["image", s.image] : null,
      ]),
      h("h3", {}, "Tasks"),
      tasks.length ? table(["task", "description", "inputs", "outputs", "timeout"], tasks) : empty("No task."),
      h("h3", {}, "Events"),
      events.length ? table(["event", "description", "data"], events) : empty("No event."),
      h("h3", {}, "Instances"),
      inst.length ? table(["instance", "health", "task stream", "in flight", "containers", "created", "logs"], inst)
        : empty("Not running here.")));
  }
  ctx.setLive(null);
}
