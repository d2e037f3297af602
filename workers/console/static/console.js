// The console's own script: the live queues (one EventSource, closed while the tab is hidden),
// the history chart, and the actions (replay, purge, cancel, scale), each a POST carrying the
// session's CSRF token. Nothing is fetched from any host but the console's.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify(body || {}),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { /* an empty answer */ }
  return {status: response.status, data};
}

const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];

function chart(element, names, title) {
  const series = [{}].concat(names.map((name, i) => ({label: name, stroke: COLORS[i % COLORS.length], width: 2})));
  const width = Math.max(320, element.clientWidth || 600);
  return new uPlot({width, height: 220, series, axes: [{}, {label: title}], scales: {x: {time: true}}},
                   [[]].concat(names.map(() => [])), element);
}

// -- the queues page: one stream, paused while hidden -----------------------------------------
function liveQueues() {
  const table = document.getElementById("queues");
  if (!table) return;
  const names = JSON.parse(document.getElementById("queue-names").textContent);
  const depth = chart(document.getElementById("depth-chart"), names, "messages");
  const rate = chart(document.getElementById("rate-chart"), names, "handled/s");
  const keep = 400;  // points on screen: an hour of history and some minutes live
  const data = {t: [], depth: names.map(() => []), rate: names.map(() => [])};
  let source = null;

  function show(rows) {
    const t = Date.now() / 1000;
    data.t.push(t);
    rows.forEach(row => {
      const i = names.indexOf(row.queue);
      const tr = table.querySelector(`tr[data-queue="${row.queue}"]`);
      if (tr) {
        for (const cell of tr.querySelectorAll("td[data-k]")) {
          const value = row[cell.dataset.k];
          const text = value === null || value === undefined ? "-" :
            (cell.dataset.k === "oldest_age_s" ? Math.round(value) : value);
          const target = cell.querySelector("a") || cell;
          target.textContent = text;
        }
      }
      if (i >= 0) {
        data.depth[i].push((row.visible || 0) + (row.in_flight || 0));
        data.rate[i].push(row.handled_per_s || 0);
      }
    });
    if (data.t.length > keep) {
      data.t.shift(); data.depth.forEach(s => s.shift()); data.rate.forEach(s => s.shift());
    }
    depth.setData([data.t].concat(data.depth));
    rate.setData([data.t].concat(data.rate));
    document.getElementById("live").dataset.updated = String(t);
  }

  // The last hour from the history (a point a minute), then live points as they come.
  async function seed() {
    const answers = await Promise.all(names.map(q =>
      fetch(`/api/queues/${q}/history?minutes=60`, {credentials: "same-origin"})
        .then(r => r.ok ? r.json() : {points: []})));
    const times = [...new Set(answers.flatMap(a => a.points.map(p => p.t)))].sort((a, b) => a - b);
    if (!times.length || data.t.length) return;
    data.t.push(...times);
    answers.forEach((answer, i) => {
      const at = new Map(answer.points.map(p => [p.t, p]));
      for (const t of times) {
        const p = at.get(t);
        data.depth[i].push(p ? (p.visible || 0) + (p.in_flight || 0) : null);
        data.rate[i].push(p ? Math.round((p.handled || 0) / 60 * 100) / 100 : null);
      }
    });
    depth.setData([data.t].concat(data.depth));
    rate.setData([data.t].concat(data.rate));
  }

  function open() {
    if (source) return;
    source = new EventSource("/api/stream");
    source.addEventListener("queues", event => show(JSON.parse(event.data).queues));
  }
  function close() { if (source) { source.close(); source = null; } }
  // A hidden tab costs nothing: its stream is closed until it is shown again.
  document.addEventListener("visibilitychange", () => document.hidden ? close() : open());
  seed().finally(() => { if (!document.hidden) open(); });
}

// -- a queue's history --------------------------------------------------------------------------
async function history() {
  const element = document.getElementById("history-chart");
  if (!element) return;
  const {queue, minutes} = element.dataset;
  const response = await fetch(`/api/queues/${queue}/history?minutes=${minutes}`, {credentials: "same-origin"});
  const points = (await response.json()).points;
  if (!points.length) { document.getElementById("history-empty").hidden = false; }
  const keys = ["visible", "in_flight", "dlq", "handled"];
  const plot = chart(element, keys, "messages");
  plot.setData([points.map(p => p.t)].concat(keys.map(k => points.map(p => p[k]))));
}

// -- actions ------------------------------------------------------------------------------------
function actions() {
  const replay = document.getElementById("replay");
  if (replay) {
    const out = document.getElementById("replay-result");
    const body = dryRun => {
      const form = new FormData(replay);
      const b = {q: form.get("q") || "", dry_run: dryRun};
      if (form.get("limit")) b.limit = Number(form.get("limit"));
      if (form.get("rate")) b.rate = Number(form.get("rate"));
      return b;
    };
    document.getElementById("dry-run").addEventListener("click", async () => {
      const {status, data} = await post(`/api/dlq/${replay.dataset.queue}/replay`, body(true));
      out.textContent = status === 200 ? `${data.matched} would be replayed` : data.error;
    });
    replay.addEventListener("submit", async event => {
      event.preventDefault();
      const {status, data} = await post(`/api/dlq/${replay.dataset.queue}/replay`, body(false));
      out.textContent = status === 202 ? `task ${data.task}: replaying ${data.matched}` : data.error;
      out.dataset.task = data.task || "";
    });
  }
  const purge = document.getElementById("purge");
  if (purge) {
    purge.addEventListener("submit", async event => {
      event.preventDefault();
      const confirm = new FormData(purge).get("confirm");
      const {status, data} = await post(`/api/dlq/${purge.dataset.queue}/purge`, {confirm});
      document.getElementById("purge-result").textContent =
        status === 200 ? `purged about ${data.purged}` : data.error;
    });
  }
  document.addEventListener("submit", async event => {
    const form = event.target.closest("form.scale");
    if (!form) return;
    event.preventDefault();
    const {host, queue} = form.dataset;
    const processes = Number(new FormData(form).get("processes"));
    const {status, data} = await post("/api/fleet/scale", {host, queue, processes});
    form.querySelector("output").textContent = status === 202
      ? `wanted ${processes}; ${host} applies it within 5 s` : data.error;
    if (status === 202) form.closest("tr").querySelector('[data-k="wanted"]').textContent = processes;
  });
  document.addEventListener("click", async event => {
    const button = event.target.closest("button.cancel");
    if (!button) return;
    button.disabled = true;
    await post(`/api/tasks/${button.dataset.task}/cancel`);
  });
}

document.addEventListener("DOMContentLoaded", () => { liveQueues(); history(); actions(); });
