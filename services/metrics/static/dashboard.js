"use strict";
// Polls the metrics service's JSON API and draws plotly.js charts; real data only, no placeholders.
// Every episode and learner update of the selected run is fetched once, page by page, and kept here;
// each poll asks only for what came after. Smoothing is TensorBoard's: a debiased exponential moving
// average whose weight the slider sets.

const COLORS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d", "#ff9da6"];
const REFERENCE_COLORS = { random: "#999999", heuristic: "#c48f00", oracle: "#2a9d8f" };
const PAGE = 5000;
const MAX_PAGES_PER_POLL = 20;  // a long run loads over a few polls instead of one long stall
const MAX_DRAWN = 4000;  // points per drawn line; longer series are shown as bucket means
const LEARNER_STATS = [
  { key: "entropy", title: "entropy" },
  { key: "approx_kl", title: "approx. KL" },
  { key: "grad_norm", title: "grad norm" },
  { key: "samples_per_second", title: "samples / s" },
  { key: "policy_lag", title: "policy lag (versions)" },
];
const PLOT_CONFIG = { displayModeBar: false, responsive: true };

let pollMs = 1000;
let selectedRun = null;
let cache = null;  // the selected run's episodes and learner updates, as fetched so far
let lastView = null;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmt(value) {
  return Number.isFinite(value) ? (Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(3)) : String(value);
}

function smoothingWeight() {
  return Number(document.getElementById("smoothing").value);
}

// TensorBoard's smoothing: EMA started at 0 and divided by (1 - w^n) so the start is not pulled to 0.
function smooth(values, weight) {
  let last = 0, count = 0;
  return values.map(value => {
    if (value === null || !Number.isFinite(value)) return null;
    count += 1;
    last = last * weight + (1 - weight) * value;
    return weight > 0 ? last / (1 - Math.pow(weight, count)) : value;
  });
}

// At most MAX_DRAWN points: bucket means of y, x at each bucket's end.
function thin(xs, ys) {
  if (xs.length <= MAX_DRAWN) return [xs, ys];
  const size = Math.ceil(xs.length / MAX_DRAWN);
  const outX = [], outY = [];
  for (let i = 0; i < xs.length; i += size) {
    let sum = 0, n = 0;
    for (let j = i; j < Math.min(i + size, xs.length); j++) {
      if (ys[j] !== null && Number.isFinite(ys[j])) { sum += ys[j]; n += 1; }
    }
    outX.push(xs[Math.min(i + size, xs.length) - 1]);
    outY.push(n > 0 ? sum / n : null);
  }
  return [outX, outY];
}

// A raw line (faint) and its smoothed line for one series, as TensorBoard draws them.
function smoothedTraces(name, xs, ys, color, weight, legend = true) {
  const [rawX, rawY] = thin(xs, ys);
  const [smoothX, smoothY] = thin(xs, smooth(ys, weight));
  return [
    { x: rawX, y: rawY, name: `${name} (raw)`, mode: "lines", line: { color, width: 1 }, opacity: 0.25,
      legendgroup: name, showlegend: false, hoverinfo: "skip", meta: { raw: true, count: xs.length } },
    { x: smoothX, y: smoothY, name, mode: "lines", line: { color, width: 2 }, legendgroup: name,
      showlegend: legend, meta: { raw: false, count: xs.length } },
  ];
}

function layout(xTitle, extra = {}) {
  return {
    margin: { l: 50, r: 10, t: 10, b: 36 }, xaxis: { title: { text: xTitle }, zeroline: false },
    yaxis: { zeroline: false, automargin: true }, legend: { x: 1.01, y: 1, xanchor: "left" },
    showlegend: true, hovermode: "x unified", ...extra,
  };
}

function drawEmpty(div, text) {
  if (div.dataset.state !== "empty") {
    if (div.classList.contains("js-plotly-plot")) Plotly.purge(div);
    div.replaceChildren(el("div", { class: "empty" }, text));
    div.dataset.state = "empty";
  }
}

function draw(div, traces, plotLayout, count) {
  if (div.dataset.state === "empty") div.replaceChildren();
  div.dataset.state = "drawn";
  div.dataset.count = String(count);
  Plotly.react(div, traces, plotLayout, PLOT_CONFIG);
}

// ---- data ------------------------------------------------------------------------------------

function emptyCache(runId) {
  return { runId, episodes: { total: 0, tasks: [], columns: {} }, learner: { total: 0, algorithm: "", columns: {}, losses: {} } };
}

function append(target, source, count) {
  for (const [name, values] of Object.entries(source)) {
    if (!(name in target)) target[name] = new Array(count).fill(null);
    target[name].push(...values);
  }
}

async function fetchPages(path, store, merge) {
  for (let pages = 0; pages < MAX_PAGES_PER_POLL; pages++) {
    const response = await fetch(`${path}?start=${store.total}&limit=${PAGE}`);
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    const page = await response.json();
    if (page.start !== store.total) throw new Error(`${path}: page starts at ${page.start}, not ${store.total}`);
    const count = store.total;
    merge(page, count);
    store.total = page.end;
    if (page.end >= page.total) return;
  }
}

async function loadHistory(runId) {
  if (cache === null || cache.runId !== runId) cache = emptyCache(runId);
  const base = `/api/runs/${encodeURIComponent(runId)}`;
  const episodes = cache.episodes, learner = cache.learner;
  await fetchPages(`${base}/episodes`, episodes, (page, count) => {
    episodes.tasks = page.tasks;
    append(episodes.columns, page.columns, count);
  });
  await fetchPages(`${base}/learner`, learner, (page, count) => {
    learner.algorithm = page.algorithm;
    append(learner.columns, page.columns, count);
    append(learner.losses, page.losses, count);
  });
}

// ---- charts ----------------------------------------------------------------------------------

function phaseShapes(columns, run) {
  // A dotted line where the run entered another phase.
  const names = Object.fromEntries(run.phases.map(p => [p.phase, p.name.replace("PHASE_", "")]));
  const shapes = [], annotations = [];
  const phases = columns.phase || [];
  for (let i = 1; i < phases.length; i++) {
    if (phases[i] !== phases[i - 1]) {
      const x = columns.episode[i];
      shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { dash: "dot", color: "#555" } });
      annotations.push({ x, y: 1, xref: "x", yref: "paper", text: names[phases[i]] || `phase ${phases[i]}`, showarrow: false, xanchor: "left", font: { size: 10 } });
    }
  }
  return { shapes, annotations };
}

function episodeChart(id, field, run, withReferences) {
  const div = document.getElementById(id);
  const { tasks, columns, total } = cache.episodes;
  if (total === 0) { drawEmpty(div, "no episodes yet"); return; }
  const weight = smoothingWeight();
  const traces = [];
  const referencesShown = new Set();  // one legend entry per reference kind, not per task
  tasks.forEach((task, index) => {
    const xs = [], ys = [];
    for (let i = 0; i < columns.task.length; i++) {
      if (columns.task[i] === index) { xs.push(columns.episode[i]); ys.push(columns[field][i]); }
    }
    const color = COLORS[index % COLORS.length];
    traces.push(...smoothedTraces(task, xs, ys, color, weight));
    if (withReferences && xs.length > 0) {
      for (const phase of run.phases) {
        for (const [name, value] of Object.entries(phase.references[task] || {})) {
          traces.push({ x: [xs[0], xs[xs.length - 1]], y: [value, value], name: name, mode: "lines",
                        line: { dash: "dash", width: 1.2, color: REFERENCE_COLORS[name] || "#666" },
                        legendgroup: `reference-${name}`, showlegend: !referencesShown.has(name),
                        meta: { reference: name, task } });
          referencesShown.add(name);
        }
      }
    }
  });
  draw(div, traces, layout("episode of the run", phaseShapes(columns, run)), total);
}

function learnerCharts() {
  const box = document.getElementById("learner-charts");
  const { columns, losses, total } = cache.learner;
  if (total === 0) { box.replaceChildren(el("div", { class: "empty" }, "no learner stats yet")); box.dataset.state = "empty"; return; }
  if (box.dataset.state === "empty") { box.replaceChildren(); box.dataset.state = "drawn"; }
  const weight = smoothingWeight();
  const stats = Object.keys(losses).map(name => ({ key: `loss-${name}`, title: `loss: ${name}`, series: [[name, losses[name]]] }))
    .concat(LEARNER_STATS.map(stat => ({
      ...stat,
      series: stat.key === "policy_lag" ? [["mean", columns.policy_lag_mean], ["max", columns.policy_lag_max]]
                                        : [[stat.title, columns[stat.key]]],
    })));
  const xs = columns.policy_version;
  for (const stat of stats) {
    const id = `learner-${stat.key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
    let div = document.getElementById(id);
    if (div === null) {
      const figure = el("figure", { "data-stat": stat.key });
      figure.appendChild(el("figcaption", {}, stat.title));
      div = el("div", { id, class: "chart learner-chart", "data-stat": stat.key });
      figure.appendChild(div);
      box.appendChild(figure);
    }
    const traces = stat.series.flatMap(([name, ys], i) => smoothedTraces(name, xs, ys, COLORS[i % COLORS.length], weight,
                                                                        stat.series.length > 1));
    draw(div, traces, layout("policy version", { showlegend: stat.series.length > 1 }), total);
  }
  const last = total - 1;
  document.getElementById("learner").textContent =
    `${cache.learner.algorithm} v${xs[last]}: ${total} updates; last KL ${fmt(columns.approx_kl[last])}, ` +
    `grad norm ${fmt(columns.grad_norm[last])}, ${fmt(columns.samples_per_second[last])} samples/s, ` +
    `lag max ${columns.policy_lag_max[last]}` +
    (lastView && lastView.learner ? `, dropped stale batches ${lastView.learner.dropped_stale_batches}` : "");
}

function drawCharts() {
  if (cache === null || lastView === null) return;
  episodeChart("reward-chart", "normalized_reward", lastView, true);
  episodeChart("roas-chart", "roas", lastView, false);
  learnerCharts();
}

// ---- the rest of the page --------------------------------------------------------------------

function renderNow(run) {
  const now = run.current;
  const level = now.curriculum_levels > 0 ? `, level ${now.curriculum_level} of ${now.curriculum_levels}` : "";
  const task = now.task ? `, task ${now.task}` : "";
  const box = document.getElementById("phase-now");
  box.textContent = `${now.phase.replace("PHASE_", "")}${task}${level}`;
  box.dataset.phase = now.phase;
}

function renderTimeline(run) {
  const box = document.getElementById("timeline");
  box.replaceChildren();
  for (const phase of run.phases) {
    const a = phase.assessment;
    const current = phase.name === run.current_phase ? " current" : "";
    const cls = (a.demote ? "phase demote" : a.ready_to_graduate ? "phase ready" : "phase") + current;
    const verdict = a.demote ? "demote" : a.ready_to_graduate ? "graduate" : "not yet";
    box.appendChild(el("div", { class: cls, "data-phase": phase.name },
      `${phase.name.replace("PHASE_", "")}${current ? " (now)" : ""}: ${phase.episodes} episodes, ${verdict}`));
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

function render(run) {
  lastView = run;
  renderNow(run);
  renderTimeline(run);
  drawCharts();
  renderSpend(run);
  renderCriteria(run);
  renderList("alerts", run.alerts, a => a.message);
  renderList("violations", run.violations, v => `${v.severity} ${v.rule} campaign ${v.campaign_id}: ${v.action_taken} ${fmt(v.amount)}`);
  document.getElementById("status").textContent =
    `run ${run.run_id}: ${run.episodes} episodes, updated ${new Date().toLocaleTimeString()}`;
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
      if (response.ok) {
        const view = await response.json();
        await loadHistory(selectedRun);
        render(view);
      }
    }
  } catch (error) {
    document.getElementById("status").textContent = `metrics service unreachable: ${error}`;
  }
  setTimeout(refresh, pollMs);
}

document.getElementById("run-select").addEventListener("change", event => {
  selectedRun = event.target.value;
  cache = null;
});
document.getElementById("smoothing").addEventListener("input", event => {
  document.getElementById("smoothing-value").textContent = Number(event.target.value).toFixed(2);
  drawCharts();
});
refresh();
