// The playground: pick a model, fill the form the catalog describes, follow the task, see the
// image. Everything goes through the public API with the key kept in this browser.

import { ApiError, api, followTask, keyStore } from "./api.js";
import { byId, h, localized } from "./dom.js";
import { clearErrors, price, readParams, renderParams, showErrors, updatePromptCounter } from "./form.js";
import { recentRow, requests, taskCard } from "./gallery.js";
import { References } from "./references.js";

const state = { models: [], model: null, pending: null, creating: false };
const form = byId("task-form");
const prompt = byId("prompt");
const references = new References({ onChange: updateButton, onError: showReferenceProblems });

function notice(message) {
  byId("notice").textContent = message;
}

// What the status bar says when the server refuses a task: the newest outcome replaces an older one.
function refused(error) {
  const fields = error.details.length;
  const where = fields ? ` See the ${fields === 1 ? "marked field" : `${fields} marked fields`}.` : "";
  return `Not created: ${error.message}${where}`;
}

function requestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `playground-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// `sfumato serve --demo` prints /playground#key=...: a fragment never reaches the server; it is
// stored like a pasted key and removed from the address bar at once.
function takeKeyFromFragment() {
  const match = location.hash.match(/^#key=([^&]+)/);
  if (!match) return;
  keyStore.set(decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

async function refreshAccount() {
  const status = byId("key-status");
  if (!keyStore.get()) {
    status.textContent = "Paste an API key to generate (the demo server prints one: sfumato demo-key).";
    byId("balance").textContent = "–";
    byId("account-name").textContent = "";
    return false;
  }
  try {
    const account = await api.account();
    byId("balance").textContent = String(account.balance);
    byId("account-name").textContent = `(account ${account.name})`;
    status.textContent = "Key accepted.";
    return true;
  } catch (error) {
    status.textContent = error.status === 401 ? "This server does not accept that key." : `Could not check the key: ${error.message}`;
    return false;
  }
}

async function refreshTasks() {
  if (!keyStore.get()) return byId("recent").replaceChildren();
  try {
    const page = await api.tasks(10);
    byId("recent").replaceChildren(...page.data.map((task) => recentRow(task, { onShow: showFresh })));
  } catch (error) {
    byId("recent").replaceChildren(h("li", { class: "hint" }, `Could not list tasks: ${error.message}`));
  }
}

function showTask(task) {
  const card = taskCard(task, { onReuse: reuse });
  const existing = byId("gallery").querySelector(`[data-task="${CSS.escape(task.id)}"]`);
  if (existing) existing.replaceWith(card);
  else byId("gallery").prepend(card);
}

async function showFresh(task) {
  try {
    showTask(await api.task(task.id)); // fresh signed URLs
  } catch (error) {
    notice(`Could not load ${task.id}: ${error.message}`);
  }
}

function reuse(media) {
  const problem = references.addOutput(media);
  notice(problem || `${media.name} added as a reference image.`);
  if (!problem) byId("reference-files").focus();
}

function showReferenceProblems(problems) {
  const slot = byId("err-references");
  slot.replaceChildren(...problems.map((p) => h("span", {}, p)));
}

function updateButton() {
  const button = byId("generate");
  if (!state.model) return;
  const credits = price(state.model, readParams(byId("params")));
  button.textContent = references.uploading ? "Uploading references…" : `Generate · ${credits} credits`;
  button.disabled = state.creating || references.uploading;
}

function selectModel(id) {
  state.model = state.models.find((m) => m.id === id) || state.models[0];
  const model = state.model;
  byId("model").value = model.id;
  byId("model-summary").replaceChildren(localized(model.summary), " ",
    h("a", { href: `/models/${encodeURIComponent(model.id)}` }, "Model page"));
  renderParams(byId("params"), model);
  references.setModel(model);
  clearErrors(form);
  updatePromptCounter(prompt, byId("prompt-count"), model);
  updateButton();
}

function progressItem(task) {
  const started = performance.now();
  const text = h("span", {}, "");
  const bar = h("progress", { "aria-label": `Progress of ${task.id}` });
  const cancel = h("button", { type: "button", class: "secondary small", onclick: async () => {
    try {
      await api.cancel(task.id);
    } catch (error) {
      notice(`Could not cancel: ${error.message}`);
    }
  } }, "Cancel");
  const preview = h("img", { class: "preview", alt: "", hidden: true });
  const item = h("div", { class: "job", "data-task": task.id }, text, bar, cancel, preview);
  byId("progress").prepend(item);
  return {
    // A partial image the model streamed: coarse first, finer after, until the result replaces it.
    preview(partial) {
      preview.hidden = false;
      preview.src = partial.url;
      preview.width = partial.width;
      preview.height = partial.height;
      preview.alt = `Preview ${partial.index + 1} of ${task.id} (${task.model}), still being made`;
      preview.dataset.index = String(partial.index);
    },
    update(current) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      text.textContent = `${current.model}: ${current.status} (${seconds} s)`;
      if (current.status !== "queued" && current.status !== "running") item.remove();
    },
  };
}

async function track(task) {
  const progress = progressItem(task);
  progress.update(task);
  let last = task;
  try {
    last = await followTask(task.id, (current) => progress.update(current), undefined,
      (partial) => progress.preview(partial));
  } catch (error) {
    notice(`Lost track of ${task.id}: ${error.message}`);
    return;
  }
  progress.update(last);
  notice(`${last.model}: ${last.status}${last.error ? ` (${last.error.message})` : ""}.`);
  showTask(last);
  refreshAccount();
  refreshTasks();
}

function taskRequest() {
  const params = readParams(byId("params"));
  if (state.model.references && references.media.length) params.referenceMediaItems = references.media;
  return { model: state.model.id, prompt: prompt.value, params };
}

async function submit(event) {
  event.preventDefault();
  clearErrors(form);
  if (!keyStore.get()) {
    byId("key-status").textContent = "Paste an API key first.";
    return byId("api-key").focus();
  }
  const body = taskRequest();
  // After a lost answer the same request is sent with the same id: the server returns the task
  // it already made instead of a second one. A changed request gets a new id.
  const same = state.pending && JSON.stringify(state.pending.body) === JSON.stringify(body);
  state.pending = { body, id: same ? state.pending.id : requestId() };
  state.creating = true;
  updateButton();
  let task;
  try {
    task = await api.createTask({ ...body, client_request_id: state.pending.id });
    state.pending = null;
  } catch (error) {
    if (!(error instanceof ApiError)) {
      byId("err-form").textContent = "Could not reach the server. Sending again is safe: it will not make a second task.";
      notice("Not created: the server could not be reached.");
      return;
    }
    state.pending = null;
    if (error.status === 401) byId("key-status").textContent = "This server does not accept that key.";
    if (error.retryAfter) error.message += ` Try again in ${error.retryAfter} s.`;
    notice(refused(error));
    return showErrors(form, error);
  } finally {
    state.creating = false;
    updateButton();
  }
  requests.remember(task.id, body);
  notice(`${task.model}: ${task.status}.`);
  refreshAccount();
  track(task);
  // On a phone the results are below the form: bring the progress into view.
  if (matchMedia("(max-width: 56rem)").matches) byId("results-heading").scrollIntoView({ behavior: "smooth" });
}

async function start() {
  takeKeyFromFragment();
  byId("api-key").value = keyStore.get();
  byId("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    keyStore.set(byId("api-key").value.trim());
    if (await refreshAccount()) refreshTasks();
  });
  byId("forget-key").addEventListener("click", () => {
    keyStore.clear();
    byId("api-key").value = "";
    refreshAccount();
    refreshTasks();
  });
  byId("refresh-tasks").addEventListener("click", refreshTasks);
  byId("model").addEventListener("change", (event) => selectModel(event.target.value));
  byId("params").addEventListener("change", updateButton);
  prompt.addEventListener("input", () => updatePromptCounter(prompt, byId("prompt-count"), state.model));
  form.addEventListener("submit", submit);

  try {
    state.models = (await api.models()).data;
  } catch (error) {
    byId("err-form").textContent = `Could not load the models: ${error.message}`;
    return;
  }
  byId("model").replaceChildren(...state.models.map((m) =>
    h("option", { value: m.id }, `${m.name} (${m.id}) · ${m.base_credits} credits`)));
  selectModel(new URLSearchParams(location.search).get("model") || state.models[0].id);
  document.body.dataset.ready = "true";
  if (await refreshAccount()) refreshTasks();
}

start();
