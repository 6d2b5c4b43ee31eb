// The workflow instances page: a list (#/) and one instance with its timeline (#/instance/ID).
// Everything comes from the HTTP API's list and history routes; nothing is built or fetched
// from elsewhere. Values from the API are only ever set as text, never parsed as HTML.
"use strict";

(() => {
  const API = new URL("../v1.0-beta1/workflows/dapr", location.href).pathname;
  const TOKEN_KEY = "kwf.apiToken";
  const REFRESH_KEY = "kwf.autoRefresh";
  const REFRESH_MS = 3000; // often enough to watch a run, light on the runtime
  const SEARCH_PAGES = 10; // an ID search scans at most this many pages of 1000 instances
  const PAGE_SIZE = 50;
  const STATUSES = ["RUNNING", "PENDING", "SUSPENDED", "STALLED", "COMPLETED", "FAILED", "TERMINATED",
    "CONTINUED_AS_NEW"];
  const ACTIVE = new Set(["RUNNING", "PENDING", "SUSPENDED", "STALLED"]);
  const KIND_LABELS = { workflow: "workflow", activity: "activity", timer: "timer", event: "event", child: "child" };
  const PLURALS = { activity: "activities", timer: "timers", event: "events", child: "children" };

  const app = document.getElementById("app");
  let timer = null;
  let viewToken = 0; // bumps on every navigation so late answers of an old view are dropped

  // -- API ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, params = {}) {
    const url = new URL(API + path, location.origin);
    for (const [key, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
    }
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["dapr-api-token"] = token;
    const response = await fetch(url, { headers, cache: "no-store" });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      throw new ApiError(response.status, body && body.errorCode, (body && body.message) || response.statusText);
    }
    return body;
  }

  // -- DOM helpers -------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function instanceHref(id) {
    return "#/instance/" + encodeURIComponent(id);
  }

  function statusBadge(status) {
    const text = (status || "UNKNOWN").replace(/_/g, " ").toLowerCase();
    return h("span", { class: "badge status-" + (status || "unknown").toLowerCase() }, text);
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + "m " + String(Math.floor(seconds % 60)).padStart(2, "0") + "s";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + "h " + String(minutes % 60).padStart(2, "0") + "m";
    return Math.floor(hours / 24) + "d " + (hours % 24) + "h";
  }

  function formatTime(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    const pad = (n, width = 2) => String(n).padStart(width, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
      `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  }

  function prettyJson(text) {
    if (text === null || text === undefined || text === "") return null;
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      return String(text);
    }
  }

  function errorBox(err) {
    if (err instanceof ApiError && err.status === 401) return tokenForm();
    const text = err instanceof ApiError ? `${err.message} (${err.status}${err.code ? " " + err.code : ""})` : String(err);
    return h("div", { class: "notice notice-error", role: "alert" }, text);
  }

  function tokenForm() {
    const input = h("input", { type: "password", name: "token", placeholder: "dapr-api-token", autocomplete: "off" });
    // The token is typed here and kept in sessionStorage, never put in the URL (browser
    // history and proxy logs keep URLs); POST, so not even a form submitted without this
    // script would put it in the address.
    const form = h("form", { class: "notice token-form", method: "post", onsubmit: (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value);
      route();
    } },
    h("strong", {}, "This API needs its token."),
    h("span", { class: "muted" }, " It is kept for this browser tab only."),
    h("div", { class: "row" }, input, h("button", { type: "submit" }, "Use token")));
    setTimeout(() => input.focus(), 0);
    return form;
  }

  function setRefresh(callback, active) {
    if (timer !== null) clearInterval(timer);
    timer = active ? setInterval(callback, REFRESH_MS) : null;
  }

  function autoRefreshOn() {
    return sessionStorage.getItem(REFRESH_KEY) !== "off";
  }

  function autoRefreshToggle(onChange) {
    const box = h("input", { type: "checkbox", id: "auto-refresh", checked: autoRefreshOn() });
    box.addEventListener("change", () => {
      sessionStorage.setItem(REFRESH_KEY, box.checked ? "on" : "off");
      onChange();
    });
    return h("label", { class: "toggle", for: "auto-refresh" }, box, " Auto-refresh");
  }

  // -- List of instances -------------------------------------------------------------

  function listFilters() {
    const query = new URLSearchParams(location.hash.split("?")[1] || "");
    return {
      status: query.get("status") || "",
      name: query.get("name") || "",
      q: query.get("q") || "",
      offset: Math.max(0, parseInt(query.get("offset") || "0", 10) || 0),
    };
  }

  function storeFilters(filters) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) if (value) query.set(key, value);
    const text = query.toString();
    history.replaceState(null, "", location.pathname + location.search + "#/" + (text ? "?" + text : ""));
  }

  async function fetchInstances(filters) {
    if (!filters.q) {
      return api("", { status: filters.status, name: filters.name, offset: filters.offset, limit: PAGE_SIZE });
    }
    // The API filters by status and name; the ID search looks through the pages here.
    const needle = filters.q.toLowerCase();
    const found = [];
    let offset = 0;
    for (let page = 0; page < SEARCH_PAGES && offset !== null; page++) {
      const body = await api("", { status: filters.status, name: filters.name, offset, limit: 1000 });
      found.push(...body.workflows.filter((w) => w.instanceID.toLowerCase().includes(needle)));
      offset = body.nextOffset;
    }
    return { workflows: found, total: found.length, nextOffset: null, searched: true };
  }

  function renderList() {
    const mine = ++viewToken;
    const filters = listFilters();
    document.title = "Workflows · kafka-workflows";

    const status = h("select", { name: "status", "aria-label": "Status" },
      h("option", { value: "" }, "Any status"),
      STATUSES.map((s) => h("option", { value: s, selected: s === filters.status }, s.replace(/_/g, " ").toLowerCase())));
    const name = h("input", { type: "search", name: "name", placeholder: "Workflow name", value: filters.name,
      "aria-label": "Workflow name" });
    const search = h("input", { type: "search", name: "q", placeholder: "Search instance ID", value: filters.q,
      "aria-label": "Search instance ID" });
    const stamp = h("span", { class: "muted stamp" });
    const results = h("div", { class: "results" });
    const summary = h("div", { class: "summary muted" });

    let typing = null;
    const apply = () => {
      filters.status = status.value;
      filters.name = name.value.trim();
      filters.q = search.value.trim();
      filters.offset = 0;
      storeFilters(filters);
      refresh();
    };
    const applySoon = () => {
      clearTimeout(typing);
      typing = setTimeout(apply, 300);
    };
    status.addEventListener("change", apply);
    name.addEventListener("input", applySoon);
    search.addEventListener("input", applySoon);
    search.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && search.value.trim()) {
        const only = results.querySelectorAll("tr[data-instance-id]");
        if (only.length === 1) location.hash = instanceHref(only[0].dataset.instanceId);
      }
    });

    let busy = false;
    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const body = await fetchInstances(filters);
        if (mine !== viewToken) return;
        results.replaceChildren(instanceTable(body.workflows, filters));
        summary.replaceChildren(pager(body, filters, refresh));
        stamp.textContent = "Updated " + new Date().toLocaleTimeString();
      } catch (err) {
        if (mine !== viewToken) return;
        if (err instanceof ApiError && err.status === 401) setRefresh(null, false); // keep the token form still
        results.replaceChildren(errorBox(err));
        summary.replaceChildren();
      } finally {
        busy = false;
      }
    }
    const schedule = () => setRefresh(refresh, autoRefreshOn());

    app.replaceChildren(
      h("section", { class: "page" },
        h("div", { class: "page-head" }, h("h1", {}, "Workflow instances"), stamp),
        h("div", { class: "toolbar card" }, status, name, search, h("span", { class: "spacer" }),
          autoRefreshToggle(schedule),
          h("button", { type: "button", onclick: refresh }, "Refresh")),
        h("div", { class: "card table-card" }, results), summary));
    refresh();
    schedule();
  }

  function instanceTable(workflows, filters) {
    if (!workflows.length) {
      const filtered = filters.status || filters.name || filters.q;
      return h("p", { class: "empty" }, filtered ? "No instance matches these filters." : "No workflow instances yet.");
    }
    const now = Date.now();
    return h("table", { class: "instances" },
      h("thead", {}, h("tr", {}, ["Instance ID", "Workflow", "Status", "Created", "Last updated", "Duration"]
        .map((title) => h("th", {}, title)))),
      h("tbody", {}, workflows.map((w) => {
        const created = Date.parse(w.createdAt);
        const ended = ACTIVE.has(w.runtimeStatus) ? now : Date.parse(w.lastUpdatedAt);
        return h("tr", { dataset: { instanceId: w.instanceID, status: w.runtimeStatus } },
          h("td", { class: "mono" }, h("a", { href: instanceHref(w.instanceID) }, w.instanceID)),
          h("td", {}, w.workflowName),
          h("td", {}, statusBadge(w.runtimeStatus)),
          h("td", { class: "nowrap" }, formatTime(w.createdAt)),
          h("td", { class: "nowrap" }, formatTime(w.lastUpdatedAt)),
          h("td", { class: "num" }, formatSeconds(Math.max(0, (ended - created) / 1000))));
      })));
  }

  function pager(body, filters, refresh) {
    if (body.searched) return h("span", {}, `${body.total} matching instance${body.total === 1 ? "" : "s"}`);
    const first = body.total ? filters.offset + 1 : 0;
    const last = filters.offset + body.workflows.length;
    const move = (offset) => () => {
      filters.offset = Math.max(0, offset);
      storeFilters(filters);
      refresh();
    };
    return h("div", { class: "pager" },
      h("span", {}, `${first}–${last} of ${body.total}`),
      h("button", { type: "button", disabled: filters.offset === 0, onclick: move(filters.offset - PAGE_SIZE) }, "Previous"),
      h("button", { type: "button", disabled: body.nextOffset === null, onclick: move(body.nextOffset) }, "Next"));
  }

  // -- One instance --------------------------------------------------------------------

  function describeInstance(body) {
    // The history's events carry what the state shows: input, output, custom status, error.
    const events = body.events || [];
    const started = events.find((e) => e.type === "ExecutionStarted");
    const completed = [...events].reverse().find((e) => e.type === "ExecutionCompleted");
    const custom = [...events].reverse().find((e) => e.type === "CustomStatusSet");
    // A STALLED instance's reason is its latest ExecutionStalled.
    const stalled = [...events].reverse().find((e) => e.type === "ExecutionStalled");
    return {
      id: body.instanceID,
      name: body.workflowName,
      status: body.runtimeStatus,
      createdAt: events.length ? events[0].timestamp : null,
      updatedAt: events.length ? events[events.length - 1].timestamp : null,
      input: started ? started.event.input : null,
      parent: started && started.event.parent ? started.event.parent : null,
      output: completed ? completed.event.output : null,
      failure: completed ? completed.event.failure : null,
      customStatus: custom ? custom.event.status : null,
      stall: body.runtimeStatus === "STALLED" && stalled ? stalled.event : null,
      executionId: started ? started.executionID : "",
      timeline: body.timeline || [],
    };
  }

  function renderInstance(id) {
    const mine = ++viewToken;
    document.title = id + " · kafka-workflows";
    const content = h("div", { class: "instance-body" }, h("p", { class: "muted" }, "Loading…"));
    const stamp = h("span", { class: "muted stamp" });
    app.replaceChildren(h("section", { class: "page" },
      h("nav", { class: "crumbs" }, h("a", { href: "#/" }, "Instances"), " / ", h("span", { class: "mono" }, id)),
      content));

    let busy = false;
    let active = true;
    async function refresh() {
      if (busy) return;
      busy = true;
      try {
        const body = await api("/" + encodeURIComponent(id) + "/history");
        if (mine !== viewToken) return;
        const instance = describeInstance(body);
        active = ACTIVE.has(instance.status);
        stamp.textContent = "Updated " + new Date().toLocaleTimeString();
        content.replaceChildren(instanceView(instance, stamp, schedule));
      } catch (err) {
        if (mine !== viewToken) return;
        active = false;
        content.replaceChildren(errorBox(err),
          err instanceof ApiError && err.status === 404 ? h("p", {}, h("a", { href: "#/" }, "Back to the list")) : null);
      } finally {
        busy = false;
        if (mine === viewToken) schedule();
      }
    }
    function schedule() {
      setRefresh(refresh, active && autoRefreshOn());
    }
    refresh();
  }

  function instanceView(instance, stamp, schedule) {
    const finish = instance.updatedAt ? Date.parse(instance.updatedAt) : Date.now();
    const created = instance.createdAt ? Date.parse(instance.createdAt) : finish;
    const end = ACTIVE.has(instance.status) ? Math.max(finish, Date.now()) : finish;
    const facts = h("dl", { class: "facts" },
      fact("Workflow", instance.name),
      fact("Created", formatTime(instance.createdAt)),
      fact("Last updated", formatTime(instance.updatedAt)),
      fact("Duration", formatSeconds((end - created) / 1000)),
      fact("Execution", h("span", { class: "mono" }, instance.executionId.slice(0, 12))),
      instance.parent ? fact("Parent", h("a", { class: "mono", href: instanceHref(instance.parent.instance_id) },
        instance.parent.instance_id)) : null);
    const head = h("div", { class: "instance-head card" },
      h("div", { class: "title-row" },
        h("h1", { class: "mono" }, instance.id), statusBadge(instance.status),
        h("span", { class: "spacer" }), stamp,
        ACTIVE.has(instance.status) ? autoRefreshToggle(schedule) : null),
      facts);

    const failure = instance.failure ? h("div", { class: "error-panel", role: "alert" },
      h("div", { class: "error-title" }, "Failed: " + (instance.failure.type || "error")),
      h("pre", { class: "error-message" }, instance.failure.message || ""),
      instance.failure.stack_trace ? h("details", {}, h("summary", {}, "Stack trace"),
        h("pre", { class: "stack" }, instance.failure.stack_trace)) : null) : null;

    const stall = instance.stall ? h("div", { class: "stall-panel", role: "status" },
      h("div", { class: "stall-title" }, "Stalled: " + instance.stall.reason),
      h("pre", { class: "error-message" }, instance.stall.message || "")) : null;

    const values = h("div", { class: "values" },
      valueCard("Input", instance.input),
      valueCard(instance.status === "TERMINATED" ? "Output (terminated)" : "Output", instance.output,
        instance.failure ? "no output: the instance failed" : ACTIVE.has(instance.status) ? "not finished yet" : "none"),
      valueCard("Custom status", instance.customStatus));

    return h("div", {}, head, failure, stall, values, timelineCard(instance.timeline, created, end));
  }

  function fact(label, value) {
    return h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, value === "" || value === null ? "—" : value));
  }

  function valueCard(title, text, emptyText = "none") {
    const pretty = prettyJson(text);
    return h("div", { class: "card value" }, h("h2", {}, title),
      pretty === null ? h("p", { class: "muted" }, emptyText) : h("pre", { class: "json" }, pretty));
  }

  // -- Gantt -------------------------------------------------------------------------

  function niceStep(span) {
    const raw = span / 6;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const factor of [1, 2, 5, 10]) if (raw <= factor * power) return factor * power;
    return 10 * power;
  }

  function axis(totalSeconds) {
    const ticks = h("div", { class: "axis" });
    if (totalSeconds <= 0) return ticks;
    const step = niceStep(totalSeconds);
    for (let t = 0; t <= totalSeconds + 1e-9; t += step) {
      ticks.append(h("span", { class: "tick", style: { left: (t / totalSeconds) * 100 + "%" } },
        t === 0 ? "0" : formatSeconds(t)));
    }
    return ticks;
  }

  function timelineCard(rows, origin, finish) {
    const total = Math.max((finish - origin) / 1000, 0.001);
    const position = (moment) => Math.min(100, Math.max(0, ((moment - origin) / 1000 / total) * 100));
    const counts = {};
    for (const row of rows) counts[row.kind] = (counts[row.kind] || 0) + 1;
    const legend = h("div", { class: "legend" },
      ["activity", "timer", "event", "child"].filter((k) => counts[k]).map((k) =>
        h("span", { class: "legend-item" }, h("span", { class: "swatch kind-" + k }),
          `${counts[k]} ${counts[k] === 1 ? k : PLURALS[k]}`)),
      rows.some((r) => r.outcome === "failed") ? h("span", { class: "legend-item" }, h("span", { class: "swatch failed" }), "failed") : null);

    const body = h("div", { class: "gantt", role: "table", "aria-label": "Timeline" },
      h("div", { class: "gantt-row gantt-head", role: "row" },
        h("div", { class: "label", role: "columnheader" }, "Step"),
        h("div", { class: "track", role: "columnheader" }, axis(total)),
        h("div", { class: "duration", role: "columnheader" }, "Duration"),
        h("div", { class: "outcome", role: "columnheader" }, "Outcome")),
      rows.map((row) => ganttRow(row, position, finish)));
    // Grid lines under the bars, one per axis tick.
    body.style.setProperty("--grid", (niceStep(total) / total) * 100 + "%");
    return h("div", { class: "card timeline-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Timeline"), legend),
      rows.length ? body : h("p", { class: "muted" }, "No history yet."));
  }

  function displayName(row) {
    // A timer is named for its UTC due time ("until 2024-05-06 07:00:05Z"); show it in local time.
    const due = row.kind === "timer" && row.name.match(/^until (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)Z$/);
    if (!due) return row.name;
    const text = formatTime(`${due[1]}T${due[2]}Z`);
    return "until " + (text.slice(0, 10) === formatTime(row.start).slice(0, 10) ? text.slice(11) : text);
  }

  function ganttRow(row, position, finish) {
    const start = Date.parse(row.start);
    const end = row.end ? Date.parse(row.end) : finish;
    const instant = row.end !== null && row.seconds === 0 && (row.kind === "event" || row.kind === "workflow");
    const failed = row.outcome === "failed";
    const left = position(start);
    const classes = ["bar", "kind-" + row.kind, "outcome-" + row.outcome];
    if (row.end === null) classes.push("open");
    const tip = [`${KIND_LABELS[row.kind] || row.kind} ${row.name}`,
      `start ${formatTime(row.start)}`, row.end ? `end ${formatTime(row.end)}` : "still open",
      row.seconds !== null ? `duration ${formatSeconds(row.seconds)}` : null,
      row.attempt > 1 ? `attempt ${row.attempt}` : null, `outcome ${row.outcome}`, row.detail].filter(Boolean).join("\n");
    const mark = instant
      ? h("span", { class: "marker kind-" + row.kind, style: { left: left + "%" }, title: tip,
        dataset: { kind: row.kind } })
      : h("span", { class: classes.join(" "), title: tip, dataset: { kind: row.kind, outcome: row.outcome },
        style: { left: left + "%", width: `max(3px, ${Math.max(0, position(end) - left)}%)` } });
    const name = row.kind === "child" && row.childInstanceId
      ? h("a", { href: instanceHref(row.childInstanceId), title: "Open child " + row.childInstanceId }, row.name)
      : h("span", { title: row.name }, displayName(row));
    // The workflow's own failure is in the error panel above the timeline.
    const detail = row.kind === "workflow" && row.outcome === "failed" ? null : row.detail;
    return h("div", { class: "gantt-row" + (failed ? " failed" : "") + (row.kind === "workflow" ? " workflow" : ""),
      role: "row", dataset: { kind: row.kind, name: row.name } },
    h("div", { class: "label", role: "cell" },
      h("span", { class: "kind kind-" + row.kind }, KIND_LABELS[row.kind] || row.kind),
      h("span", { class: "name" }, name),
      row.attempt > 1 ? h("span", { class: "attempt", title: "attempt " + row.attempt }, "try " + row.attempt) : null),
    h("div", { class: "track", role: "cell" }, mark),
    h("div", { class: "duration", role: "cell" }, instant ? "" : formatSeconds(row.seconds === null
      ? (finish - start) / 1000 : row.seconds)),
    h("div", { class: "outcome", role: "cell" }, h("span", { class: "outcome-text outcome-" + row.outcome },
      row.outcome.replace(/_/g, " "))),
    detail ? h("div", { class: "detail" + (failed ? " error-text" : ""), role: "cell" }, detail) : null);
  }

  // -- Routing -------------------------------------------------------------------------

  function route() {
    setRefresh(null, false);
    document.getElementById("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
    const hash = location.hash.replace(/^#/, "");
    const match = hash.match(/^\/instance\/([^?]+)/);
    if (match) renderInstance(decodeURIComponent(match[1]));
    else renderList();
  }

  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    route();
  });
  window.addEventListener("hashchange", route);
  route();
})();
