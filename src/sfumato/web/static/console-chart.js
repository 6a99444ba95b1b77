// The usage chart: one stacked bar a day, a segment a model, drawn as SVG from the rows of
// GET /admin/v1/usage?group_by=day,model. No library: the page's policy allows no CDN, and the
// chart is a few dozen rectangles. Colours are SVG presentation attributes (fill), which the
// policy's style-src does not govern; every segment carries its numbers as data-* and a <title>.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2d5bd3", "#e07b00", "#1e7d32", "#b3261e", "#7b3fb8", "#00838f", "#9a6700", "#c2185b", "#5f6368"];
const HEIGHT = 240;
const MARGIN = { top: 12, right: 20, bottom: 28, left: 48 };

export const MEASURES = {
  tasks: { label: "tasks", value: (row) => Object.values(row.tasks || {}).reduce((a, n) => a + (Number(n) || 0), 0) },
  credits: { label: "credits charged", value: (row) => Number(row.credits_charged) || 0 },
  refunded: { label: "credits refunded", value: (row) => Number(row.credits_refunded) || 0 },
};

function s(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  element.append(...children);
  return element;
}

const dayOf = (value) => String(value || "").slice(0, 10);

// Every day from `from` to `to` (YYYY-MM-DD, both included), so a quiet day is a gap, not skipped.
export function daysBetween(from, to) {
  const days = [];
  const end = Date.parse(`${to}T00:00:00Z`);
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= end && days.length < 400; t += 86400000) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

// A round ceiling for the axis: 1, 2 or 5 times a power of ten.
function niceCeiling(value) {
  if (value <= 4) return 4;
  const power = 10 ** Math.floor(Math.log10(value));
  const step = [1, 2, 5, 10].find((f) => f * power >= value / 4) * power;
  return step * 4;
}

// {days, models, cells: Map(day -> Map(model -> value)), total}, for the chosen measure.
export function tally(rows, from, to, measure) {
  const value = MEASURES[measure].value;
  const days = daysBetween(from, to);
  const cells = new Map(days.map((day) => [day, new Map()]));
  const totals = new Map();
  for (const row of rows) {
    const day = dayOf(row.day);
    const model = row.model || "(all models)";
    const n = value(row);
    if (!cells.has(day)) continue; // outside the range asked for
    cells.get(day).set(model, (cells.get(day).get(model) || 0) + n);
    totals.set(model, (totals.get(model) || 0) + n);
  }
  const models = [...totals.keys()].sort();
  return { days, models, cells, totals, total: [...totals.values()].reduce((a, n) => a + n, 0) };
}

function axis(width, top, plotHeight) {
  const grid = s("g", { class: "grid" });
  for (let i = 0; i <= 4; i++) {
    const y = MARGIN.top + plotHeight - (plotHeight * i) / 4;
    grid.append(s("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y, y2: y, stroke: "#e3e3e8" }),
      s("text", { x: MARGIN.left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5f6368" },
        String((top * i) / 4)));
  }
  return grid;
}

function bars(data, colours, width, top, plotHeight, label) {
  const band = (width - MARGIN.left - MARGIN.right) / Math.max(data.days.length, 1);
  const barWidth = Math.max(band * 0.7, 1);
  const every = Math.ceil(44 / band); // a day label every ~44 px at least
  const group = s("g", { class: "bars" });
  data.days.forEach((day, index) => {
    const x = MARGIN.left + index * band + (band - barWidth) / 2;
    let y = MARGIN.top + plotHeight;
    for (const model of data.models) {
      const value = data.cells.get(day).get(model) || 0;
      if (!value) continue;
      const height = (value / top) * plotHeight;
      y -= height;
      group.append(s("rect", { x, y, width: barWidth, height, fill: colours.get(model),
                               "data-day": day, "data-model": model, "data-value": value },
        s("title", {}, `${day} · ${model}: ${value} ${label}`)));
    }
    if (index % every === 0) {
      group.append(s("text", { x: x + barWidth / 2, y: HEIGHT - 8, "text-anchor": "middle", "font-size": 11,
                               fill: "#5f6368" }, day.slice(5)));
    }
  });
  return group;
}

// The chart as an <svg> `width` pixels wide, and its legend as a list.
export function usageChart(rows, { from, to, measure = "tasks", width = 640 }) {
  const data = tally(rows, from, to, measure);
  const label = MEASURES[measure].label;
  const colours = new Map(data.models.map((model, i) => [model, PALETTE[i % PALETTE.length]]));
  const stacks = data.days.map((day) => [...data.cells.get(day).values()].reduce((a, n) => a + n, 0));
  const top = niceCeiling(Math.max(0, ...stacks));
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const svg = s("svg", { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: "img",
                         "aria-label": `${data.total} ${label} from ${from} to ${to}, by day and model`,
                         "data-total": data.total, "data-measure": measure });
  svg.append(axis(width, top, plotHeight), bars(data, colours, width, top, plotHeight, label));
  if (!data.total) {
    svg.append(s("text", { x: width / 2, y: HEIGHT / 2, "text-anchor": "middle", fill: "#5f6368" },
      `No ${label} in this range`));
  }
  const legend = data.models.map((model) => h("li", { "data-model": model },
    swatch(colours.get(model)), `${model}: ${data.totals.get(model)}`));
  return { svg, legend, total: data.total, label };
}

function swatch(colour) {
  return s("svg", { width: 12, height: 12, viewBox: "0 0 12 12", "aria-hidden": "true", class: "swatch" },
    s("rect", { width: 12, height: 12, rx: 2, fill: colour }));
}
