// The dashboard: polls the API (a token given as ?token= is kept and sent).
"use strict";
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const previous = new Map();

async function api(path) {
  const response = await fetch(path, { headers });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.json();
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
}

async function refresh() {
  const jobs = await api("api/jobs");
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  const now = Date.now();
  for (const job of jobs) {
    const row = body.insertRow();
    const before = previous.get(job.name);
    const rate = before ? ((job.events_in - before.events) * 1000) / (now - before.at) : 0;
    previous.set(job.name, { events: job.events_in, at: now });
    cell(row, job.name);
    cell(row, job.state + (job.error ? ": " + job.error : ""));
    cell(row, job.events_in.toLocaleString(), true);
    cell(row, Math.round(rate).toLocaleString(), true);
    cell(row, job.watermark_delay_seconds == null ? "-" : job.watermark_delay_seconds.toFixed(1) + " s", true);
    cell(row, job.dead_letters.toLocaleString(), true);
    cell(row, job.last_checkpoint ? job.last_checkpoint.taken_at : "-");
  }
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

refresh();
setInterval(() => refresh().catch((e) => console.error(e)), 1000);
