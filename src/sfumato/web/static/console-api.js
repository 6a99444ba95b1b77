// The admin API of this server (/admin/v1), as the console uses it. The admin key is kept apart
// from the playground's key and sent only in the Authorization header, only to this origin.

import { requestJson } from "./api.js";

const KEY_STORE = "sfumato.adminKey";
const BASE = "/admin/v1";

export const adminKey = {
  get: () => localStorage.getItem(KEY_STORE) || "",
  set: (key) => localStorage.setItem(KEY_STORE, key),
  clear: () => localStorage.removeItem(KEY_STORE),
};

function call(method, path, json) {
  const key = adminKey.get();
  return requestJson(BASE + path, { method, json, headers: key ? { Authorization: `Bearer ${key}` } : {} });
}

// A query string from the values that are set (empty ones are left out).
function query(values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

const id = (value) => encodeURIComponent(value);

export const admin = {
  accounts: ({ q, cursor } = {}) => call("GET", `/accounts${query({ q, cursor })}`),
  account: (accountId) => call("GET", `/accounts/${id(accountId)}`),
  createAccount: (body) => call("POST", "/accounts", body),
  updateAccount: (accountId, body) => call("PATCH", `/accounts/${id(accountId)}`, body),
  keys: (accountId) => call("GET", `/accounts/${id(accountId)}/keys`),
  issueKey: (accountId, body) => call("POST", `/accounts/${id(accountId)}/keys`, body),
  revokeKey: (keyId) => call("DELETE", `/keys/${id(keyId)}`),
  grant: (accountId, body) => call("POST", `/accounts/${id(accountId)}/grants`, body),
  ledger: (accountId, cursor) => call("GET", `/accounts/${id(accountId)}/ledger${query({ cursor })}`),
  tasks: (filters = {}) => call("GET", `/tasks${query(filters)}`),
  refund: (taskId) => call("POST", `/tasks/${id(taskId)}/refund`),
  usage: ({ from, to, groupBy = "day,model" }) => call("GET", `/usage${query({ from, to, group_by: groupBy })}`),
  audit: (cursor) => call("GET", `/audit${query({ cursor })}`),
  providers: () => call("GET", "/providers"),
};

// A fresh idempotency key: a grant sent again after a lost answer reuses it, so it tops up once.
export function idempotencyKey(prefix = "console") {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return `${prefix}-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}
