// Finished tasks: each output with the request that made it, the credits charged, a download
// link and "use as reference". Requests made in this browser are remembered (not the key).

import { h } from "./dom.js";

const REQUESTS_STORE = "sfumato.playground.requests";
const REMEMBERED = 50;

export const requests = {
  all() {
    try {
      return JSON.parse(localStorage.getItem(REQUESTS_STORE) || "{}");
    } catch {
      return {};
    }
  },
  get(taskId) {
    return this.all()[taskId] || null;
  },
  remember(taskId, request) {
    const entries = Object.entries({ ...this.all(), [taskId]: { prompt: request.prompt, params: request.params } });
    localStorage.setItem(REQUESTS_STORE, JSON.stringify(Object.fromEntries(entries.slice(-REMEMBERED))));
  },
};

function paramsList(request) {
  if (!request) return h("p", { class: "hint" }, "Made elsewhere: its prompt and params are not known here.");
  const shown = Object.entries(request.params || {})
    .filter(([key]) => key !== "referenceMediaItems")
    .map(([key, value]) => h("div", {}, h("dt", {}, key), h("dd", {}, value)));
  const references = (request.params && request.params.referenceMediaItems) || [];
  return h("dl", { class: "task-params" },
    h("div", {}, h("dt", {}, "prompt"), h("dd", {}, request.prompt)),
    shown,
    references.length ? h("div", {}, h("dt", {}, "references"), h("dd", {}, String(references.length))) : null);
}

export function taskCard(task, { onReuse }) {
  const request = requests.get(task.id);
  const media = (task.result && task.result.media) || [];
  const figures = media.map((item, index) => h("figure", {},
    h("a", { href: item.url, target: "_blank", rel: "noopener" },
      h("img", { src: item.url, alt: `Output ${index + 1} of ${task.id} (${task.model})`, loading: "lazy",
                 width: item.width, height: item.height })),
    h("figcaption", {},
      `${item.width}×${item.height} ${item.mimeType}`,
      h("span", { class: "actions" },
        h("a", { class: "button secondary small", href: item.url, download: item.name }, "Download"),
        h("button", { type: "button", class: "small", onclick: () => onReuse(item) }, "Use as reference")))));
  const failure = task.error ? h("p", { class: "field-error" }, `${task.error.code}: ${task.error.message}`) : null;
  return h("li", { class: `card status-${task.status}`, "data-task": task.id },
    h("header", {},
      h("strong", {}, task.model), " ",
      h("span", { class: `badge ${task.status}` }, task.status), " ",
      h("span", { class: "credits" }, `${task.final_credits} credits charged`)),
    figures, failure, paramsList(request),
    h("p", { class: "hint" }, h("code", {}, task.id), ` · ${new Date(task.created_at).toLocaleString()}`));
}

export function recentRow(task, { onShow }) {
  const created = new Date(task.created_at).toLocaleString();
  const credits = task.status === "succeeded" ? `${task.final_credits} credits`
    : task.status === "queued" || task.status === "running" ? `${task.reserved_credits} credits reserved` : "refunded";
  return h("li", {},
    h("span", { class: `badge ${task.status}` }, task.status), " ",
    h("span", {}, task.model), " ",
    h("span", { class: "hint" }, `${created} · ${credits}`), " ",
    task.status === "succeeded"
      ? h("button", { type: "button", class: "secondary small", onclick: () => onShow(task) },
        "Show", h("span", { class: "visually-hidden" }, ` ${task.id}`))
      : null);
}
