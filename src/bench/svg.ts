// Charts for docs/benchmarks.md, written as SVG text by `npm run bench` (src/bench/report.ts): a
// line chart (figures against an offered rate), a bar chart and a timeline. Plain SVG 1.1 with
// inline styles, no script and no external resource, so any Markdown viewer shows them.

export interface Series {
  name: string;
  points: ReadonlyArray<readonly [number, number]>;
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
  /** A logarithmic y axis (for latencies that span decades). */
  logY?: boolean;
}

export interface Bar {
  label: string;
  value: number;
}

export interface Segment {
  label: string;
  from: number;
  to: number;
}

export interface TimelineRow {
  label: string;
  segments: readonly Segment[];
}

const W = 720;
const H = 360;
const M = { left: 70, right: 170, top: 40, bottom: 50 };
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000) return `${Math.round(v / 100) / 10}k`.replace('.0k', 'k');
  if (a >= 10) return String(Math.round(v));
  if (a >= 1) return String(Math.round(v * 10) / 10);
  return String(Math.round(v * 100) / 100);
}

/** At most about six round ticks from lo, the last one at or above hi. */
export function niceTicks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  let t = Math.ceil(lo / step - 1e-9) * step + 0; // not -0
  for (;;) {
    out.push(Math.round(t * 1e6) / 1e6);
    if (t >= hi - step * 1e-9) return out;
    t += step;
  }
}

function frame(title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

function legend(names: readonly string[]): string[] {
  return names.flatMap((n, i) => {
    const y = M.top + 10 + i * 20;
    const x = W - M.right + 15;
    return [
      `<rect x="${x}" y="${y - 9}" width="14" height="10" fill="${COLORS[i % COLORS.length]}"/>`,
      `<text x="${x + 20}" y="${y}">${escapeXml(n)}</text>`,
    ];
  });
}

export function lineChart(c: LineChart): string {
  const pts = c.series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logY || y > 0));
  const xMax = Math.max(1, ...pts.map(([x]) => x));
  const yMaxRaw = Math.max(...pts.map(([, y]) => y), c.logY ? 1 : 0);
  const yMinRaw = c.logY ? Math.min(...pts.map(([, y]) => y), yMaxRaw) : 0;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const xTicks = niceTicks(0, xMax);
  const xHi = Math.max(xMax, xTicks.at(-1) ?? xMax);
  let yTicks: number[];
  let yLo: number;
  let yHi: number;
  if (c.logY) {
    yLo = 10 ** Math.floor(Math.log10(yMinRaw));
    yHi = 10 ** Math.ceil(Math.log10(yMaxRaw));
    if (yHi <= yLo) yHi = yLo * 10;
    yTicks = [];
    for (let t = yLo; t <= yHi * 1.0001; t *= 10) yTicks.push(t);
  } else {
    yTicks = niceTicks(0, yMaxRaw || 1);
    yLo = 0;
    yHi = Math.max(yMaxRaw, yTicks.at(-1) ?? 1);
  }
  const sx = (x: number): number => M.left + (x / xHi) * pw;
  const sy = (y: number): number => (c.logY
    ? M.top + ph - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * ph
    : M.top + ph - ((y - yLo) / (yHi - yLo)) * ph);
  const body: string[] = [];
  for (const t of yTicks) {
    body.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#ddd"/>`);
    body.push(`<text x="${M.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  for (const t of xTicks) {
    body.push(`<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${M.top + ph}" y2="${M.top + ph + 5}" stroke="#333"/>`);
    body.push(`<text x="${sx(t).toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  body.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  body.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">${escapeXml(c.xLabel)}</text>`);
  body.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(c.yLabel)}</text>`);
  c.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const ok = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!c.logY || y > 0));
    if (!ok.length) return;
    body.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${ok.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of ok) body.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"/>`);
  });
  body.push(...legend(c.series.map((s) => s.name)));
  return frame(c.title, body);
}

export function barChart(title: string, yLabel: string, bars: readonly Bar[]): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const max = Math.max(0, ...bars.map((b) => b.value).filter(Number.isFinite));
  const ticks = niceTicks(0, max || 1);
  const hi = Math.max(max, ticks.at(-1) ?? 1);
  const sy = (y: number): number => M.top + ph - (y / hi) * ph;
  const slot = pw / Math.max(1, bars.length);
  const body: string[] = [];
  for (const t of ticks) {
    body.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#ddd"/>`);
    body.push(`<text x="${M.left - 6}" y="${(sy(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  bars.forEach((b, i) => {
    const x = M.left + i * slot + slot * 0.15;
    const v = Number.isFinite(b.value) ? b.value : 0;
    body.push(`<rect x="${x.toFixed(1)}" y="${sy(v).toFixed(1)}" width="${(slot * 0.7).toFixed(1)}" height="${(M.top + ph - sy(v)).toFixed(1)}" fill="${COLORS[i % COLORS.length]}"/>`);
    body.push(`<text x="${(x + slot * 0.35).toFixed(1)}" y="${(sy(v) - 4).toFixed(1)}" text-anchor="middle">${Number.isFinite(b.value) ? fmt(b.value) : 'n/a'}</text>`);
    body.push(`<text x="${(x + slot * 0.35).toFixed(1)}" y="${M.top + ph + 18}" text-anchor="middle">${escapeXml(b.label)}</text>`);
  });
  body.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  body.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`);
  return frame(title, body);
}

/** Rows of labelled spans on one time axis (ms), e.g. where a launch spends its time. */
export function timelineChart(title: string, rows: readonly TimelineRow[]): string {
  const pw = W - M.left - M.right - 40;
  const left = M.left + 40;
  const end = Math.max(1, ...rows.flatMap((r) => r.segments.map((s) => s.to)));
  const ticks = niceTicks(0, end);
  const hi = Math.max(end, ticks.at(-1) ?? end);
  const sx = (t: number): number => left + (t / hi) * pw;
  const rowH = Math.min(60, (H - M.top - M.bottom) / Math.max(1, rows.length));
  const body: string[] = [];
  const names = [...new Set(rows.flatMap((r) => r.segments.map((s) => s.label)))];
  for (const t of ticks) {
    body.push(`<line x1="${sx(t).toFixed(1)}" x2="${sx(t).toFixed(1)}" y1="${M.top}" y2="${M.top + rows.length * rowH}" stroke="#ddd"/>`);
    body.push(`<text x="${sx(t).toFixed(1)}" y="${M.top + rows.length * rowH + 16}" text-anchor="middle">${fmt(t)}</text>`);
  }
  rows.forEach((r, i) => {
    const y = M.top + i * rowH + rowH * 0.2;
    body.push(`<text x="${left - 6}" y="${(y + rowH * 0.35).toFixed(1)}" text-anchor="end">${escapeXml(r.label)}</text>`);
    for (const s of r.segments) {
      const color = COLORS[names.indexOf(s.label) % COLORS.length];
      body.push(`<rect x="${sx(s.from).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, sx(s.to) - sx(s.from)).toFixed(1)}" height="${(rowH * 0.6).toFixed(1)}" fill="${color}"><title>${escapeXml(`${s.label}: ${fmt(s.from)}–${fmt(s.to)} ms`)}</title></rect>`);
    }
  });
  body.push(`<text x="${left + pw / 2}" y="${H - 10}" text-anchor="middle">ms since launch</text>`);
  body.push(...legend(names));
  return frame(title, body);
}
