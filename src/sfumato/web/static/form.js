// The task form, generated from one model of GET /api/v1/models, and the API's field errors
// shown beside the fields they name (details[].field: "prompt", "params.seed", ...).

import { byId, codePoints, h, localized } from "./dom.js";

function paramControl(param, id, describedBy) {
  const common = { id, name: `params.${param.key}`, "aria-describedby": describedBy, "data-param": param.key };
  if (param.type === "select") {
    const options = param.options.map((option) =>
      h("option", { value: option, selected: option === param.default }, option));
    return h("select", common, options);
  }
  const numeric = Boolean(param.integer);
  return h("input", {
    ...common, type: "text", inputmode: numeric ? "numeric" : null, autocomplete: "off",
    placeholder: numeric ? `${param.integer.min}–${param.integer.max}, empty for random` : "optional",
  });
}

export function renderParams(fieldset, model) {
  fieldset.replaceChildren(h("legend", {}, "Parameters"));
  for (const param of model.params) {
    const id = `param-${param.key}`;
    const hint = `${id}-hint`;
    const error = `err-params.${param.key}`;
    const description = localized(param.description);
    fieldset.append(h("div", { class: "field" },
      h("label", { for: id }, localized(param.label) || param.key, " ", h("code", {}, param.key)),
      paramControl(param, id, `${description ? hint + " " : ""}${error}`),
      description ? h("p", { id: hint, class: "hint" }, description) : null,
      h("p", { id: error, class: "field-error", "data-field": `params.${param.key}` })));
  }
  fieldset.hidden = model.params.length === 0;
}

export function readParams(fieldset) {
  const params = {};
  for (const control of fieldset.querySelectorAll("[data-param]")) {
    if (control.value !== "") params[control.dataset.param] = control.value;
  }
  return params;
}

export function price(model, params) {
  const extra = (model.price_modifiers || [])
    .filter((m) => params[m.param] === m.value)
    .reduce((sum, m) => sum + m.credits, 0);
  return Math.max(0, model.base_credits + extra);
}

export function updatePromptCounter(textarea, counter, model) {
  const used = codePoints(textarea.value);
  const limit = model.effective_prompt_max_chars;
  counter.textContent = `${used} / ${limit} characters`;
  counter.classList.toggle("over", used > limit);
  return used <= limit;
}

export function clearErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.replaceChildren();
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
}

// The error slot for a field: its own, else the nearest parent's ("params.referenceMediaItems[0].url"
// goes to "params.referenceMediaItems"), else the form's.
function slotFor(form, field) {
  const slots = [...form.querySelectorAll(".field-error[data-field]")];
  const best = slots
    .filter((s) => field === s.dataset.field || field.startsWith(`${s.dataset.field}.`)
      || field.startsWith(`${s.dataset.field}[`))
    .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
  return best || byId("err-form");
}

export function showErrors(form, error) {
  clearErrors(form);
  const details = error.details.length ? error.details : [{ field: "body", message: error.message }];
  let first = null;
  for (const detail of details) {
    const slot = slotFor(form, detail.field || "body");
    const named = slot.id === "err-form" && detail.field && detail.field !== "body" ? `${detail.field}: ` : "";
    slot.append(h("span", {}, named + detail.message));
    const control = form.querySelector(`[aria-describedby~="${CSS.escape(slot.id)}"]`);
    if (control) {
      control.setAttribute("aria-invalid", "true");
      first = first || control;
    }
  }
  (first || byId("err-form")).focus?.();
}
