// The public API of this server, as the playground uses it. The key is read from the page's
// store on each call and sent only in the Authorization header, only to this origin.

const KEY_STORE = "sfumato.apiKey";
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.details = Array.isArray(error.details) ? error.details : [];
    this.requestId = body && body.request_id;
    this.retryAfter = retryAfter;
  }
}

export const keyStore = {
  get: () => localStorage.getItem(KEY_STORE) || "",
  set: (key) => localStorage.setItem(KEY_STORE, key),
  clear: () => localStorage.removeItem(KEY_STORE),
};

function authHeaders() {
  const key = keyStore.get();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// One call to this server: the JSON it answered, or an ApiError made from its error envelope.
export async function requestJson(path, { method = "GET", json, body, headers, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, data, response.headers.get("Retry-After"));
  return data;
}

const call = (method, path, { headers, ...rest } = {}) =>
  requestJson(path, { ...rest, method, headers: { ...authHeaders(), ...headers } });

export const api = {
  models: () => call("GET", "/api/v1/models"),
  account: () => call("GET", "/api/v1/account"),
  tasks: (limit = 10) => call("GET", `/api/v1/tasks?limit=${limit}`),
  task: (id) => call("GET", `/api/v1/tasks/${encodeURIComponent(id)}`),
  cancel: (id) => call("POST", `/api/v1/tasks/${encodeURIComponent(id)}/cancel`),
  createTask: (request) => call("POST", "/api/v1/tasks", { json: request }),
  upload(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    return call("POST", "/api/v1/files", { body: form });
  },
};

// One server-sent-event stream read through fetch (EventSource cannot send a header).
// `status` events carry the task, `partial` events a preview of the image being made
// ({index, url, width, height}). Resolves with the last task seen; rejects when the server
// does not answer the stream.
async function streamEvents(id, onTask, signal, onPartial) {
  const response = await fetch(`/api/v1/tasks/${encodeURIComponent(id)}/events`, {
    headers: { Accept: "text/event-stream", ...authHeaders() }, signal,
  });
  if (!response.ok || !response.body) throw new ApiError(response.status, null, null);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const lines = block.split("\n");
      const data = lines.filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
      if (!data.length) continue; // a keepalive comment
      const kind = (lines.find((l) => l.startsWith("event:")) || "event: status").slice(6).trim();
      if (kind === "partial") {
        if (onPartial) onPartial(JSON.parse(data.join("\n")));
        continue;
      }
      last = JSON.parse(data.join("\n"));
      onTask(last);
      if (TERMINAL.has(last.status)) return last;
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Follows a task to its end: the events stream when the server has it (previews included),
// else polling (no previews).
export async function followTask(id, onTask, signal, onPartial) {
  let last = null;
  try {
    last = await streamEvents(id, onTask, signal, onPartial);
  } catch (error) {
    if (signal && signal.aborted) throw error;
  }
  let delay = 400;
  while (!last || !TERMINAL.has(last.status)) {
    if (signal && signal.aborted) throw new DOMException("Stopped following the task.", "AbortError");
    try {
      last = await api.task(id);
      onTask(last);
    } catch (error) {
      // a dropped connection or a busy server is retried; a 401/404 is an answer
      if (error instanceof ApiError && error.status < 500 && error.status !== 429) throw error;
    }
    if (last && TERMINAL.has(last.status)) break;
    await sleep(delay);
    delay = Math.min(delay * 1.5, 3000);
  }
  return last;
}

export const isTerminal = (status) => TERMINAL.has(status);
