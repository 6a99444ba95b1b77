// The console: sign in with the admin key, then accounts, usage, providers and the audit log,
// all through the admin API (/admin/v1) with the key kept in this browser.

import { ApiError } from "./api.js";
import { Accounts, badge, cell, when } from "./console-accounts.js";
import { admin, adminKey } from "./console-api.js";
import { usageChart } from "./console-chart.js";
import { byId, h } from "./dom.js";

const accounts = new Accounts({ onChange: () => refreshAudit() });
const usage = { rows: [], from: "", to: "", measure: "tasks" };
let auditCursor = null;

const today = () => new Date().toISOString().slice(0, 10);
const daysAgo = (n) => new Date(Date.now() - n * 86400000).toISOString().slice(0, 10);
const empty = (columns, text) => h("tr", { class: "empty" }, h("td", { colspan: columns }, text));

// `/console#key=...` works like the playground's demo link: a fragment never reaches the server;
// the key is stored and taken out of the address bar at once.
function takeKeyFromFragment() {
  const match = location.hash.match(/^#key=([^&]+)/);
  if (!match) return;
  adminKey.set(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

function signedIn(yes) {
  byId("console").hidden = !yes;
  byId("sections").hidden = !yes;
  if (!yes) byId("account-detail").hidden = true;
}

function refusal(error) {
  if (!(error instanceof ApiError)) return `Could not reach the server: ${error.message}`;
  if (error.status === 401 || error.status === 403) return "This server does not accept that key as its admin key.";
  if (error.status === 404) return "This server has no admin API.";
  return `Could not sign in: ${error.message}`;
}

async function signIn() {
  const status = byId("key-status");
  if (!adminKey.get()) {
    status.textContent = "Paste the admin key (SFUMATO_ADMIN_KEY, or sfumato admin-key prints it).";
    signedIn(false);
    return;
  }
  try {
    await admin.accounts();
  } catch (error) {
    status.textContent = refusal(error);
    signedIn(false);
    return;
  }
  status.textContent = "Signed in.";
  signedIn(true);
  await Promise.all([accounts.list(), refreshUsage(), refreshProviders(), refreshAudit()]);
}

function usageRow(row) {
  const tasks = row.tasks || {};
  const n = (value) => String(value ?? 0);
  return h("tr", {},
    cell("Day", String(row.day || "").slice(0, 10)), cell("Model", row.model || "all"),
    cell("Succeeded", n(tasks.succeeded)), cell("Failed", n(tasks.failed)), cell("Canceled", n(tasks.canceled)),
    cell("Queued", n(tasks.queued)), cell("Running", n(tasks.running)),
    cell("Charged", n(row.credits_charged)), cell("Refunded", n(row.credits_refunded)));
}

function drawUsage() {
  const box = byId("usage-chart");
  const width = Math.max(Math.floor(box.clientWidth), 240);
  const chart = usageChart(usage.rows, { from: usage.from, to: usage.to, measure: usage.measure, width });
  box.replaceChildren(chart.svg);
  byId("usage-legend").replaceChildren(...chart.legend);
  byId("usage-summary").textContent = `${chart.total} ${chart.label} from ${usage.from} to ${usage.to}.`;
}

async function refreshUsage() {
  usage.from = byId("usage-from").value || daysAgo(13);
  usage.to = byId("usage-to").value || today();
  usage.measure = byId("usage-measure").value;
  try {
    const page = await admin.usage({ from: usage.from, to: usage.to });
    usage.rows = page.data;
  } catch (error) {
    usage.rows = [];
    byId("usage-summary").textContent = `Could not read the usage: ${error.message}`;
    return;
  }
  byId("usage-rows").replaceChildren(...(usage.rows.length ? usage.rows.map(usageRow) : [empty(9, "No usage.")]));
  drawUsage();
}

// Attempts arrive as {outcome: count}; "ok" is success, every other outcome an error code.
function attemptsText(attempts) {
  if (!attempts || !Object.keys(attempts).length) return "none";
  const ok = Number(attempts.ok || 0);
  const failed = Object.entries(attempts).filter(([o]) => o !== "ok").reduce((a, [, n]) => a + Number(n || 0), 0);
  const detail = Object.entries(attempts).filter(([o]) => o !== "ok").map(([o, n]) => `${o} ${n}`).join(", ");
  return `${ok} ok / ${failed} failed${detail ? ` (${detail})` : ""}`;
}

function failureItem(failure) {
  if (typeof failure !== "object" || failure === null) return h("li", {}, String(failure));
  const parts = [when(failure.at), failure.code, failure.message]
    .filter(Boolean).join(" · ");
  return h("li", {}, parts, failure.task_id ? [" ", h("code", {}, failure.task_id)] : []);
}

const CIRCUIT_BADGE = { closed: "succeeded", open: "failed", half_open: "running" };

// A route is live when its key variable is set; its circuit is null until this process used it.
function routeRow(route) {
  const circuit = route.circuit || "unused";
  const failures = Array.isArray(route.recent_failures) ? route.recent_failures : [];
  const where = [route.upstream_model, route.host].filter(Boolean).join(" at ");
  return h("tr", { "data-route": `${route.model} ${route.route}` },
    cell("Model", route.model),
    cell("Route", h("code", {}, route.route), where ? [h("br"), h("small", {}, where)] : []),
    cell("Live", route.live ? badge("live", "succeeded") : badge(route.missing ? `off: ${route.missing} unset` : "off", "canceled")),
    cell("Circuit", badge(circuit.replace("_", "-"), CIRCUIT_BADGE[circuit] || "")),
    cell("Attempts", attemptsText(route.attempts)),
    cell("Failed tasks", String(route.failed_tasks ?? 0),
      failures.length ? h("ul", { class: "failures" }, failures.map(failureItem)) : []));
}

async function refreshProviders() {
  const box = byId("providers");
  let routes;
  try {
    routes = (await admin.providers()).data;
  } catch (error) {
    box.replaceChildren(h("p", { class: "status" }, `Could not read the providers: ${error.message}`));
    return;
  }
  const byProvider = new Map();
  for (const route of routes) {
    const name = route.provider || "unknown";
    if (!byProvider.has(name)) byProvider.set(name, []);
    byProvider.get(name).push(route);
  }
  box.replaceChildren(...[...byProvider.entries()].map(([name, list]) => h("div", { class: "provider", "data-provider": name },
    h("h3", {}, name),
    h("div", { class: "scroll" }, h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ["Model", "Route", "Live", "Circuit", "Attempts", "Failed tasks"].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.map(routeRow)))))));
  if (!routes.length) box.replaceChildren(h("p", { class: "status" }, "No provider routes."));
}

function auditRow(entry) {
  const details = entry.details && Object.keys(entry.details).length ? JSON.stringify(entry.details) : "";
  return h("tr", { "data-audit": entry.id },
    cell("When", when(entry.at)), cell("Actor", entry.actor || "–"), cell("Action", h("code", {}, entry.action)),
    cell("Target", entry.target ? h("code", {}, entry.target) : "–"),
    cell("Request id", entry.request_id ? h("code", {}, entry.request_id) : "–"),
    cell("Details", details ? h("code", { class: "details" }, details) : ""));
}

let auditTurn = 0;

async function refreshAudit(more = false) {
  const turn = ++auditTurn; // writes in quick succession: only the newest answer is shown
  try {
    const page = await admin.audit(more ? auditCursor : null);
    if (turn !== auditTurn) return;
    const rows = page.data.map(auditRow);
    if (more) byId("audit").append(...rows);
    else byId("audit").replaceChildren(...(rows.length ? rows : [empty(6, "Nothing yet.")]));
    auditCursor = page.next_cursor;
    byId("audit-more").hidden = !page.has_more;
  } catch (error) {
    byId("audit").replaceChildren(empty(6, `Could not read the audit log: ${error.message}`));
  }
}

function start() {
  takeKeyFromFragment();
  byId("admin-key").value = adminKey.get();
  byId("usage-from").value = daysAgo(13);
  byId("usage-to").value = today();
  byId("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    adminKey.set(byId("admin-key").value.trim());
    signIn();
  });
  byId("sign-out").addEventListener("click", () => {
    adminKey.clear();
    byId("admin-key").value = "";
    byId("key-status").textContent = "Signed out: the key is gone from this browser.";
    signedIn(false);
  });
  accounts.wire();
  byId("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    refreshUsage();
  });
  byId("usage-measure").addEventListener("change", () => {
    usage.measure = byId("usage-measure").value;
    drawUsage();
  });
  byId("providers-refresh").addEventListener("click", refreshProviders);
  byId("audit-refresh").addEventListener("click", () => refreshAudit());
  byId("audit-more").addEventListener("click", () => refreshAudit(true));
  let drawn = 0;
  new ResizeObserver(() => {
    const width = Math.floor(byId("usage-chart").clientWidth);
    if (width && width !== drawn && !byId("console").hidden) {
      drawn = width;
      drawUsage();
    }
  }).observe(byId("usage-chart"));
  document.body.dataset.ready = "true";
  if (adminKey.get()) signIn();
  else byId("key-status").textContent = "Paste the admin key (SFUMATO_ADMIN_KEY, or sfumato admin-key prints it).";
}

start();
