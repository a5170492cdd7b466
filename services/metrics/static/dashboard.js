"use strict";
// Polls the metrics service's JSON API and draws SVG charts; real data only, no placeholders.

const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d"];
const REFERENCE_COLORS = { random: "#999999", heuristic: "#c48f00", oracle: "#2a9d8f" };
const SVG_NS = "http://www.w3.org/2000/svg";
let pollMs = 1000;
let selectedRun = null;

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value) {
  return Number.isFinite(value) ? (Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(3)) : String(value);
}

// series: [{label, points: [[x, y], ...]}]; references: [{label, value}]
function drawChart(svg, series, references, xLabel = "episode") {
  svg.replaceChildren();
  const width = 640, height = 240, left = 44, right = 130, top = 10, bottom = 24;
  const xs = series.flatMap(s => s.points.map(p => p[0]));
  const ys = series.flatMap(s => s.points.map(p => p[1])).concat(references.map(r => r.value));
  if (xs.length === 0) {
    svg.appendChild(el("svg:text", { x: 20, y: 120, class: "axis-label" }, "no data yet"));
    return;
  }
  const xMin = Math.min(...xs), xMax = Math.max(...xs, xMin + 1);
  let yMin = Math.min(...ys), yMax = Math.max(...ys);
  if (yMax - yMin < 1e-9) { yMin -= 0.5; yMax += 0.5; }
  const sx = x => left + (x - xMin) / (xMax - xMin) * (width - left - right);
  const sy = y => top + (1 - (y - yMin) / (yMax - yMin)) * (height - top - bottom);
  svg.appendChild(el("svg:line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" }));
  svg.appendChild(el("svg:line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }));
  svg.appendChild(el("svg:text", { x: 2, y: top + 8, class: "axis-label" }, fmt(yMax)));
  svg.appendChild(el("svg:text", { x: 2, y: height - bottom, class: "axis-label" }, fmt(yMin)));
  svg.appendChild(el("svg:text", { x: left, y: height - 6, class: "axis-label" }, `${xLabel} ${xMin}`));
  svg.appendChild(el("svg:text", { x: width - right - 40, y: height - 6, class: "axis-label" }, String(xMax)));
  let legendY = top + 10;
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const path = s.points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    const line = el("svg:polyline", { points: path, class: "series", stroke: color, "data-label": s.label });
    line.dataset.points = String(s.points.length);
    svg.appendChild(line);
    svg.appendChild(el("svg:text", { x: width - right + 6, y: legendY, class: "legend", fill: color }, s.label));
    legendY += 14;
  });
  references.forEach(r => {
    const color = REFERENCE_COLORS[r.name] || "#666";
    svg.appendChild(el("svg:line", { x1: left, x2: width - right, y1: sy(r.value), y2: sy(r.value),
                                     class: "reference", stroke: color }));
    svg.appendChild(el("svg:text", { x: width - right + 6, y: legendY, class: "legend", fill: color }, r.label));
    legendY += 14;
  });
}

function curveSeries(run, field) {
  const series = [];
  for (const phase of run.phases) {
    for (const [task, points] of Object.entries(phase.curves)) {
      series.push({ label: `${phase.name.replace("PHASE_", "")} ${task}`, points: points.map(p => [p.episode, p[field]]) });
    }
  }
  return series;
}

function referenceLines(run) {
  const lines = [];
  for (const phase of run.phases) {
    for (const [task, refs] of Object.entries(phase.references)) {
      for (const [name, value] of Object.entries(refs)) {
        lines.push({ name, label: `${name} (${task})`, value });
      }
    }
  }
  return lines;
}

function renderTimeline(run) {
  const box = document.getElementById("timeline");
  box.replaceChildren();
  for (const phase of run.phases) {
    const a = phase.assessment;
    const cls = a.demote ? "phase demote" : a.ready_to_graduate ? "phase ready" : "phase";
    const verdict = a.demote ? "demote" : a.ready_to_graduate ? "graduate" : "not yet";
    box.appendChild(el("div", { class: cls, "data-phase": phase.name },
      `${phase.name.replace("PHASE_", "")}: ${phase.episodes} episodes, ${verdict}`));
  }
}

function renderCriteria(run) {
  const box = document.getElementById("criteria");
  box.replaceChildren();
  for (const phase of run.phases) {
    box.appendChild(el("div", {}, `${phase.name}: ${phase.assessment.reason}`));
    const table = el("table");
    for (const c of phase.assessment.criteria) {
      const row = el("tr", { class: c.passed ? "pass" : "fail" });
      row.append(el("td", {}, c.name), el("td", {}, fmt(c.value)), el("td", {}, `${c.comparison} ${fmt(c.threshold)}`),
                 el("td", {}, c.passed ? "pass" : "fail"));
      table.appendChild(row);
    }
    box.appendChild(table);
    const t = phase.trend;
    const projection = t.episodes_to_threshold < 0 ? "not approaching" : `${t.episodes_to_threshold} episodes to threshold`;
    box.appendChild(el("div", {}, `reward slope ${fmt(t.reward_slope)}/episode, ${projection}`));
  }
}

function renderSpend(run) {
  const box = document.getElementById("spend");
  box.replaceChildren();
  for (const phase of run.phases) {
    const s = phase.spend;
    const share = s.total_budget > 0 ? Math.min(s.total_spend / s.total_budget, 1) : 0;
    box.appendChild(el("div", {}, `${phase.name}: spent $${fmt(s.total_spend)} of $${fmt(s.total_budget)} budget, revenue $${fmt(s.total_revenue)}`));
    const bar = el("div", { class: "bar" });
    bar.appendChild(el("div", { style: `width: ${(share * 100).toFixed(1)}%` }));
    box.appendChild(bar);
  }
}

function renderList(id, items, text) {
  const list = document.getElementById(id);
  list.replaceChildren(...items.slice(-20).reverse().map(item => el("li", {}, text(item))));
  if (items.length === 0) list.appendChild(el("li", {}, "none"));
}

function renderLearner(run) {
  const svg = document.getElementById("learner-chart");
  const box = document.getElementById("learner");
  const learner = run.learner;
  if (!learner || learner.history.length === 0) {
    drawChart(svg, [], []);
    box.textContent = "no learner stats yet";
    return;
  }
  const lossNames = [...new Set(learner.history.flatMap(h => Object.keys(h.losses)))];
  const series = lossNames.map(name => ({ label: `loss ${name}`, points: learner.history.map(h => [h.policy_version, h.losses[name] ?? NaN]).filter(p => Number.isFinite(p[1])) }));
  series.push({ label: "entropy", points: learner.history.map(h => [h.policy_version, h.entropy]) });
  series.push({ label: "policy lag", points: learner.history.map(h => [h.policy_version, h.policy_lag_mean]) });
  drawChart(svg, series, [], "policy version");
  const last = learner.history[learner.history.length - 1];
  box.textContent = `${learner.algorithm} v${last.policy_version}: KL ${fmt(last.approx_kl)}, grad norm ${fmt(last.grad_norm)}, ` +
    `${fmt(last.samples_per_second)} samples/s, lag max ${last.policy_lag_max}, dropped stale batches ${learner.dropped_stale_batches}`;
}

function render(run) {
  renderTimeline(run);
  const references = referenceLines(run);
  drawChart(document.getElementById("reward-chart"), curveSeries(run, "normalized_reward"), references);
  drawChart(document.getElementById("roas-chart"), curveSeries(run, "roas"), []);
  renderSpend(run);
  renderCriteria(run);
  renderLearner(run);
  renderList("alerts", run.alerts, a => a.message);
  renderList("violations", run.violations, v => `${v.severity} ${v.rule} campaign ${v.campaign_id}: ${v.action_taken} ${fmt(v.amount)}`);
  document.getElementById("status").textContent = `run ${run.run_id}: ${run.episodes} episodes, ${run.current_phase}, updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
  try {
    const index = await (await fetch("/api/runs")).json();
    pollMs = index.poll_ms;
    const select = document.getElementById("run-select");
    const known = [...select.options].map(o => o.value);
    for (const runId of index.runs) {
      if (!known.includes(runId)) select.appendChild(el("option", { value: runId }, runId));
    }
    const wanted = new URLSearchParams(location.search).get("run");
    if (selectedRun === null) {
      // A run named in the address waits until it has data; otherwise show the latest run.
      if (wanted !== null) {
        if (index.runs.includes(wanted)) selectedRun = wanted;
      } else if (index.runs.length > 0) {
        selectedRun = index.runs[index.runs.length - 1];
      }
      if (selectedRun !== null) select.value = selectedRun;
    }
    if (selectedRun !== null) {
      const response = await fetch(`/api/runs/${encodeURIComponent(selectedRun)}`);
      if (response.ok) render(await response.json());
    }
  } catch (error) {
    document.getElementById("status").textContent = `metrics service unreachable: ${error}`;
  }
  setTimeout(refresh, pollMs);
}

document.getElementById("run-select").addEventListener("change", event => {
  selectedRun = event.target.value;
});
refresh();
