// A small live bar chart on a canvas: events per second over the last `span` seconds.

import { h } from "./dom.js";

export class RateChart {
  constructor(span = 60) {
    this.span = span;
    this.counts = new Map(); // second → count
    this.canvas = h("canvas", { class: "chart", width: 600, height: 120, "aria-label": "executions per second" });
    this.label = h("div", { class: "sub" }, "0 executions/s");
  }

  /** Count one event at time `ms` (default now). */
  add(ms) {
    const sec = Math.floor((ms || Date.now()) / 1000);
    this.counts.set(sec, (this.counts.get(sec) || 0) + 1);
  }

  /** Redraw; call every second. */
  draw() {
    const now = Math.floor(Date.now() / 1000);
    for (const k of this.counts.keys()) if (k < now - this.span) this.counts.delete(k);
    const values = [];
    for (let i = this.span - 1; i >= 0; i--) values.push(this.counts.get(now - i) || 0);
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(200, c.clientWidth || 600);
    const hgt = c.clientHeight || 120;
    if (c.width !== Math.round(w * ratio)) { c.width = Math.round(w * ratio); c.height = Math.round(hgt * ratio); }
    const g = c.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const max = Math.max(1, ...values);
    const bw = w / this.span;
    g.strokeStyle = "#eaeef2";
    g.beginPath();
    for (const f of [0.5, 1]) { g.moveTo(0, hgt - f * (hgt - 14)); g.lineTo(w, hgt - f * (hgt - 14)); }
    g.stroke();
    g.fillStyle = "#1f6feb";
    values.forEach((v, i) => {
      const bh = (v / max) * (hgt - 14);
      g.fillRect(i * bw + 1, hgt - bh, Math.max(1, bw - 2), bh);
    });
    g.fillStyle = "#656d76";
    g.font = "11px system-ui, sans-serif";
    g.fillText("max " + max + "/s", 4, 11);
    const last5 = values.slice(-5).reduce((a, b) => a + b, 0) / 5;
    this.label.textContent = last5.toFixed(1) + " executions/s (last 5 s), " +
      values.reduce((a, b) => a + b, 0) + " in the last " + this.span + " s";
  }
}
