// Herald dashboard: polls /dashboard/data every 2 s and draws small hand-written SVG charts (no library).
// The server sends totals and bucket counts; rates and the latency of the last interval come from the
// difference between two polls. Text from the data goes in through textContent only, never as markup.
(function () {
  "use strict";

  const POLL_MS = 2000;
  const HISTORY = 90; // points kept: three minutes at one poll every 2 s
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#1a73e8", "#2e7d32", "#f9ab00", "#c62828", "#8e24aa", "#00897b", "#6d4c41", "#5f6368"];
  const OUTCOME_COLORS = { DELIVERED: "#2e7d32", SUPPRESSED: "#9aa0a6", FAILED: "#c62828" };
  const $ = (id) => document.getElementById(id);

  const history = { t: [], in: [], applied: [], delivered: [], applyP50: [], applyP99: [], deliveryP99: [] };
  let previous = null;
  let polls = 0;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function clear(svg) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
  }

  function size(svg) {
    const box = svg.viewBox.baseVal;
    return { w: box.width, h: box.height };
  }

  function fmt(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e4) return (value / 1e3).toFixed(1) + "k";
    return value >= 100 ? String(Math.round(value)) : String(Math.round(value * 10) / 10);
  }

  function empty(svg, message) {
    const { w, h } = size(svg);
    svg.appendChild(el("text", { x: w / 2, y: h / 2, "text-anchor": "middle", class: "empty" }, message));
  }

  function legend(svg, names, colors) {
    let x = 40;
    names.forEach((name, i) => {
      svg.appendChild(el("rect", { x, y: 4, width: 10, height: 10, fill: colors[i] }));
      const label = el("text", { x: x + 14, y: 13 }, name);
      svg.appendChild(label);
      x += 20 + 7 * String(name).length;
    });
  }

  // series: [{name, color, values: [number|null]}], all as long as history.t.
  function lineChart(svg, series) {
    clear(svg);
    const { w, h } = size(svg);
    const left = 40, right = 8, top = 20, bottom = 16;
    const values = series.flatMap((s) => s.values.filter((v) => v !== null));
    svg.dataset.points = String(values.length);
    if (values.length === 0) {
      empty(svg, "no data yet");
      return;
    }
    const max = Math.max(1, ...values) * 1.1;
    const n = Math.max(2, history.t.length);
    const x = (i) => left + ((w - left - right) * i) / (n - 1);
    const y = (v) => top + (h - top - bottom) * (1 - v / max);
    svg.appendChild(el("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, class: "axis" }));
    svg.appendChild(el("line", { x1: left, y1: top, x2: left, y2: h - bottom, class: "axis" }));
    svg.appendChild(el("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, fmt(max)));
    svg.appendChild(el("text", { x: left - 4, y: h - bottom, "text-anchor": "end" }, "0"));
    svg.appendChild(el("text", { x: w - right, y: h - 2, "text-anchor": "end" }, "now"));
    for (const s of series) {
      let d = "";
      let pen = false;
      s.values.forEach((v, i) => {
        if (v === null) {
          pen = false;
          return;
        }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1) + " ";
        pen = true;
      });
      if (d) svg.appendChild(el("path", { d: d.trim(), class: "line", stroke: s.color, "data-series": s.name }));
      // A lone point between gaps draws no line: mark the latest value so it is always visible.
      const last = s.values.length - 1;
      if (last >= 0 && s.values[last] !== null) {
        svg.appendChild(el("circle", { cx: x(last), cy: y(s.values[last]), r: 3, fill: s.color }));
      }
    }
    legend(svg, series.map((s) => s.name), series.map((s) => s.color));
  }

  // bars: [{label, segments: [{name, value, color}]}], stacked horizontally.
  function barChart(svg, bars) {
    clear(svg);
    const { w, h } = size(svg);
    const left = 110, right = 50, top = 22;
    const shown = bars.filter((b) => b.segments.some((s) => s.value > 0));
    svg.dataset.bars = String(shown.length);
    if (shown.length === 0) {
      empty(svg, "none yet");
      return;
    }
    const max = Math.max(...shown.map((b) => b.segments.reduce((a, s) => a + s.value, 0)));
    const band = Math.min(28, (h - top) / shown.length);
    const names = [];
    const colors = [];
    shown.forEach((bar, i) => {
      const y = top + i * band;
      svg.appendChild(el("text", { x: left - 6, y: y + band / 2 + 3, "text-anchor": "end" }, bar.label));
      let x = left;
      let total = 0;
      for (const seg of bar.segments) {
        if (seg.value <= 0) continue;
        const width = ((w - left - right) * seg.value) / max;
        const rect = el("rect", { x, y: y + 2, width: Math.max(1, width), height: band - 4, fill: seg.color });
        rect.appendChild(el("title", {}, seg.name + ": " + seg.value));
        svg.appendChild(rect);
        x += width;
        total += seg.value;
        if (!names.includes(seg.name)) {
          names.push(seg.name);
          colors.push(seg.color);
        }
      }
      svg.appendChild(el("text", { x: x + 4, y: y + band / 2 + 3 }, fmt(total)));
    });
    legend(svg, names, colors);
  }

  function columnChart(svg, entries) {
    clear(svg);
    const { w, h } = size(svg);
    const left = 40, right = 8, top = 12, bottom = 28;
    svg.dataset.bars = String(entries.length);
    if (entries.length === 0) {
      empty(svg, "no partitions reported");
      return;
    }
    const max = Math.max(1, ...entries.map(([, v]) => v));
    const band = (w - left - right) / entries.length;
    svg.appendChild(el("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, class: "axis" }));
    svg.appendChild(el("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, fmt(max)));
    entries.forEach(([label, value], i) => {
      const height = ((h - top - bottom) * value) / max;
      const x = left + i * band;
      const rect = el("rect", {
        x: x + band * 0.15, y: h - bottom - Math.max(2, height), width: band * 0.7, height: Math.max(2, height), fill: COLORS[0],
      });
      rect.appendChild(el("title", {}, label + ": " + value));
      svg.appendChild(rect);
      const short = String(label).split(":").pop();
      svg.appendChild(el("text", { x: x + band / 2, y: h - bottom + 12, "text-anchor": "middle" }, short));
    });
  }

  // The q-quantile of fixed buckets (bounds in seconds, +Inf last), in ms; as Prometheus' histogram_quantile.
  function quantileMs(bounds, counts, q) {
    const total = counts.reduce((a, c) => a + c, 0);
    if (total <= 0) return null;
    const rank = q * total;
    let seen = 0;
    for (let i = 0; i < counts.length; i++) {
      if (counts[i] > 0 && seen + counts[i] >= rank) {
        if (i === bounds.length) return bounds[bounds.length - 1] * 1000;
        const lower = i ? bounds[i - 1] : 0;
        return (lower + (bounds[i] - lower) * ((rank - seen) / counts[i])) * 1000;
      }
      seen += counts[i];
    }
    return bounds[bounds.length - 1] * 1000;
  }

  function delta(now, before) {
    return now.map((c, i) => Math.max(0, c - ((before && before[i]) || 0)));
  }

  function deliveredTotal(data) {
    let total = 0;
    for (const outcomes of Object.values(data.deliveries)) total += outcomes.DELIVERED || 0;
    return total;
  }

  function deliveryCounts(data) {
    // Every channel's produce -> delivery buckets summed: one latency line for all deliveries.
    const sum = new Array(data.buckets_s.length + 1).fill(0);
    for (const lat of Object.values(data.latency.produce_to_delivery)) {
      lat.counts.forEach((c, i) => { sum[i] += c; });
    }
    return sum;
  }

  function push(key, value) {
    history[key].push(value);
    if (history[key].length > HISTORY) history[key].shift();
  }

  function record(data) {
    const dt = previous ? Math.max(0.001, (data.at_ms - previous.at_ms) / 1000) : null;
    const rate = (now, before) => (dt === null ? null : Math.max(0, now - before) / dt);
    const bounds = data.buckets_s;
    const apply = data.latency.produce_to_apply.counts;
    const delivery = deliveryCounts(data);
    push("t", data.at_ms);
    push("in", previous ? rate(data.events_in, previous.events_in) : null);
    push("applied", previous ? rate(data.applied, previous.applied) : null);
    push("delivered", previous ? rate(deliveredTotal(data), deliveredTotal(previous)) : null);
    const applyWindow = delta(apply, previous && previous.latency.produce_to_apply.counts);
    const deliveryWindow = delta(delivery, previous && deliveryCounts(previous));
    push("applyP50", quantileMs(bounds, applyWindow, 0.5));
    push("applyP99", quantileMs(bounds, applyWindow, 0.99));
    push("deliveryP99", quantileMs(bounds, deliveryWindow, 0.99));
  }

  function render(data) {
    const last = (key) => history[key][history[key].length - 1];
    const perSecond = (key) => (last(key) === null ? "" : fmt(last(key)) + "/s");
    $("t-in").textContent = fmt(data.events_in);
    $("r-in").textContent = perSecond("in");
    $("t-applied").textContent = fmt(data.applied);
    $("r-applied").textContent = perSecond("applied");
    $("t-delivered").textContent = fmt(deliveredTotal(data));
    $("r-delivered").textContent = perSecond("delivered");
    $("t-dlq").textContent = fmt(Object.values(data.dead_lettered).reduce((a, v) => a + v, 0));
    $("t-lag").textContent = fmt(Object.values(data.lag).reduce((a, v) => a + v, 0));
    const apply = data.latency.produce_to_apply;
    $("t-apply").textContent = apply.count ? fmt(apply.p50_ms) + " / " + fmt(apply.p99_ms) + " ms" : "–";

    lineChart($("chart-throughput"), [
      { name: "in", color: COLORS[0], values: history.in },
      { name: "applied", color: COLORS[1], values: history.applied },
      { name: "delivered", color: COLORS[2], values: history.delivered },
    ]);
    lineChart($("chart-latency"), [
      { name: "apply p50", color: COLORS[1], values: history.applyP50 },
      { name: "apply p99", color: COLORS[0], values: history.applyP99 },
      { name: "delivery p99", color: COLORS[3], values: history.deliveryP99 },
    ]);
    const outcomes = ["DELIVERED", "SUPPRESSED", "FAILED"];
    barChart($("chart-deliveries"), Object.entries(data.deliveries).map(([channel, counts]) => ({
      label: channel,
      segments: [...outcomes, ...Object.keys(counts).filter((o) => !outcomes.includes(o))].map((o, i) => ({
        name: o, value: counts[o] || 0, color: OUTCOME_COLORS[o] || COLORS[(i + 4) % COLORS.length],
      })),
    })));
    barChart($("chart-dlq"), Object.entries(data.dead_lettered).map(([stage, n]) => ({
      label: stage, segments: [{ name: "records", value: n, color: COLORS[3] }],
    })));
    const lag = Object.entries(data.lag).sort((a, b) => {
      const pa = Number(String(a[0]).split(":").pop());
      const pb = Number(String(b[0]).split(":").pop());
      return pa - pb || String(a[0]).localeCompare(String(b[0]));
    });
    columnChart($("chart-lag"), lag);
  }

  function status(state, text) {
    const node = $("status");
    node.dataset.state = state;
    node.dataset.polls = String(polls);
    node.textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch("/dashboard/data", { cache: "no-store" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
      record(data);
      render(data);
      previous = data;
      polls += 1;
      status("live", data.sources + " sources · updated " + new Date(data.at_ms).toLocaleTimeString());
    } catch (err) {
      status("error", "cannot read metrics: " + String(err && err.message ? err.message : err));
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
