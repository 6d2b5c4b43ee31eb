// A glance at the runtime's own numbers, read from its Prometheus endpoint (/metrics) every
// few seconds: the figures of the Grafana dashboard (grafana/kafka-workflows.json), summed
// over every label, for a look without Grafana. Separate from app.js: it only fills #glance.
"use strict";

(() => {
  const METRICS = new URL("../metrics", location.href).pathname;
  const TOKEN_KEY = "kwf.apiToken";
  const REFRESH_MS = 3000;
  // [label, metric, labels that must match (all others summed over)]
  const FIGURES = [
    ["started", "kwf_workflow_starts_total", {}],
    ["completed", "kwf_workflow_completions_total", { status: "COMPLETED" }],
    ["failed", "kwf_workflow_completions_total", { status: "FAILED" }],
    ["activities running", "kwf_activities_in_flight", {}],
    ["timers pending", "kwf_timers_pending", {}],
    ["consumer lag", "streams_consumer_lag_records", {}],
    ["dead letters", "streams_dead_letters_total", {}],
  ];
  const panel = document.getElementById("glance");
  if (!panel) return;

  // Prometheus' text format: `name{a="x",b="y"} value`, comments start with #.
  function parse(text) {
    const samples = [];
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!match) continue;
      const labels = {};
      for (const pair of (match[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[pair[1]] = pair[2];
      }
      samples.push({ name: match[1], labels, value: Number(match[3]) });
    }
    return samples;
  }

  function total(samples, name, wanted) {
    let sum = 0;
    for (const s of samples) {
      if (s.name !== name || !Number.isFinite(s.value)) continue;
      if (Object.entries(wanted).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
    return sum;
  }

  function render(samples) {
    panel.replaceChildren(...FIGURES.map(([label, name, wanted]) => {
      const figure = document.createElement("div");
      figure.className = "figure";
      figure.dataset.metric = label;
      const value = document.createElement("strong");
      value.textContent = Math.round(total(samples, name, wanted)).toLocaleString();
      const caption = document.createElement("span");
      caption.textContent = label;
      figure.append(value, caption);
      return figure;
    }));
    panel.hidden = false;
  }

  async function refresh() {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["dapr-api-token"] = token;
    try {
      const response = await fetch(METRICS, { headers, cache: "no-store" });
      if (response.ok) render(parse(await response.text()));
    } catch (_) {
      // The runtime is restarting or unreachable: keep the last figures.
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
