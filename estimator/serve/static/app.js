// joules-estimate what-if explorer. Every number shown comes from the JSON endpoints (estimator/serve/web.py),
// which call the Python API; the page only formats them. The one computation here is the latency slider's pick:
// the lowest-energy configuration within the limit among those the API returned, with the API's tie rule
// (estimator planning.min_energy: energy, then latency, then fewer GPUs), so moving the slider needs no request.
"use strict";

const STATIC = window.JOULES_STATIC || null;
const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#882255"];
const LABELS = {
  energy_per_token_joules: "J/token", energy_per_request_joules: "J/response", energy_per_item_joules: "J/item",
  median_itl_ms: "median ITL (ms)", batch_latency_s: "batch latency (s)", avg_power_watts: "power (W)",
  output_throughput_tokens_per_sec: "tokens/s", tokens_per_sec_per_watt: "tokens/s/W", items_per_sec: "items/s",
  total_gpus: "total GPUs",
};
const state = { catalog: null, options: null, frontier: null, hfConfig: null, hfName: null, pick: {}, timings: [] };
window.__joules = state;
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------------------------------------ formatting
function fmt(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  const size = Math.abs(value);
  if (size >= 1000) return Math.round(value).toLocaleString("en-US");
  if (size === 0) return "0";
  return String(Number(value.toPrecision(4)));
}
function label(name, family, task) {
  if (name === "energy_per_item_joules") return `J/${itemName(task)}`;
  if (LABELS[name]) return LABELS[name];
  return name.replace(/_/g, " ").replace(/ kwh$/, " (kWh)").replace(/ kw$/, " (kW)").replace(/ usd$/, " ($)");
}
function itemName(task) {
  const spec = state.catalog && state.catalog.tasks.find((t) => t.key === task);
  if (spec && spec.modality === "text-to-video") return "video";
  if (spec && spec.modality === "text-to-image") return "image";
  return "item";
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
function num(value, attrs = {}) {
  return el("span", { class: "num", "data-value": value === null || value === undefined ? "" : String(value),
    text: fmt(value), ...attrs });
}
function metricCell(metric, name) {
  const cell = el("td", { "data-metric": name });
  if (!metric) { cell.textContent = "–"; return cell; }
  cell.append(num(metric.value, { class: "num v" }), " ",
    el("span", { class: "band" }, "[", num(metric.p10, { class: "num p10" }), "–", num(metric.p90, { class: "num p90" }), "]"));
  return cell;
}

// ------------------------------------------------------------------------------------------------------ API
async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) };
  const response = await fetch(path, init);
  let data;
  try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
  if (!response.ok) {
    const error = new Error(data.error || `HTTP ${response.status}`);
    error.field = data.field;
    throw error;
  }
  return data;
}
function clearErrors(panel) {
  for (const node of document.querySelectorAll(`#${panel} .err`)) node.textContent = "";
}
function showError(ids, message) {
  const target = ids.map((id) => id && $(id)).find((node) => node);
  target.textContent = message;
}

// ------------------------------------------------------------------------------------------------ frontier
function taskSpec() { return state.catalog.tasks.find((t) => t.key === $("f-task").value); }
function isDiffusion() { const spec = taskSpec(); return Boolean(spec && spec.kind === "diffusion"); }

function frontierRequest() {
  const body = { model: $("f-model").value.trim() || state.hfName, task: $("f-task").value,
    gpus: [...document.querySelectorAll("#f-gpus input:checked")].map((n) => n.value) };
  const fields = isDiffusion() ? ["steps", "resolution", "frames"] : ["input_tokens", "output_tokens", "precision"];
  for (const name of fields) {
    const node = $(`f-${name}`);
    const value = node.value.trim();
    if (value === "" || node.closest("label").hidden) continue;
    body[name] = node.type === "number" ? Number(value) : value;
  }
  if (state.hfConfig) body.hf_config = state.hfConfig;
  return body;
}

async function refreshFrontier() {
  const started = performance.now();
  clearErrors("panel-frontier");
  const body = frontierRequest();
  if (!body.model) { showError(["err-model"], "choose a model or upload a config.json"); return; }
  if (!body.gpus.length) { showError(["err-gpus"], "choose at least one GPU"); return; }
  const seq = (state.seq = (state.seq || 0) + 1);  // only the latest request's answer is drawn
  try {
    const answer = await api("/api/frontier", body);
    if (seq !== state.seq) return;
    state.frontier = answer;
  } catch (error) {
    if (seq !== state.seq) return;
    showError([`err-${error.field}`, "err-frontier"], error.message);
    state.frontier = null;
    Plotly.purge("frontier-chart");
    $("frontier-picks").replaceChildren();
    return;
  }
  setSliderRange();
  await renderFrontier();
  recordTiming("frontier", started);
}

async function recordTiming(kind, started) {
  await new Promise((resolve) => requestAnimationFrame(() => resolve()));
  const ms = performance.now() - started;
  state.timings.push({ kind, ms });
  $("frontier-timing").textContent = `${kind === "slider" ? "slider" : "update"}: ${ms.toFixed(0)} ms`;
}

// Log-axis ticks at 1, 2 and 5 x 10^k labelled with their full value (plotly labels minor log ticks by digit only).
function logTicks(values) {
  const finite = values.filter((v) => Number.isFinite(v) && v > 0);
  const lo = Math.min(...finite), hi = Math.max(...finite);
  const ticks = [];
  for (let power = Math.floor(Math.log10(lo)); power <= Math.ceil(Math.log10(hi)); power += 1) {
    for (const digit of [1, 2, 5]) {
      const tick = digit * 10 ** power;
      if (tick >= lo / 1.5 && tick <= hi * 1.5) ticks.push(Number(tick.toPrecision(1)));
    }
  }
  return { tickmode: "array", tickvals: ticks, ticktext: ticks.map(fmt) };
}

function allConfigurations() {
  return (state.frontier ? state.frontier.estimates : []).flatMap((e) => e.configurations.map((p) => [e, p]));
}
function setSliderRange() {
  const latencies = allConfigurations().map(([e, p]) => p.metrics[e.latency_metric].value);
  const slider = $("f-limit");
  slider.dataset.lo = Math.min(...latencies);
  slider.dataset.hi = Math.max(...latencies);
}
function currentLimit() {
  const slider = $("f-limit");
  const position = Number(slider.value);
  if (position >= Number(slider.max) || !slider.dataset.lo) return null;
  const lo = Math.log(Number(slider.dataset.lo)), hi = Math.log(Number(slider.dataset.hi));
  return Math.exp(lo + (position / Number(slider.max)) * (hi - lo));
}

// Moves the slider to the position nearest a latency limit (for scripts and the screenshot/benchmark tools).
function setLimit(value) {
  const slider = $("f-limit");
  const lo = Math.log(Number(slider.dataset.lo)), hi = Math.log(Number(slider.dataset.hi));
  slider.value = String(Math.round(((Math.log(value) - lo) / (hi - lo)) * Number(slider.max)));
  return onSlider();
}

function pickWithin(est, limit) {
  const energy = est.energy_metric, latency = est.latency_metric;
  const candidates = est.configurations.filter((p) => limit === null || p.metrics[latency].value <= limit);
  const order = candidates.map((p, i) => [p, i]);
  order.sort(([a, i], [b, j]) => (a.metrics[energy].value - b.metrics[energy].value)
    || (a.metrics[latency].value - b.metrics[latency].value)
    || (a.configuration.num_gpus - b.configuration.num_gpus) || (i - j));
  return order.length ? order[0][0] : null;
}
function batchOf(configuration) {
  return configuration.max_num_seqs !== null && configuration.max_num_seqs !== undefined
    ? configuration.max_num_seqs : configuration.batch_size;
}

// The starred point of one GPU: its lowest-energy configuration within the limit (empty when none qualifies).
function starData(est, limit, hover) {
  const pick = pickWithin(est, limit);
  if (!pick) return { x: [], y: [], customdata: [] };
  return { x: [pick.metrics[est.latency_metric].value], y: [pick.metrics[est.energy_metric].value],
    customdata: hover([pick]) };
}

function limitMarks(limit) {
  if (limit === null) return { shapes: [], annotations: [] };
  return { shapes: [{ type: "line", xref: "x", yref: "paper", x0: limit, x1: limit, y0: 0, y1: 1,
    line: { color: "#444", width: 1.5, dash: "dash" } }],
  annotations: [{ x: Math.log10(limit), y: 1, xref: "x", yref: "paper", text: `limit ${fmt(limit)}`,
    showarrow: false, yanchor: "bottom", font: { size: 11 } }] };
}

function showLimit(limit) {
  $("limit-readout").dataset.value = limit === null ? "" : String(limit);
  $("limit-readout").textContent = limit === null ? "no limit" : `≤ ${fmt(limit)}`;
}

function traces(limit) {
  const out = [];
  state.stars = [];
  state.frontier.estimates.forEach((est, index) => {
    if (!est.configurations.length) return;
    const color = PALETTE[index % PALETTE.length];
    const energy = est.energy_metric, latency = est.latency_metric;
    const x = (list) => list.map((p) => p.metrics[latency].value);
    const y = (list, key = "value") => list.map((p) => p.metrics[energy][key]);
    const rate = est.family === "diffusion" ? "items_per_sec" : "tokens_per_sec_per_watt";
    const hover = (list) => list.map((p) => [p.configuration.gpu_model, p.configuration.num_gpus,
      batchOf(p.configuration), p.metrics.avg_power_watts.value, (p.metrics[rate] || {}).value,
      p.metrics[energy].p10, p.metrics[energy].p90]);
    const unit = label(energy, est.family, est.task);
    const template = `%{customdata[1]} x %{customdata[0]}, batch %{customdata[2]}<br>${unit} %{y:.4g} ` +
      `[%{customdata[5]:.4g}–%{customdata[6]:.4g}]<br>${label(latency)} %{x:.4g}<br>power %{customdata[3]:,.0f} W` +
      `<br>${label(rate)} %{customdata[4]:.4g}<extra>${est.gpu_model}</extra>`;
    const front = est.frontier;
    out.push({ x: x(front), y: y(front, "p10"), mode: "lines", line: { width: 0, color }, hoverinfo: "skip",
      showlegend: false, legendgroup: est.gpu_model });
    out.push({ x: x(front), y: y(front, "p90"), mode: "lines", line: { width: 0, color }, fill: "tonexty",
      fillcolor: color + "26", hoverinfo: "skip", name: `${est.gpu_model} p10–p90`, legendgroup: est.gpu_model,
      showlegend: false });
    out.push({ x: x(est.configurations), y: y(est.configurations), mode: "markers", name: `${est.gpu_model} all`,
      marker: { color, size: 6, opacity: 0.35 }, customdata: hover(est.configurations), hovertemplate: template,
      legendgroup: est.gpu_model, showlegend: false });
    out.push({ x: x(front), y: y(front), mode: "lines+markers", name: `${est.gpu_model} (band p10–p90)`,
      line: { color, width: 2 }, marker: { color, size: 7 }, customdata: hover(front), hovertemplate: template,
      legendgroup: est.gpu_model });
    state.stars.push({ index: out.length, est, hover });
    out.push({ ...starData(est, limit, hover), mode: "markers", name: `${est.gpu_model} min energy`,
      hovertemplate: template, legendgroup: est.gpu_model, showlegend: false,
      marker: { symbol: "star", size: 18, color, line: { color: "#000", width: 1.5 } } });
  });
  out.push({ x: [null], y: [null], mode: "markers", name: "min energy (within the limit)",
    marker: { symbol: "star", size: 14, color: "#fff", line: { color: "#000", width: 1.5 } }, hoverinfo: "skip" });
  return out;
}

async function renderFrontier() {
  const estimates = state.frontier.estimates.filter((e) => e.configurations.length);
  for (const error of state.frontier.errors) showError(["err-gpus"], $("err-gpus").textContent
    ? `${$("err-gpus").textContent} | ${error.error}` : error.error);
  if (!estimates.length) { Plotly.purge("frontier-chart"); $("frontier-picks").replaceChildren(); return; }
  const limit = currentLimit();
  const first = estimates[0];
  $("limit-label").textContent = `Limit on ${label(first.latency_metric)}`;
  showLimit(limit);
  const points = allConfigurations();
  const energies = points.flatMap(([e, p]) => [p.metrics[e.energy_metric].p10, p.metrics[e.energy_metric].p90]);
  const layout = { margin: { l: 70, r: 20, t: 24, b: 50 }, height: 430, hovermode: "closest",
    xaxis: { type: "log", title: { text: label(first.latency_metric) }, gridcolor: "#e5e5e5",
      ...logTicks(points.map(([e, p]) => p.metrics[e.latency_metric].value)) },
    yaxis: { type: "log", title: { text: label(first.energy_metric, first.family, first.task) },
      gridcolor: "#e5e5e5", ...logTicks(energies) },
    legend: { orientation: "h", y: -0.18 }, paper_bgcolor: "#fff", plot_bgcolor: "#fff", ...limitMarks(limit) };
  await Plotly.react("frontier-chart", traces(limit), layout, { displaylogo: false, responsive: true });
  renderPicks(limit);
}

function renderPicks(limit) {
  const table = $("frontier-picks");
  const estimates = state.frontier.estimates.filter((e) => e.configurations.length);
  const first = estimates[0];
  const names = [first.energy_metric, first.latency_metric,
    ...Object.keys(first.configurations[0].metrics).filter((n) => n !== first.energy_metric && n !== first.latency_metric)];
  const head = el("tr", {}, el("th", { text: limit === null ? "min energy" : "min energy within limit" }),
    el("th", { text: "GPUs" }), el("th", { text: "batch" }),
    ...names.map((n) => el("th", { text: `${label(n, first.family, first.task)} [p10–p90]` })));
  const rows = [];
  let best = null;
  state.pick = {};
  for (const est of estimates) {
    const pick = pickWithin(est, limit);
    state.pick[est.gpu_model] = pick;
    if (pick && (!best || pick.metrics[est.energy_metric].value < best.metrics[est.energy_metric].value)) best = pick;
  }
  for (const est of estimates) {
    const pick = state.pick[est.gpu_model];
    if (!pick) {
      rows.push(el("tr", { "data-gpu": est.gpu_model }, el("td", { text: est.gpu_model }),
        el("td", { colspan: names.length + 2, text: "nothing within the limit" })));
      continue;
    }
    const c = pick.configuration;
    rows.push(el("tr", { "data-gpu": est.gpu_model, class: pick === best ? "best" : null },
      el("td", { text: `${pick === best ? "★ " : ""}${est.gpu_model}` }), el("td", {}, num(c.num_gpus)),
      el("td", {}, num(batchOf(c))), ...names.map((n) => metricCell(pick.metrics[n], n))));
  }
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const warnings = [...new Set(estimates.flatMap((e) => e.warnings))];
  table.append(el("caption", { text: warnings.length ? `warnings: ${warnings.slice(0, 3).join("; ")}` : "" }));
}

// The slider redraws only the starred points, the limit line and the table (the frontier itself is unchanged).
async function onSlider() {
  if (!state.frontier || !state.stars || !state.stars.length) return;
  const started = performance.now();
  const limit = currentLimit();
  showLimit(limit);
  const stars = state.stars.map(({ est, hover }) => starData(est, limit, hover));
  await Plotly.update("frontier-chart", { x: stars.map((d) => d.x), y: stars.map((d) => d.y),
    customdata: stars.map((d) => d.customdata) }, limitMarks(limit), state.stars.map((d) => d.index));
  renderPicks(limit);
  recordTiming("slider", started);
}

// ---------------------------------------------------------------------------------------------- upload
async function onUpload(event) {
  clearErrors("panel-frontier");
  const file = event.target.files[0];
  if (!file) return;
  if (file.size > 256000) { showError(["err-hf_config"], "config.json is larger than 256 KB"); return; }
  let parsed;
  try { parsed = JSON.parse(await file.text()); } catch (e) {
    showError(["err-hf_config"], `${file.name}: not valid JSON`); return;
  }
  try {
    const answer = await api("/api/model-config", { hf_config: parsed, model: $("f-model").value.trim() || null });
    state.hfConfig = parsed;
    state.hfName = answer.model;
    $("f-model").value = answer.model;
    $("config-status").textContent = `uploaded: ${answer.model} (${answer.spec.kind}, ` +
      `${fmt(answer.spec.total_params_billions)} B params)`;
    refreshFrontier();
  } catch (error) {
    showError(["err-hf_config"], error.message);
  }
}

// ------------------------------------------------------------------------------------------------ what-if
function whatIfRequest() {
  const read = (prefix) => {
    const out = {};
    for (const name of ["gpu", "num_gpus", "batch", "precision"]) {
      const node = $(`${prefix}-${name}`);
      const value = node.value.trim();
      if (value === "" || (name === "precision" && isDiffusion())) continue;
      out[name] = node.type === "number" ? Number(value) : value;
    }
    return out;
  };
  const top = frontierRequest();
  const base = { model: top.model, task: top.task, ...read("w") };
  for (const name of ["input_tokens", "output_tokens", "steps", "resolution", "frames"]) {
    if (top[name] !== undefined) base[name] = top[name];
  }
  if (top.precision !== undefined && base.precision === undefined) base.precision = top.precision;
  const body = { base, changes: read("c") };
  if (state.hfConfig) body.hf_config = state.hfConfig;
  return body;
}

function fromPick() {
  const picks = Object.values(state.pick).filter(Boolean);
  if (!picks.length) return;
  const energy = state.frontier.estimates[0].energy_metric;
  const best = picks.reduce((a, b) => (b.metrics[energy].value < a.metrics[energy].value ? b : a));
  $("w-gpu").value = best.configuration.gpu_model;
  $("w-num_gpus").value = best.configuration.num_gpus;
  $("w-batch").value = batchOf(best.configuration);
}

async function runWhatIf() {
  clearErrors("panel-whatif");
  const body = whatIfRequest();
  let data;
  try { data = await api("/api/what-if", body); } catch (error) {
    const side = error.field && body.changes[error.field] !== undefined ? "c" : "w";
    showError([error.field && `err-${side}-${error.field}`, `err-${error.field}`, "err-whatif"], error.message);
    return;
  }
  renderWhatIf(data);
}

function renderWhatIf(data) {
  const result = data.what_if;
  const side = (prediction) => {
    const c = prediction.configuration;
    return `${c.num_gpus} x ${c.gpu_model}, batch ${batchOf(c)}${c.weight_precision ? `, ${c.weight_precision}` : ""}`;
  };
  const head = el("tr", {}, el("th", { text: "metric" }), el("th", { text: `before: ${side(result.base)}` }),
    el("th", { text: `after: ${side(result.changed)}` }), el("th", { text: "change" }));
  const rows = Object.entries(result.deltas).map(([name, delta]) => el("tr", { "data-metric": name },
    el("td", { text: label(name, result.family, result.base.configuration.task) }),
    metricCell(result.base.metrics[name], name), metricCell(result.changed.metrics[name], name),
    el("td", { class: "delta" }, delta.percent === null ? "–" : num(delta.percent, { class: "num pct" }),
      delta.percent === null ? "" : "%")));
  $("whatif-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const reasons = [["before", result.base], ["after", result.changed]].filter(([, p]) => p.status !== "ok")
    .map(([name, p]) => `${name}: ${p.reason}`);
  $("err-whatif").textContent = reasons.join(" | ");
  renderWaterfall(data.attribution, data.attribution_error);
}

function renderWaterfall(attribution, why) {
  if (!attribution) {
    Plotly.purge("whatif-waterfall");
    $("whatif-summary").textContent = why ? `attribution not available: ${why}` : "";
    return;
  }
  const shown = attribution.deltas.filter((d) => Math.abs(d.delta_log) >= 0.005);
  const rest = attribution.deltas.filter((d) => Math.abs(d.delta_log) < 0.005);
  const items = shown.map((d) => [`${d.group} ×${fmt(d.multiplier)}`, d.delta_log]);
  if (rest.length) {
    const sum = rest.reduce((total, d) => total + d.delta_log, 0);
    items.push([`${rest.length} smaller items ×${fmt(Math.exp(sum))}`, sum]);
  }
  let value = attribution.base.prediction;
  const steps = items.map(([, log]) => { const next = value * Math.exp(log); const step = next - value; value = next; return step; });
  const unit = `${label(attribution.quantity, attribution.base.family, attribution.base.configuration.task)}`;
  const trace = { type: "waterfall", orientation: "h", measure: ["absolute", ...items.map(() => "relative"), "total"],
    y: ["before", ...items.map(([name]) => name), "after"], x: [attribution.base.prediction, ...steps, 0],
    text: [fmt(attribution.base.prediction), ...items.map(([name]) => name.split(" ×").pop().replace(/^/, "×")),
      fmt(attribution.changed.prediction)], textposition: "outside", cliponaxis: false,
    connector: { line: { color: "#999" } }, decreasing: { marker: { color: "#009E73" } },
    increasing: { marker: { color: "#D55E00" } }, totals: { marker: { color: "#0072B2" } } };
  const layout = { margin: { l: 330, r: 60, t: 30, b: 50 }, height: 140 + 28 * items.length,
    title: { text: `what moved ${unit}: before × items = after (green lowers it, orange raises it)`,
      font: { size: 13 } },
    yaxis: { autorange: "reversed", automargin: true }, xaxis: { title: { text: unit }, gridcolor: "#e5e5e5" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", showlegend: false };
  Plotly.react("whatif-waterfall", [trace], layout, { displaylogo: false, responsive: true });
  $("whatif-summary").textContent = attribution.summary || "";
}

// ---------------------------------------------------------------------------------------------------- plan
function planFields() {
  const shared = new Set(state.options.frontier.map((f) => f.name));
  for (const own of ["max_itl_ms", "max_latency_s", "gpus"]) shared.delete(own);
  return state.options.plan.filter((f) => !shared.has(f.name) && !["model", "task", "hf_config"].includes(f.name));
}

const FIELD_LABELS = { electricity_usd_per_kwh: "Electricity ($/kWh)", grid_gco2_per_kwh: "Grid (gCO2e/kWh)",
  gpu_usd_per_hour: "GPU rental ($/GPU-hour)", host_watts_per_gpu: "Host power (W/GPU)",
  average_load: "Average load (share of peak)", demand_curve: "Demand curve (shares of peak over a day)",
  confidence: "Confidence (p90 or median)", max_p90_itl_ms: "Max p90 ITL (ms)", pue: "PUE" };
function fieldLabel(name) {
  if (FIELD_LABELS[name]) return FIELD_LABELS[name];
  const words = { ms: "(ms)", s: "(s)", kw: "(kW)", kwh: "(kWh)", rps: "(requests/s)", itl: "ITL", usd: "($)",
    gpu: "GPU", gpus: "GPUs", pue: "PUE", gco2: "gCO2", per: "/", sec: "s" };
  return name.split("_").map((w) => words[w] || w).join(" ").replace(/ \/ /g, "/").replace(/^./, (c) => c.toUpperCase());
}

function buildPlanForm() {
  const form = $("plan-form");
  for (const field of planFields()) {
    let input;
    if (field.choices) {
      input = el("select", { id: `p-${field.name}` }, el("option", { value: "", text: "default" }),
        ...field.choices.map((c) => el("option", { value: c, text: c })));
    } else if (field.types.includes("boolean")) {
      input = el("input", { id: `p-${field.name}`, type: "checkbox" });
      if (field.default) input.checked = true;
    } else {
      const numeric = field.types.every((t) => t === "number" || t === "integer");
      input = el("input", { id: `p-${field.name}`, type: numeric ? "number" : "text", step: "any",
        placeholder: field.default === null || field.default === undefined ? (field.types.includes("array")
          ? "comma-separated" : "") : String(field.default) });
    }
    input.dataset.types = field.types.join(",");
    form.append(el("label", { title: field.help }, fieldLabel(field.name), " ", input,
      el("span", { class: "err", id: `err-p-${field.name}` })));
  }
  const gpus = $("p-gpus");
  if (gpus) {
    gpus.placeholder = "training-data GPUs";
    gpus.after(el("button", { type: "button", id: "p-gpus-above", text: "the GPUs above" }));
    $("p-gpus-above").addEventListener("click", () => { gpus.value = frontierRequest().gpus.join(","); });
  }
}

function planRequest() {
  const top = frontierRequest();
  const body = { model: top.model, task: top.task };
  for (const name of ["input_tokens", "output_tokens", "precision", "steps", "resolution", "frames"]) {
    if (top[name] !== undefined) body[name] = top[name];
  }
  for (const field of planFields()) {
    const node = $(`p-${field.name}`);
    if (node.type === "checkbox") { if (node.checked !== Boolean(field.default)) body[field.name] = node.checked; continue; }
    const value = node.value.trim();
    if (value === "") continue;
    if (field.types.includes("array") && (value.includes(",") || !field.types.some((t) => t !== "array"))) {
      body[field.name] = value.split(",").map((v) => v.trim()).filter(Boolean)
        .map((v) => (field.types.includes("string") || field.name === "gpus" ? v : Number(v)));
    } else {
      body[field.name] = node.type === "number" ? Number(value) : value;
    }
  }
  if (state.hfConfig) body.hf_config = state.hfConfig;
  return body;
}

async function runPlan() {
  clearErrors("panel-plan");
  let data;
  try { data = await api("/api/plan", planRequest()); } catch (error) {
    showError([`err-p-${error.field}`, `err-${error.field}`, "err-plan"], error.message);
    return;
  }
  renderPlan(data);
}

const DEPLOYMENT_ORDER = ["replicas", "total_gpus", "risk", "risk_latency", "risk_capacity", "latency_margin_pct",
  "capacity_margin_pct", "power_kw", "energy_per_day_kwh", "throughput_per_watt", "capacity_per_replica",
  "capacity_total", "demand_served"];
// the per-deployment cost block (estimator.schema.CostCarbon): the per-day and per-response figures, when given
const COST_ORDER = ["facility_power_kw", "energy_per_day_kwh", "total_usd_per_day", "electricity_usd_per_day",
  "gpu_usd_per_day", "usd_per_million_tokens", "carbon_kg_per_day", "carbon_g_per_response"];
const PLAN_LABELS = { risk: "risk of a miss (0–1)", risk_latency: "latency risk (0–1)",
  risk_capacity: "capacity risk (0–1)", latency_margin_pct: "latency margin (%)",
  capacity_margin_pct: "capacity margin (%)", power_kw: "GPU power (kW)", energy_per_day_kwh: "GPU energy/day (kWh)",
  "costs.facility_power_kw": "facility power (kW)", "costs.energy_per_day_kwh": "facility energy/day (kWh)",
  "costs.total_usd_per_day": "$/day", "costs.electricity_usd_per_day": "electricity $/day",
  "costs.gpu_usd_per_day": "GPU rental $/day", "costs.usd_per_million_tokens": "$ per million tokens",
  "costs.carbon_kg_per_day": "kg CO2e/day", "costs.carbon_g_per_response": "g CO2e/response" };
function costKeys(deployment) {
  const block = deployment.costs || {};
  return COST_ORDER.filter((k) => block[k] !== null && block[k] !== undefined).map((k) => `costs.${k}`);
}
function costValue(deployment, key) {
  const value = (deployment.costs || {})[key.slice("costs.".length)];
  if (value !== null && typeof value === "object") return metricCell(value, key);
  return el("td", { "data-field": key }, num(value, { class: "num v" }));
}
function deploymentKeys(deployment) {
  const extra = Object.keys(deployment).filter((k) => !DEPLOYMENT_ORDER.includes(k) && k !== "prediction"
    && typeof deployment[k] === "number" && !/_p10$|_p90$/.test(k));
  return [...DEPLOYMENT_ORDER.filter((k) => k in deployment), ...extra];
}
function deploymentValue(deployment, key) {
  const cell = el("td", { "data-field": key }, num(deployment[key], { class: "num v" }));
  if (`${key}_p10` in deployment) {
    cell.append(" ", el("span", { class: "band" }, "[", num(deployment[`${key}_p10`], { class: "num p10" }), "–",
      num(deployment[`${key}_p90`], { class: "num p90" }), "]"));
  }
  return cell;
}

function planLabel(key, unit) {
  if (PLAN_LABELS[key]) return PLAN_LABELS[key];
  if (["capacity_per_replica", "capacity_total", "demand_served"].includes(key)) return `${label(key)} (${unit})`;
  if (key === "throughput_per_watt") return `${unit}/W`;
  return label(key);
}

function renderPlan(data) {
  const plan = data.plan;
  const chosen = plan.chosen;
  $("err-plan").textContent = chosen ? "" : plan.reason;
  const box = $("plan-chosen");
  box.replaceChildren();
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);  // plan lists the chosen one among alternatives
  const all = [chosen, ...plan.alternatives.filter((d) => !chosen || !same(d, chosen))].filter(Boolean);
  if (chosen) {
    const c = chosen.prediction.configuration;
    box.append(el("h3", { text: `Chosen: ${chosen.replicas} replica(s) of ${c.num_gpus} x ${c.gpu_model}, batch ` +
      `${batchOf(c)} for ${plan.demand === null ? "the budget" : `${fmt(plan.demand)} ${plan.demand_unit}`}` +
      `${plan.latency_limit === null ? "" : ` under ${label(plan.latency_metric)} ≤ ${fmt(plan.latency_limit)}`}` }));
  }
  const details = Object.entries(plan).filter(([k, v]) => (typeof v === "number" || typeof v === "string")
    && !["model_id", "task", "family", "reason", "latency_metric", "demand_unit"].includes(k));
  box.append(el("p", { class: "hint", id: "plan-details" }, ...details.flatMap(([k, v]) =>
    [el("span", { class: "kv", "data-field": k }, `${k.replace(/_/g, " ")}: `, typeof v === "number" ? num(v) : v), " "])));
  if (!all.length) { $("plan-alternatives").replaceChildren(); return; }
  const keys = deploymentKeys(all[0]);
  const risk = [plan.latency_metric, plan.family === "diffusion" ? "items_per_sec" : "output_throughput_tokens_per_sec"];
  const costs = costKeys(all[0]);
  const head = el("tr", {}, el("th", { text: "GPU" }), el("th", { text: "GPUs/replica" }), el("th", { text: "batch" }),
    ...keys.map((k) => el("th", { text: planLabel(k, plan.demand_unit) })),
    ...risk.map((k) => el("th", { text: `${label(k)} [p10–p90]` })));
  const rows = all.map((d, i) => {
    const c = d.prediction.configuration;
    const notes = [d.extrapolated ? "extrapolated: no training data for the engine" : "",
      d.distinguishable_from_next === false ? "not distinguishable from the next" : ""].filter(Boolean);
    return el("tr", { "data-gpu": c.gpu_model, class: i === 0 && chosen ? "best" : null },
      el("td", {}, `${i === 0 && chosen ? "★ " : ""}${c.gpu_model}`,
        notes.length ? el("span", { class: "band", text: notes.join("; ") }) : null),
      el("td", {}, num(c.num_gpus)), el("td", {}, num(batchOf(c))), ...keys.map((k) => deploymentValue(d, k)),
      ...risk.map((k) => metricCell(d.prediction.metrics[k], k)));
  });
  $("plan-alternatives").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  const costHead = el("tr", {}, el("th", { text: "energy, cost and carbon" }),
    ...costs.map((k) => el("th", { text: `${planLabel(k)} [p10–p90]` })));
  const costRows = all.map((d, i) => el("tr", { "data-gpu": d.prediction.configuration.gpu_model },
    el("td", { text: `${i === 0 && chosen ? "★ " : ""}${d.replicas} x ${d.prediction.configuration.num_gpus} x ` +
      d.prediction.configuration.gpu_model }), ...costs.map((k) => costValue(d, k))));
  $("plan-costs").replaceChildren(...(costs.length ? [el("thead", {}, costHead), el("tbody", {}, ...costRows)] : []));
  $("plan-assumptions").replaceChildren(...[...plan.warnings.map((w) => `warning: ${w}`), ...plan.assumptions]
    .map((t) => el("li", { text: t })));
}

// ---------------------------------------------------------------------------------------------------- init
function showTaskFields() {
  const spec = taskSpec();
  const diffusion = isDiffusion();
  for (const node of document.querySelectorAll(".llm")) node.hidden = diffusion;
  for (const node of document.querySelectorAll(".diffusion")) node.hidden = !diffusion;
  for (const node of document.querySelectorAll(".video")) node.hidden = !(spec && spec.modality === "text-to-video");
  if (spec) {
    const name = $("f-model").value.trim().toLowerCase();
    const model = state.catalog.models.find((m) => m.key.toLowerCase() === name || m.aliases.includes(name));
    const ownInput = model && model.input_tokens && model.input_tokens[spec.key];
    $("f-input_tokens").placeholder = ownInput ? `model: ${fmt(ownInput)}` : `task: ${fmt(spec.mean_input_tokens)}`;
    const own = model && model.output_tokens && model.output_tokens[spec.key];
    $("f-output_tokens").placeholder = own ? `${own.level}: ${fmt(own.tokens)}` : `task: ${fmt(spec.mean_output_tokens)}`;
  }
}

function fillForms() {
  const { models, tasks, gpus } = state.catalog;
  $("model-list").replaceChildren(...models.flatMap((m) => [m.key, ...m.aliases].map((name) =>
    el("option", { value: name, text: `${m.display_name}${m.trained ? " *" : ""}` }))));
  $("f-task").replaceChildren(...tasks.map((t) => el("option", { value: t.key, text: `${t.key} (${t.kind})` })));
  const ordered = [...gpus].sort((a, b) => Number(b.trained) - Number(a.trained));
  $("f-gpus").replaceChildren(...ordered.map((g) => el("label", { class: "check" },
    el("input", { type: "checkbox", value: g.key, ...(g.trained ? { checked: "" } : {}) }),
    `${g.key}${g.trained ? " *" : ""}`)));
  const options = ordered.map((g) => el("option", { value: g.key, text: g.key }));
  $("w-gpu").replaceChildren(...options.map((o) => o.cloneNode(true)));
  $("c-gpu").replaceChildren(el("option", { value: "", text: "(same)" }), ...options.map((o) => o.cloneNode(true)));
  const llm = models.find((m) => m.trained && m.kind === "llm") || models[0];
  $("f-model").value = llm.aliases[0] || llm.key;
  const chat = tasks.find((t) => t.trained && t.kind === "llm") || tasks[0];
  $("f-task").value = chat.key;
  showTaskFields();
  buildPlanForm();
}



// the server's `serve --calibration` line (from /api/catalog), or in a saved file the API's own assumption line
function showCalibration(note) {
  $("calibration-note").hidden = !note;
  $("calibration-note").textContent = note || "";
}
function staticCalibration(data) {
  const lists = [...(data.estimates || []), data.what_if, data.plan].filter(Boolean);
  const lines = lists.flatMap((item) => item.assumptions || []);
  return lines.find((line) => line.startsWith("calibration applied")) || null;
}

async function init() {
  if (STATIC) { renderStatic(); return; }
  try {
    [state.catalog, state.options] = await Promise.all([api("/api/catalog"), api("/api/options")]);
  } catch (error) { $("err-frontier").textContent = error.message; return; }
  showCalibration(state.catalog.calibration);
  fillForms();
  $("f-model").addEventListener("change", () => {
    if ($("f-model").value.trim() !== state.hfName) { state.hfConfig = null; state.hfName = null;
      $("config-status").textContent = ""; $("f-config").value = ""; }
    showTaskFields();
    refreshFrontier();
  });
  $("f-task").addEventListener("change", () => { showTaskFields(); refreshFrontier(); });
  for (const id of ["f-input_tokens", "f-output_tokens", "f-precision", "f-steps", "f-resolution", "f-frames"]) {
    $(id).addEventListener("change", refreshFrontier);
  }
  $("f-gpus").addEventListener("change", refreshFrontier);
  $("f-config").addEventListener("change", onUpload);
  $("f-limit").addEventListener("input", onSlider);
  $("w-from-pick").addEventListener("click", fromPick);
  $("w-run").addEventListener("click", runWhatIf);
  $("p-run").addEventListener("click", runPlan);
  await refreshFrontier();
  fromPick();
  document.body.dataset.ready = "1";
}

function renderStatic() {
  state.catalog = STATIC.catalog || { tasks: [], models: [], gpus: [] };
  for (const id of ["frontier-form", "whatif-form", "plan-form", "p-run"]) $(id).hidden = true;
  const panels = { frontier: "panel-frontier", "what-if": "panel-whatif", plan: "panel-plan" };
  for (const [kind, id] of Object.entries(panels)) $(id).hidden = kind !== STATIC.kind;
  $("static-note").hidden = false;
  $("static-note").textContent = STATIC.note || "";
  showCalibration(staticCalibration(STATIC.data || {}));
  for (const link of document.querySelectorAll("footer")) link.hidden = true;
  if (STATIC.kind === "frontier") {
    state.frontier = STATIC.data;
    setSliderRange();
    $("f-limit").addEventListener("input", onSlider);
    renderFrontier();
  } else if (STATIC.kind === "what-if") {
    renderWhatIf(STATIC.data);
  } else {
    renderPlan(STATIC.data);
  }
  document.body.dataset.ready = "1";
}

init();
