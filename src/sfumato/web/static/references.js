// Reference images: uploaded through POST /api/v1/files (or an earlier output, as it is) and
// sent in params.referenceMediaItems. Only shown for models whose catalog entry takes files.

import { api } from "./api.js";
import { byId, formatBytes, h } from "./dom.js";

const ITEM_KEYS = ["url", "kind", "name", "mimeType", "durationToken"];

export class References {
  constructor({ onChange, onError }) {
    this.items = []; // {item, preview, pending}
    this.rules = null;
    this.onChange = onChange;
    this.onError = onError;
    this.section = byId("references");
    this.list = byId("reference-list");
    this.input = byId("reference-files");
    this.zone = byId("dropzone");
    this.input.addEventListener("change", () => {
      this.addFiles([...this.input.files]);
      this.input.value = "";
    });
    for (const name of ["dragenter", "dragover"]) {
      this.zone.addEventListener(name, (event) => {
        event.preventDefault();
        this.zone.classList.add("dragging");
      });
    }
    for (const name of ["dragleave", "drop"]) this.zone.addEventListener(name, () => this.zone.classList.remove("dragging"));
    this.zone.addEventListener("drop", (event) => {
      event.preventDefault();
      this.addFiles([...event.dataTransfer.files]);
    });
  }

  setModel(model) {
    this.rules = model.references;
    this.section.hidden = !this.rules;
    if (!this.rules) return;
    const image = this.rules.limits.find((l) => l.kind === "image") || this.rules.limits[0];
    this.input.accept = this.rules.limits.flatMap((l) => l.mime_types).join(",");
    byId("references-rules").textContent = `Up to ${this.rules.max_files} ${this.rules.max_files === 1 ? "file" : "files"}`
      + ` (${image.mime_types.join(", ")}; at most ${formatBytes(image.max_bytes)} each).`;
    this.render();
  }

  get room() {
    return this.rules ? this.rules.max_files - this.items.length : 0;
  }

  // A quick check before uploading; the server decides from the bytes. A file the browser
  // gives no type for is left to the server.
  problem(file) {
    const limit = this.rules.limits.find((l) => l.mime_types.includes(file.type));
    if (file.type && !limit) return `${file.name}: not one of ${this.input.accept.replaceAll(",", ", ")}.`;
    const maxBytes = limit ? limit.max_bytes : Math.max(...this.rules.limits.map((l) => l.max_bytes));
    if (file.size > maxBytes) return `${file.name}: over ${formatBytes(maxBytes)}.`;
    return null;
  }

  async addFiles(files) {
    if (!this.rules) return;
    const problems = [];
    for (const file of files) {
      if (this.room <= 0) {
        problems.push(`This model takes at most ${this.rules.max_files}; ${file.name} was not added.`);
        continue;
      }
      const problem = this.problem(file);
      if (problem) {
        problems.push(problem);
        continue;
      }
      const entry = { item: null, preview: URL.createObjectURL(file), pending: file.name };
      this.items.push(entry);
      this.render();
      this.upload(entry, file);
    }
    this.onError(problems);
  }

  async upload(entry, file) {
    try {
      const uploaded = await api.upload(file);
      entry.item = Object.fromEntries(ITEM_KEYS.filter((k) => uploaded[k]).map((k) => [k, uploaded[k]]));
      entry.pending = null;
    } catch (error) {
      this.remove(entry);
      const details = error.details && error.details.length ? error.details.map((d) => d.message) : [error.message];
      this.onError(details.map((message) => `${file.name}: ${message}`));
    }
    this.render();
  }

  // An output of an earlier task goes back as it is (docs/files.md): no re-upload.
  addOutput(media) {
    if (!this.rules) return `This model takes no reference images; choose one that does.`;
    if (this.room <= 0) return `This model takes at most ${this.rules.max_files} reference images.`;
    this.items.push({ item: { ...media }, preview: media.url, pending: null });
    this.render();
    return null;
  }

  remove(entry) {
    this.items = this.items.filter((e) => e !== entry);
    if (entry.preview.startsWith("blob:")) URL.revokeObjectURL(entry.preview);
    this.render();
  }

  get uploading() {
    return this.items.some((e) => e.pending);
  }

  get media() {
    return this.items.filter((e) => e.item).map((e) => e.item);
  }

  render() {
    this.list.replaceChildren(...this.items.map((entry) => {
      const name = entry.item ? entry.item.name : entry.pending;
      return h("li", { class: entry.pending ? "pending" : "" },
        h("img", { src: entry.preview, alt: `Reference: ${name}` }),
        h("span", { class: "name" }, entry.pending ? `Uploading ${name}…` : name),
        h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${name}`,
                      onclick: () => this.remove(entry) }, "Remove"));
    }));
    if (this.rules) {
      byId("references-label").textContent = `Reference images (${this.items.length} / ${this.rules.max_files})`;
    }
    this.onChange();
  }
}
