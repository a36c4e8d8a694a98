// The dashboard: pipeline health, the device grid, the alert feed, trend
// charts and a site x zone heatmap of the job's outputs, kept current from
// the API (`docs/http.md`, "Dashboard"). No framework and no build step:
// this file is embedded in the binary as it is.
//
// What each panel reads is inferred from the outputs' columns and
// connectors (`conventions` below). Live rows arrive as Server-Sent Events
// and are applied once per animation frame, so that 1,000 devices reporting
// at once cost one grid update a frame, made in place (a row per device,
// cells rewritten only when their text changes).
"use strict";

// ---------------------------------------------------------------- the API

// A token given as ?token= is sent on: as a header with fetch, as a query
// parameter with EventSource (which cannot set headers).
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};

async function api(path) {
  const response = await fetch(path, { headers });
  if (!response.ok) throw new Error(path + ": " + response.status + " " + (await response.text()));
  return response.json();
}

function outputPath(job, output, what, params) {
  const query = new URLSearchParams(params || {}).toString();
  const path = "api/jobs/" + encodeURIComponent(job) + "/outputs/" + encodeURIComponent(output) + "/" + what;
  return query ? path + "?" + query : path;
}

// Live rows of an output: `onRows` gets each row; `onLagged` when rows were
// missed (the caller reloads). Returns the EventSource, to close.
function live(job, output, onRow, onLagged) {
  const params = token ? { token } : {};
  const source = new EventSource(outputPath(job, output, "live", params));
  source.addEventListener("row", (e) => onRow(JSON.parse(e.data)));
  source.addEventListener("lagged", () => onLagged && onLagged());
  return source;
}

// Opens the live stream, and once it is open (the server subscribes it
// before it answers) reads the initial rows (`load`), keeping the live
// rows that come meanwhile; then hands both over in order. So no row
// written in between is lost, and a row seen twice is harmless (the panels
// upsert or skip what they hold). After a reconnection, the same again:
// the rows missed while away come with the new initial rows.
function loadThenLive(job, output, load, apply, reload) {
  let buffered = null;
  const source = live(job, output, (row) => (buffered ? buffered.push(row) : apply([row])), reload);
  source.addEventListener("open", () => {
    buffered = buffered || [];
    load()
      .then((rows) => {
        const early = buffered || [];
        buffered = null;
        apply(rows.concat(early));
      })
      .catch((e) => console.error(e));
  });
  return source;
}

// ---------------------------------------------------------------- conventions

const DEVICE = /^(device_id|device|deviceid|device_name)$/i;
const SITE = /^(site|site_id|site_name)$/i;
const ZONE = /^(zone|zone_id|zone_name)$/i;
const BATTERY = /^battery/i;
const WINDOW = /^window/i;
const ALERT_CONNECTORS = new Set(["webhook", "slack", "log"]);
// A battery under this (percent) is low.
const BATTERY_LOW = 20;
// Settings a URL may change: ?silent=60&recent=300&window=900 (seconds).
const settings = new URLSearchParams(location.search);
const seconds = (name, fallback) => (Number(settings.get(name)) > 0 ? Number(settings.get(name)) : fallback) * 1000;
// A device is silent when its latest row is this far behind the newest.
const SILENT_MS = seconds("silent", 60);
// An alert this recent (before the newest row) marks its device.
const ALERT_RECENT_MS = seconds("recent", 300);
// The span of event time a chart shows.
const CHART_SPAN_MS = seconds("window", 900);
// The most series one chart draws.
const MAX_SERIES = 12;
const ALERTS_SHOWN = 100;

const column = (output, pattern) => (output.columns.find((c) => pattern.test(c.name)) || {}).name || null;
const isNumeric = (c) => /^(U?Int|Float|Decimal)/.test(c.data_type);
const isTime = (c) => /^(Timestamp|Date)/.test(c.data_type);
const timeColumn = (output) => (output.columns.find(isTime) || {}).name || null;
const isAlertOutput = (output) => ALERT_CONNECTORS.has(output.connector);

// The measures of an output: its numeric columns.
const measures = (output) => output.columns.filter(isNumeric).map((c) => c.name);

// Outputs for the grid: a device column, not alerts; those without a
// window column first (a device's latest reading rather than its latest
// window).
function gridOutputs(job) {
  const fit = job.outputs.filter((o) => !isAlertOutput(o) && column(o, DEVICE));
  return fit.filter((o) => !column(o, WINDOW)).concat(fit.filter((o) => column(o, WINDOW)));
}

// Outputs for the charts: a time column, a measure and a device or site
// column; windowed ones first, per site before per device (fewer lines).
function chartOutputs(job) {
  const fit = job.outputs.filter(
    (o) => !isAlertOutput(o) && timeColumn(o) && measures(o).length && (column(o, DEVICE) || column(o, SITE)),
  );
  const rank = (o) => (column(o, WINDOW) ? 0 : 2) + (column(o, DEVICE) ? 1 : 0);
  return fit.sort((a, b) => rank(a) - rank(b));
}

// ---------------------------------------------------------------- helpers

const svgNS = "http://www.w3.org/2000/svg";
function svg(name, attributes, parent) {
  const element = document.createElementNS(svgNS, name);
  for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function fillSelect(select, values, keep) {
  const old = keep ? select.value : null;
  select.replaceChildren(...values.map((v) => new Option(v, v)));
  if (old && values.includes(old)) select.value = old;
}

const time = (text) => (text == null ? NaN : Date.parse(text));
const clock = (ms) => (Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 19) : "-");

function formatValue(value) {
  if (value == null) return "";
  // Two decimals at most, without trailing zeros.
  if (typeof value === "number") return String(Math.round(value * 100) / 100);
  return String(value);
}

// Runs `work` once in the next animation frame, however often it is asked.
function frameTask(work) {
  let asked = false;
  return () => {
    if (asked) return;
    asked = true;
    requestAnimationFrame(() => {
      asked = false;
      work();
    });
  };
}

// Runs `work` in an animation frame at most once every `ms`.
function throttledTask(work, ms) {
  let last = -Infinity;
  let timer = null;
  return () => {
    if (timer !== null) return;
    const wait = Math.max(0, last + ms - performance.now());
    timer = setTimeout(() =>
      requestAnimationFrame(() => {
        timer = null;
        last = performance.now();
        work();
      }),
      wait,
    );
  };
}

const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939"];

// ---------------------------------------------------------------- state

const state = {
  jobs: new Map(), // name -> the job's latest JobInfo
  job: null, // the chosen job's name
  ready: false, // the chosen job's panels are set up
  stats: { gridUpdates: [] }, // durations (ms) of grid updates, for the tests
};

// ---------------------------------------------------------------- pipeline health

const healthRows = new Map(); // job name -> { tr, cells, events, at }

function renderHealth(jobs) {
  const body = document.querySelector("#jobs tbody");
  const now = performance.now();
  for (const job of jobs) {
    let entry = healthRows.get(job.name);
    if (!entry) {
      const tr = body.insertRow();
      const cells = [];
      for (let i = 0; i < 9; i++) {
        const td = tr.insertCell();
        if (i >= 2 && i <= 7) td.className = "num";
        cells.push(td);
      }
      entry = { tr, cells, events: job.events_in, at: now, rate: 0 };
      healthRows.set(job.name, entry);
    } else if (now > entry.at) {
      entry.rate = ((job.events_in - entry.events) * 1000) / (now - entry.at);
      entry.events = job.events_in;
      entry.at = now;
    }
    const delay = job.watermark_delay_seconds;
    const p99 = job.batch_latency ? job.batch_latency.p99_seconds : undefined;
    const lags = job.inputs.filter((i) => i.consumer_lag != null);
    const texts = [
      job.name,
      job.state + (job.error ? ": " + job.error : ""),
      job.events_in.toLocaleString(),
      Math.round(entry.rate).toLocaleString(),
      delay == null ? "-" : delay.toFixed(1) + " s",
      p99 === undefined ? "-" : p99 === null ? "> 10 s" : "≤ " + duration(p99),
      lags.length ? lags.reduce((n, i) => n + i.consumer_lag, 0).toLocaleString() : "-",
      job.dead_letters.toLocaleString(),
      job.last_checkpoint ? "#" + job.last_checkpoint.id + " at " + clock(time(job.last_checkpoint.taken_at)) : "-",
    ];
    texts.forEach((t, i) => setText(entry.cells[i], t));
  }
  const chosen = state.jobs.get(state.job);
  if (chosen) renderOutputChips(chosen);
}

// A duration in seconds as a bucket bound: 0.00025 -> "250 µs", 0.005 -> "5 ms".
function duration(s) {
  if (s < 1e-3) return Math.round(s * 1e6) + " µs";
  if (s < 1) return Math.round(s * 1e6) / 1e3 + " ms";
  return s + " s";
}

function renderOutputChips(job) {
  const chips = job.outputs.map((o) => {
    const chip = document.createElement("span");
    chip.className = "chip" + (o.down ? " down" : "");
    let text = o.name + " (" + o.connector + "): " + o.rows_out.toLocaleString() + " rows";
    if (o.rows_written != null && o.rows_written !== o.rows_out) text += ", " + o.rows_written.toLocaleString() + " written";
    if (o.retries) text += ", " + o.retries + " retries";
    if (o.outages) text += ", " + o.outages + " outages";
    if (o.down) text += ", DOWN";
    chip.textContent = text;
    return chip;
  });
  document.getElementById("outputs").replaceChildren(...chips);
}

async function refresh() {
  const jobs = await api("api/jobs");
  for (const job of jobs) state.jobs.set(job.name, job);
  const select = document.getElementById("job");
  if (select.options.length !== jobs.length) fillSelect(select, jobs.map((j) => j.name), true);
  if (!state.job && jobs.length) state.job = jobs[0].name;
  renderHealth(jobs);
  const job = state.jobs.get(state.job);
  // Panels are set up once the job's outputs have started (columns known).
  if (job && !state.ready && job.outputs.some((o) => o.columns.length)) setUpPanels(job);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

// ---------------------------------------------------------------- the device grid

const grid = {
  output: null, // the OutputInfo shown
  device: null, // its column names by role
  time: null,
  times: new Set(), // the datetime columns
  kinds: [], // each cell's kind (cellKind)
  battery: null,
  columns: [], // the columns shown after device and status
  entries: new Map(), // device -> { row, tr, cells, texts, badge, t, status }
  order: [], // devices in display order (sorted)
  pending: new Map(), // device -> its newest row not yet shown
  newest: -Infinity, // the newest time of any row shown
  source: null,
};

function setUpGrid(job, output) {
  if (grid.source) grid.source.close();
  document.querySelector("#devices .body").replaceChildren();
  Object.assign(grid, {
    output,
    device: column(output, DEVICE),
    time: timeColumn(output),
    battery: output.columns.find((c) => BATTERY.test(c.name) && isNumeric(c))?.name || null,
    entries: new Map(),
    order: [],
    pending: new Map(),
    newest: -Infinity,
  });
  grid.columns = output.columns.map((c) => c.name).filter((c) => c !== grid.device);
  grid.times = new Set(output.columns.filter(isTime).map((c) => c.name));
  const kinds = ["text", "status", ...grid.columns.map((name) => cellKind(output, name))];
  const widths = { text: "minmax(4.5em, 0.6fr)", status: "6.5em", time: "5.5em", num: "minmax(4em, 1fr)" };
  document.getElementById("devices").style.setProperty("--columns", "11em " + kinds.slice(1).map((k) => widths[k]).join(" "));
  grid.kinds = kinds;
  const head = [grid.device, "status", ...grid.columns].map((name, i) => {
    const th = document.createElement("span");
    th.className = kinds[i];
    // Long names may break after an underscore.
    name.split("_").forEach((part, j) => {
      if (j) th.append("_", document.createElement("wbr"));
      th.append(part);
    });
    return th;
  });
  document.querySelector("#devices .head").replaceChildren(...head);
  const load = () =>
    api(outputPath(job.name, output.name, "latest", { by: grid.device, limit: 10000 })).then((r) => r.rows.reverse());
  grid.source = loadThenLive(job.name, output.name, load, queueGridRows, () => setUpGrid(job, output));
  setUpHeatmap(output);
}

// Live rows wait for the next frame; a device's newer row replaces an
// older one still waiting.
function queueGridRows(rows) {
  for (const row of rows) grid.pending.set(String(row[grid.device]), row);
  scheduleGrid();
}

const scheduleGrid = frameTask(() => {
  if (!grid.pending.size) return;
  const rows = Array.from(grid.pending.values());
  grid.pending.clear();
  updateGrid(rows);
});

// Applies rows to the grid in place and returns how long it took (ms),
// layout included. Also the tests' way to time an update.
function updateGrid(rows) {
  const started = performance.now();
  for (const row of rows) upsertDevice(row);
  refreshStatuses();
  scheduleHeatmap();
  void document.getElementById("devices").offsetHeight; // the layout, in the measure
  const took = performance.now() - started;
  state.stats.gridUpdates.push({ rows: rows.length, devices: grid.entries.size, ms: took });
  if (state.stats.gridUpdates.length > 200) state.stats.gridUpdates.shift();
  return took;
}

function upsertDevice(row) {
  const device = String(row[grid.device]);
  let entry = grid.entries.get(device);
  if (!entry) entry = addDevice(device);
  entry.row = row;
  entry.t = time(row[grid.time]);
  if (entry.t > grid.newest) grid.newest = entry.t;
  // Cells are compared with the texts they were given (reading the DOM
  // back costs more) and rewritten only when they change.
  grid.columns.forEach((name, i) => {
    const cell = entry.cells[i + 2];
    const value = row[name] == null ? "" : grid.times.has(name) ? String(row[name]) : formatValue(row[name]);
    if (entry.texts[i] === value) return;
    entry.texts[i] = value;
    if (grid.times.has(name)) {
      // The time of day shows; the whole datetime is the cell's title.
      cell.title = value;
      cell.textContent = clock(time(value));
    } else cell.textContent = value;
  });
}

// How a column's cells look: `time` (a time of day), `num` (right
// aligned) or `text`.
function cellKind(output, name) {
  const info = output.columns.find((c) => c.name === name);
  return isTime(info) ? "time" : isNumeric(info) ? "num" : "text";
}

// A new device's row, in sorted place (devices rarely appear after the
// first rows, so a binary search and one insertion is all it costs).
function addDevice(device) {
  const tr = document.createElement("div");
  tr.className = "device";
  tr.dataset.device = device;
  const cells = grid.kinds.map((kind) => {
    const cell = document.createElement("span");
    cell.className = kind;
    tr.appendChild(cell);
    return cell;
  });
  cells[0].textContent = device;
  const badge = document.createElement("span");
  badge.className = "badge";
  cells[1].appendChild(badge);
  let low = 0;
  let high = grid.order.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (grid.order[mid] < device) low = mid + 1;
    else high = mid;
  }
  const before = grid.order[low];
  grid.order.splice(low, 0, device);
  document.querySelector("#devices .body").insertBefore(tr, before ? grid.entries.get(before).tr : null);
  const entry = { row: null, tr, cells, texts: [], badge, t: NaN, status: null };
  grid.entries.set(device, entry);
  return entry;
}

// alert: an alert for it recently; silent: its latest row well behind the
// newest; battery low; else normal. Rewrites only the rows that change.
function deviceStatus(device, entry) {
  const alerted = alerts.byDevice.get(device);
  if (alerted != null && alerted >= grid.newest - ALERT_RECENT_MS) return "alert";
  if (grid.newest - entry.t > SILENT_MS) return "silent";
  const battery = grid.battery && entry.row[grid.battery];
  if (battery != null && battery < BATTERY_LOW) return "battery low";
  return "normal";
}

function refreshStatuses() {
  const counts = { normal: 0, alert: 0, silent: 0, "battery low": 0 };
  for (const [device, entry] of grid.entries) {
    const status = deviceStatus(device, entry);
    counts[status]++;
    if (status !== entry.status) {
      entry.status = status;
      entry.tr.dataset.status = status;
      entry.badge.textContent = status;
    }
  }
  const parts = Object.entries(counts)
    .filter(([, n]) => n)
    .map(([s, n]) => n + " " + s);
  setText(document.getElementById("device-summary"), grid.entries.size + " devices: " + parts.join(", "));
}

// ---------------------------------------------------------------- the alert feed

const alerts = {
  sources: [],
  shown: new Set(), // JSON of the rows shown, so that none shows twice
  items: [], // { t, li } newest first
  byDevice: new Map(), // device -> its newest alert's time
};

function setUpAlerts(job) {
  for (const s of alerts.sources) s.close();
  Object.assign(alerts, { sources: [], shown: new Set(), items: [], byDevice: new Map() });
  const list = document.getElementById("alerts");
  const outputs = job.outputs.filter(isAlertOutput);
  const empty = document.createElement("li");
  empty.className = "empty";
  empty.textContent = outputs.length ? "no alerts yet" : "this job has no alert output (webhook, slack or log)";
  list.replaceChildren(empty);
  for (const output of outputs) {
    const load = () => api(outputPath(job.name, output.name, "latest", { limit: 50 })).then((r) => r.rows.reverse());
    const apply = (rows) => rows.forEach((row) => addAlert(output, row));
    alerts.sources.push(loadThenLive(job.name, output.name, load, apply));
  }
}

function addAlert(output, row) {
  const key = output.name + " " + JSON.stringify(row);
  if (alerts.shown.has(key)) return;
  alerts.shown.add(key);
  const deviceColumn = column(output, DEVICE);
  const timeName = timeColumn(output);
  const t = time(row[timeName]);
  const device = deviceColumn ? String(row[deviceColumn]) : "";
  if (device && !(alerts.byDevice.get(device) >= t)) alerts.byDevice.set(device, t);
  const li = document.createElement("li");
  li.dataset.output = output.name;
  li.dataset.row = JSON.stringify(row);
  const parts = [
    ["when", clock(t)],
    ["device", device],
    [
      "what",
      Object.entries(row)
        .filter(([k]) => k !== deviceColumn && k !== timeName && !SITE.test(k) && !ZONE.test(k))
        .map(([k, v]) => k + " " + formatValue(v))
        .join(", "),
    ],
  ];
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    li.appendChild(span);
  }
  const list = document.getElementById("alerts");
  list.querySelector(".empty")?.remove();
  let at = alerts.items.findIndex((item) => item.t < t);
  if (at < 0) at = alerts.items.length;
  list.insertBefore(li, alerts.items[at] ? alerts.items[at].li : null);
  alerts.items.splice(at, 0, { t, li });
  while (alerts.items.length > ALERTS_SHOWN) alerts.items.pop().li.remove();
  setText(document.getElementById("alert-summary"), alerts.shown.size + " received");
  scheduleStatuses();
}

const scheduleStatuses = frameTask(refreshStatuses);

// ---------------------------------------------------------------- trend charts

const chart = {
  output: null,
  measure: null,
  per: null, // the column series are keyed by
  time: null,
  series: new Map(), // key -> [[t, value], ...] in time order
  newest: -Infinity,
  source: null,
};

function chartChoices(job) {
  const outputs = chartOutputs(job);
  fillSelect(document.getElementById("chart-output"), outputs.map((o) => o.name), true);
  const output = outputs.find((o) => o.name === document.getElementById("chart-output").value);
  if (!output) return null;
  const numeric = measures(output);
  const preferred = numeric.find((m) => /^avg_temp/i.test(m)) || numeric.find((m) => !/^readings$|count/i.test(m)) || numeric[0];
  const measure = document.getElementById("chart-measure");
  fillSelect(measure, numeric, true);
  if (chart.output !== output.name) measure.value = preferred;
  const per = [column(output, SITE), column(output, DEVICE)].filter(Boolean);
  fillSelect(document.getElementById("chart-per"), per, true);
  return output;
}

function setUpChart(job) {
  if (chart.source) chart.source.close();
  const output = chartChoices(job);
  if (!output) {
    setText(document.getElementById("chart-note"), "no output with a time column and a measure");
    return;
  }
  Object.assign(chart, {
    output: output.name,
    measure: document.getElementById("chart-measure").value,
    per: document.getElementById("chart-per").value,
    time: timeColumn(output),
    series: new Map(),
    newest: -Infinity,
  });
  // The last 15 minutes; a job replaying older data shows its newest rows.
  const load = async () => {
    const recent = await api(outputPath(job.name, output.name, "rows", { from: "-15m", limit: 10000 }));
    if (recent.rows.length) return recent.rows;
    const latest = await api(outputPath(job.name, output.name, "latest", { limit: 2000 }));
    return latest.rows.reverse();
  };
  chart.source = loadThenLive(job.name, output.name, load, addChartRows, () => setUpChart(job));
}

function addChartRows(rows) {
  for (const row of rows) {
    const t = time(row[chart.time]);
    const value = row[chart.measure];
    if (!Number.isFinite(t) || typeof value !== "number") continue;
    const key = String(row[chart.per]);
    let points = chart.series.get(key);
    if (!points) chart.series.set(key, (points = []));
    // Rows come in time order, nearly always: insert from the end.
    let at = points.length;
    while (at > 0 && points[at - 1][0] > t) at--;
    if (at > 0 && points[at - 1][0] === t) points[at - 1][1] = value;
    else points.splice(at, 0, [t, value]);
    if (t > chart.newest) chart.newest = t;
  }
  const horizon = chart.newest - CHART_SPAN_MS;
  for (const points of chart.series.values()) {
    let old = 0;
    while (old < points.length && points[old][0] < horizon) old++;
    if (old) points.splice(0, old);
  }
  scheduleChart();
}

const scheduleChart = frameTask(renderChart);

function renderChart() {
  const box = document.getElementById("chart");
  const width = Math.max(200, box.clientWidth);
  const height = Math.max(120, box.clientHeight);
  box.setAttribute("viewBox", "0 0 " + width + " " + height);
  const keys = Array.from(chart.series.keys())
    .filter((k) => chart.series.get(k).length)
    .sort();
  const shown = keys.slice(0, MAX_SERIES);
  const all = shown.flatMap((k) => chart.series.get(k));
  const children = [];
  const legend = [];
  const note = keys.length > shown.length ? "the first " + shown.length + " of " + keys.length + " " + chart.per + "s" : "";
  setText(document.getElementById("chart-note"), note || (all.length ? "" : "waiting for rows"));
  if (all.length) {
    const pad = { left: 48, right: 10, top: 8, bottom: 20 };
    let [t0, t1] = [Infinity, -Infinity];
    let [v0, v1] = [Infinity, -Infinity];
    for (const [t, v] of all) {
      t0 = Math.min(t0, t);
      t1 = Math.max(t1, t);
      v0 = Math.min(v0, v);
      v1 = Math.max(v1, v);
    }
    if (t1 === t0) t1 = t0 + 1000;
    if (v1 === v0) [v0, v1] = [v0 - 1, v1 + 1];
    const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
    const y = (v) => pad.top + (1 - (v - v0) / (v1 - v0)) * (height - pad.top - pad.bottom);
    for (let i = 0; i <= 4; i++) {
      const v = v0 + ((v1 - v0) * i) / 4;
      children.push(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
      const label = svg("text", { x: pad.left - 4, y: y(v) + 4, "text-anchor": "end" });
      label.textContent = formatValue(v);
      children.push(label);
    }
    for (const t of [t0, (t0 + t1) / 2, t1]) {
      const label = svg("text", { x: x(t), y: height - 4, "text-anchor": t === t0 ? "start" : t === t1 ? "end" : "middle" });
      label.textContent = clock(t);
      children.push(label);
    }
    children.push(svg("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom }));
    shown.forEach((key, i) => {
      const points = chart.series.get(key);
      const d = points.map(([t, v], j) => (j ? "L" : "M") + x(t).toFixed(1) + " " + y(v).toFixed(1)).join("");
      const path = svg("path", { class: "series", d, stroke: COLOURS[i % COLOURS.length] });
      path.dataset.series = key;
      path.dataset.points = points.length;
      children.push(path);
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = COLOURS[i % COLOURS.length];
      item.append(swatch, key);
      legend.push(item);
    });
  }
  box.replaceChildren(...children);
  document.getElementById("chart-legend").replaceChildren(...legend);
}

// ---------------------------------------------------------------- heatmap

const heatmap = { site: null, zone: null, measure: null, cells: new Map() };

function setUpHeatmap(output) {
  heatmap.site = column(output, SITE);
  heatmap.zone = column(output, ZONE);
  const select = document.getElementById("heatmap-measure");
  const numeric = measures(output);
  fillSelect(select, numeric, true);
  if (!numeric.includes(heatmap.measure)) select.value = numeric.find((m) => /temp/i.test(m)) || numeric[0] || "";
  heatmap.measure = select.value;
  heatmap.cells = new Map();
  document.getElementById("heatmap").replaceChildren();
  scheduleHeatmap();
}

// Heat from blue (lowest) to red (highest).
const heat = (f) => "hsl(" + Math.round(230 - 230 * f) + ", 70%, " + Math.round(62 - 8 * f) + "%)";

// The heatmap sums every device: twice a second is enough.
const scheduleHeatmap = throttledTask(renderHeatmap, 500);

function renderHeatmap() {
  const box = document.getElementById("heatmap");
  if (!heatmap.site || !heatmap.zone || !heatmap.measure) {
    const note = svg("text", { x: 10, y: 20 });
    note.textContent = "the devices' output has no site and zone columns";
    box.replaceChildren(note);
    return;
  }
  const sums = new Map(); // "site\u0000zone" -> [sum, n]
  const sites = new Set();
  const zones = new Set();
  for (const entry of grid.entries.values()) {
    const value = entry.row && entry.row[heatmap.measure];
    if (typeof value !== "number") continue;
    const site = String(entry.row[heatmap.site]);
    const zone = String(entry.row[heatmap.zone]);
    sites.add(site);
    zones.add(zone);
    const sum = sums.get(site + "\u0000" + zone) || [0, 0];
    sum[0] += value;
    sum[1] += 1;
    sums.set(site + "\u0000" + zone, sum);
  }
  const siteList = Array.from(sites).sort();
  const zoneList = Array.from(zones).sort();
  const averages = Array.from(sums.values(), ([s, n]) => s / n);
  const low = Math.min(...averages);
  const high = Math.max(...averages);
  const width = Math.max(200, box.clientWidth);
  const height = Math.max(120, box.clientHeight);
  box.setAttribute("viewBox", "0 0 " + width + " " + height);
  const pad = { left: 56, top: 18, bottom: 34, right: 6 };
  const cw = (width - pad.left - pad.right) / Math.max(1, zoneList.length);
  const ch = (height - pad.top - pad.bottom) / Math.max(1, siteList.length);
  const children = [];
  zoneList.forEach((zone, j) => {
    const label = svg("text", { class: "zone", x: pad.left + cw * (j + 0.5), y: 12 });
    label.textContent = zone;
    children.push(label);
  });
  siteList.forEach((site, i) => {
    const label = svg("text", { class: "label", x: pad.left - 6, y: pad.top + ch * (i + 0.5) });
    label.textContent = site;
    children.push(label);
    zoneList.forEach((zone, j) => {
      const sum = sums.get(site + "\u0000" + zone);
      if (!sum) return;
      const average = sum[0] / sum[1];
      const f = high > low ? (average - low) / (high - low) : 0.5;
      const rect = svg("rect", { class: "cell", x: pad.left + cw * j, y: pad.top + ch * i, width: cw, height: ch, fill: heat(f) });
      rect.dataset.site = site;
      rect.dataset.zone = zone;
      rect.dataset.value = average;
      rect.dataset.devices = sum[1];
      children.push(rect);
      if (cw > 34 && ch > 14) {
        const text = svg("text", { class: "value", x: pad.left + cw * (j + 0.5), y: pad.top + ch * (i + 0.5) });
        text.textContent = formatValue(Math.round(average * 10) / 10);
        children.push(text);
      }
    });
  });
  if (averages.length) children.push(...heatLegend(pad.left, height - 26, width - pad.left - pad.right, low, high));
  box.replaceChildren(...children);
}

// The colour scale: a gradient bar from the lowest cell to the highest.
function heatLegend(x, y, width, low, high) {
  const defs = svg("defs");
  const gradient = svg("linearGradient", { id: "heat-scale" }, defs);
  for (let i = 0; i <= 10; i++) svg("stop", { offset: i * 10 + "%", "stop-color": heat(i / 10) }, gradient);
  const bar = svg("rect", { x, y, width, height: 8, fill: "url(#heat-scale)" });
  const lowText = svg("text", { x, y: y + 20 });
  lowText.textContent = formatValue(Math.round(low * 10) / 10);
  const highText = svg("text", { x: x + width, y: y + 20, "text-anchor": "end" });
  highText.textContent = formatValue(Math.round(high * 10) / 10);
  const name = svg("text", { x: x + width / 2, y: y + 20, "text-anchor": "middle" });
  name.textContent = heatmap.measure + " (average per cell)";
  return [defs, bar, lowText, highText, name];
}

// ---------------------------------------------------------------- wiring

function setUpPanels(job) {
  state.ready = true;
  const outputs = gridOutputs(job);
  fillSelect(document.getElementById("grid-output"), outputs.map((o) => o.name), true);
  if (outputs.length) setUpGrid(job, outputs.find((o) => o.name === document.getElementById("grid-output").value));
  else document.querySelector("#devices .body").replaceChildren();
  setUpAlerts(job);
  setUpChart(job);
}

function current() {
  return state.jobs.get(state.job);
}

// The page loads this file before or after it has parsed the body (a
// script added by index.html): the wiring waits for the body.
function start() {
  document.getElementById("job").addEventListener("change", (e) => {
    state.job = e.target.value;
    state.ready = false;
    refresh().catch((error) => console.error(error));
  });
  document.getElementById("grid-output").addEventListener("change", (e) => {
    const job = current();
    setUpGrid(job, job.outputs.find((o) => o.name === e.target.value));
  });
  for (const id of ["chart-output", "chart-measure", "chart-per"]) {
    document.getElementById(id).addEventListener("change", () => setUpChart(current()));
  }
  document.getElementById("heatmap-measure").addEventListener("change", (e) => {
    heatmap.measure = e.target.value;
    scheduleHeatmap();
  });
  addEventListener("resize", () => {
    scheduleChart();
    scheduleHeatmap();
  });
  // Silence comes with time, not only with rows.
  setInterval(scheduleStatuses, 1000);

  refresh().catch((e) => console.error(e));
  setInterval(() => refresh().catch((e) => console.error(e)), 2000);
}

// For the tests and for a person at the console.
window.dashboard = { state, grid, chart, alerts, heatmap, updateGrid };

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
