// The console's accounts: search and list, one account's detail (balance, disable, rename),
// grants, keys (issue with the secret shown once, revoke), its ledger and its recent tasks.

import { ApiError } from "./api.js";
import { admin, idempotencyKey } from "./console-api.js";
import { byId, h } from "./dom.js";

// A table cell that says what it is on a phone, where each row becomes a card (data-label).
export const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
export const when = (iso) => (iso ? String(iso).replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, " UTC") : "–");
export const badge = (text, kind = text) => h("span", { class: `badge ${kind}` }, text);
const empty = (columns, text) => h("tr", { class: "empty" }, h("td", { colspan: columns }, text));
const problem = (error) => (error instanceof ApiError ? error.message : `the server could not be reached (${error.message})`);

// A button that asks once more before it acts: no confirm() dialog, and a slip is harmless.
function confirming(label, confirmLabel, action) {
  const button = h("button", { type: "button", class: "secondary small danger" }, label);
  button.addEventListener("click", async () => {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = confirmLabel;
      return;
    }
    button.disabled = true;
    await action();
  });
  return button;
}

export class Accounts {
  constructor({ onChange }) {
    this.onChange = onChange; // after every write: the audit log has a new entry
    this.query = "";
    this.cursor = null;
    this.account = null;
    this.grantPending = null;
    this.ledgerCursor = null;
  }

  wire() {
    byId("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.query = byId("account-search").value.trim();
      this.list();
    });
    byId("accounts-more").addEventListener("click", () => this.list(true));
    byId("create-account-form").addEventListener("submit", (event) => this.create(event));
    byId("toggle-disabled").addEventListener("click", () => this.update({ disabled: !this.account.disabled }));
    byId("rename-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.update({ name: byId("rename-name").value.trim() });
    });
    byId("grant-form").addEventListener("submit", (event) => this.grant(event));
    byId("issue-key-form").addEventListener("submit", (event) => this.issueKey(event));
    byId("hide-secret").addEventListener("click", () => this.hideSecret());
    byId("copy-secret").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(byId("new-secret-value").textContent);
        byId("copy-secret").textContent = "Copied";
      } catch {
        byId("copy-secret").textContent = "Select the key and copy it";
      }
    });
    byId("ledger-more").addEventListener("click", () => this.ledger(true));
  }

  status(text) {
    byId("accounts-status").textContent = text;
  }

  row(account) {
    const open = h("button", { type: "button", class: "secondary small", "aria-label": `Open ${account.name}`,
                                onclick: () => this.open(account.id) }, "Open");
    return h("tr", { "data-account": account.id },
      cell("Name", h("strong", {}, account.name), h("br"), h("code", { class: "id" }, account.id)),
      cell("Balance", String(account.balance)),
      cell("Status", account.disabled ? badge("disabled", "failed") : badge("active", "succeeded")),
      cell("Created", when(account.created_at)),
      cell("", open));
  }

  async list(more = false) {
    try {
      const page = await admin.accounts({ q: this.query, cursor: more ? this.cursor : null });
      const rows = page.data.map((account) => this.row(account));
      if (more) byId("accounts").append(...rows);
      else byId("accounts").replaceChildren(...(rows.length ? rows : [empty(5, "No accounts match.")]));
      this.cursor = page.next_cursor;
      byId("accounts-more").hidden = !page.has_more;
    } catch (error) {
      this.status(`Could not list the accounts: ${problem(error)}`);
    }
  }

  async create(event) {
    event.preventDefault();
    const name = byId("new-account-name").value.trim();
    const credits = Number(byId("new-account-credits").value || 0);
    try {
      const account = await admin.createAccount({ name, credits });
      this.status(`Created ${account.name} (${account.id}) with ${account.balance} credits.`);
      byId("create-account-form").reset();
      await this.list();
      await this.open(account.id);
      this.onChange();
    } catch (error) {
      this.status(`Not created: ${problem(error)}`);
    }
  }

  async open(accountId) {
    try {
      this.show(await admin.account(accountId));
    } catch (error) {
      return this.status(`Could not open ${accountId}: ${problem(error)}`);
    }
    this.hideSecret();
    byId("grant-status").textContent = "";
    byId("key-issue-status").textContent = "";
    byId("detail-status-line").textContent = "";
    byId("account-detail").hidden = false;
    byId("detail-heading").scrollIntoView({ behavior: "smooth", block: "start" });
    await Promise.all([this.keys(), this.ledger(), this.tasks()]);
  }

  show(account) {
    this.account = account;
    byId("detail-name").textContent = account.name;
    byId("detail-id").textContent = account.id;
    byId("detail-balance").textContent = String(account.balance);
    byId("detail-status").replaceChildren(account.disabled ? badge("disabled", "failed") : badge("active", "succeeded"));
    byId("detail-created").textContent = when(account.created_at);
    byId("rename-name").value = account.name;
    byId("toggle-disabled").textContent = account.disabled ? "Enable" : "Disable";
    const listed = byId("accounts").querySelector(`[data-account="${CSS.escape(account.id)}"]`);
    if (listed) listed.replaceWith(this.row(account));
  }

  async update(change) {
    const line = byId("detail-status-line");
    try {
      this.show(await admin.updateAccount(this.account.id, change));
      line.textContent = "disabled" in change
        ? (change.disabled ? "Disabled: its keys are refused and its queued tasks canceled." : "Enabled again.")
        : `Renamed to ${this.account.name}.`;
      this.onChange();
      await this.tasks();
    } catch (error) {
      line.textContent = `Not changed: ${problem(error)}`;
    }
  }

  async grant(event) {
    event.preventDefault();
    const line = byId("grant-status");
    const body = { credits: Number(byId("grant-credits").value), note: byId("grant-note").value.trim() || undefined };
    const target = this.account.id;
    // After a lost answer the same grant goes again with the same idempotency key: it tops up once.
    const same = this.grantPending && this.grantPending.target === target
      && JSON.stringify(this.grantPending.body) === JSON.stringify(body);
    this.grantPending = { target, body, key: same ? this.grantPending.key : idempotencyKey("console-grant") };
    try {
      const result = await admin.grant(target, { ...body, idempotency_key: this.grantPending.key });
      this.grantPending = null;
      byId("detail-balance").textContent = String(result.balance);
      this.account = { ...this.account, balance: result.balance };
      this.show(this.account);
      line.textContent = `Granted ${body.credits} credits: the balance is ${result.balance}.`;
      byId("grant-form").reset();
      this.onChange();
      await this.ledger();
    } catch (error) {
      if (error instanceof ApiError) this.grantPending = null;
      line.textContent = error instanceof ApiError
        ? `Not granted: ${error.message}`
        : "Could not reach the server. Granting again is safe: it will not top up twice.";
    }
  }

  keyRow(key) {
    const limits = [key.rate_limit && `rate ${key.rate_limit}`, key.credit_limit && `credits ${key.credit_limit}`]
      .filter(Boolean).join(", ") || "default";
    const revoke = key.revoked_at ? "" : confirming("Revoke", "Confirm revoke", () => this.revoke(key));
    return h("tr", { "data-key": key.id },
      cell("Name", key.name || "–"),
      cell("Key", h("code", { class: "key" }, `${key.prefix || ""}…${key.last4 || ""}`)),
      cell("Models", (key.models && key.models.length) ? key.models.join(", ") : "all"),
      cell("Limits", limits),
      cell("Expires", key.expires_at ? when(key.expires_at) : "never"),
      cell("Created", when(key.created_at)),
      cell("Status", key.revoked_at ? badge("revoked", "failed") : badge("active", "succeeded")),
      cell("", revoke));
  }

  async keys() {
    try {
      const page = await admin.keys(this.account.id);
      const rows = page.data.map((key) => this.keyRow(key));
      byId("keys").replaceChildren(...(rows.length ? rows : [empty(8, "No keys yet.")]));
    } catch (error) {
      byId("keys").replaceChildren(empty(8, `Could not list the keys: ${problem(error)}`));
    }
  }

  optional(id) {
    return byId(id).value.trim() || undefined;
  }

  async issueKey(event) {
    event.preventDefault();
    const line = byId("key-issue-status");
    const models = this.optional("key-models");
    const expires = this.optional("key-expires");
    const body = {
      name: this.optional("key-name"),
      models: models ? models.split(",").map((m) => m.trim()).filter(Boolean) : undefined,
      rate_limit: this.optional("key-rate"),
      credit_limit: this.optional("key-credit-limit"),
      expires_at: expires ? `${expires.length === 16 ? `${expires}:00` : expires}Z` : undefined,
    };
    try {
      const issued = await admin.issueKey(this.account.id, body);
      byId("new-secret-value").textContent = issued.key;
      byId("copy-secret").textContent = "Copy";
      byId("new-secret").hidden = false;
      line.textContent = `Issued ${issued.name || issued.prefix || "a key"}.`;
      byId("issue-key-form").reset();
      this.onChange();
      await this.keys();
    } catch (error) {
      line.textContent = `Not issued: ${problem(error)}`;
    }
  }

  // The secret leaves the page for good: only its prefix and last four characters remain.
  hideSecret() {
    byId("new-secret-value").textContent = "";
    byId("new-secret").hidden = true;
  }

  async revoke(key) {
    const line = byId("key-issue-status");
    try {
      await admin.revokeKey(key.id);
      line.textContent = `Revoked ${key.name || `${key.prefix}…${key.last4}`}.`;
      this.onChange();
    } catch (error) {
      line.textContent = `Not revoked: ${problem(error)}`;
    }
    await this.keys();
  }

  ledgerRow(entry) {
    const amount = Number(entry.amount);
    return h("tr", { "data-entry": entry.id },
      cell("When", when(entry.created_at || entry.at)),
      cell("Kind", entry.kind),
      cell("Amount", h("span", { class: amount < 0 ? "debit" : "credit" }, amount > 0 ? `+${amount}` : String(amount))),
      cell("Balance after", String(entry.balance_after)),
      cell("Task", entry.task_id ? h("code", {}, entry.task_id) : "–"),
      cell("Note", entry.note || ""));
  }

  async ledger(more = false) {
    try {
      const page = await admin.ledger(this.account.id, more ? this.ledgerCursor : null);
      const rows = page.data.map((entry) => this.ledgerRow(entry));
      if (more) byId("ledger").append(...rows);
      else byId("ledger").replaceChildren(...(rows.length ? rows : [empty(6, "No entries yet.")]));
      this.ledgerCursor = page.next_cursor;
      byId("ledger-more").hidden = !page.has_more;
    } catch (error) {
      byId("ledger").replaceChildren(empty(6, `Could not read the ledger: ${problem(error)}`));
    }
  }

  taskRow(task) {
    const refundable = task.status === "succeeded" && Number(task.final_credits) > 0;
    const refund = refundable ? confirming("Refund", "Confirm refund", () => this.refund(task)) : "";
    return h("tr", { "data-task": task.id },
      cell("Task", h("code", {}, task.id)),
      cell("Model", task.model),
      cell("Status", badge(task.status)),
      cell("Credits", String(task.final_credits ?? task.reserved_credits ?? "")),
      cell("Created", when(task.created_at)),
      cell("", refund));
  }

  async tasks() {
    try {
      const page = await admin.tasks({ account: this.account.id });
      const rows = page.data.slice(0, 20).map((task) => this.taskRow(task));
      byId("tasks").replaceChildren(...(rows.length ? rows : [empty(6, "No tasks yet.")]));
    } catch (error) {
      byId("tasks").replaceChildren(empty(6, `Could not list the tasks: ${problem(error)}`));
    }
  }

  async refund(task) {
    const line = byId("detail-status-line");
    try {
      await admin.refund(task.id);
      line.textContent = `Refunded ${task.final_credits} credits of ${task.id}.`;
      this.show(await admin.account(this.account.id));
      this.onChange();
      await Promise.all([this.ledger(), this.tasks()]);
    } catch (error) {
      line.textContent = `Not refunded: ${problem(error)}`;
      await this.tasks();
    }
  }
}
