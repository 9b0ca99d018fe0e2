// Small SVG charts (no library): a line chart over time and a stacked bar chart.
// Each is an image with a text alternative that states what it shows.

import { svg } from './ui.js';

const W = 600;
const H = 200;
const PAD = { l: 40, r: 10, t: 10, b: 24 };

// series: [{ name, cls, points: [[ms, value]] }]; yMax fixed (e.g. 1 for probabilities).
export function lineChart(label, series, opts) {
  const o = opts || {};
  const all = series.flatMap((s) => s.points);
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  root.appendChild(svg('title', {}, label));
  if (all.length === 0) {
    root.appendChild(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted' }, 'No data yet'));
    return root;
  }
  const x0 = Math.min(...all.map((p) => p[0]));
  const x1 = Math.max(...all.map((p) => p[0]), x0 + 1);
  const yMax = o.yMax !== undefined ? o.yMax : Math.max(...all.map((p) => p[1]), 1e-9);
  const x = (t) => PAD.l + ((t - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (Math.min(v, yMax) / yMax) * (H - PAD.t - PAD.b);
  for (const f of [0, 0.5, 1]) {
    root.appendChild(svg('line', { x1: PAD.l, x2: W - PAD.r, y1: y(f * yMax), y2: y(f * yMax), class: 'grid' }));
    const t = o.percent ? Math.round(f * yMax * 100) + '%' : String(+(f * yMax).toPrecision(2));
    root.appendChild(svg('text', { x: PAD.l - 4, y: y(f * yMax) + 4, 'text-anchor': 'end', class: 'axis' }, t));
  }
  if (o.threshold !== undefined && o.threshold !== null) {
    root.appendChild(svg('line', { x1: PAD.l, x2: W - PAD.r, y1: y(o.threshold), y2: y(o.threshold), class: 'threshold' }));
  }
  const xText = o.xFormat || ((t) => new Date(t).toLocaleTimeString());
  root.appendChild(svg('text', { x: PAD.l, y: H - 6, class: 'axis' }, xText(x0)));
  root.appendChild(svg('text', { x: W - PAD.r, y: H - 6, 'text-anchor': 'end', class: 'axis' }, xText(x1)));
  if (o.xLabel) root.appendChild(svg('text', { x: (W + PAD.l) / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, o.xLabel));
  for (const m of o.xMarkers || []) {
    if (m.x === null || m.x === undefined) continue;
    root.appendChild(svg('line', { x1: x(m.x), x2: x(m.x), y1: PAD.t, y2: H - PAD.b, class: 'marker ' + (m.cls || '') }));
    root.appendChild(svg('text', { x: x(m.x) + 4, y: PAD.t + 12, class: 'axis' }, m.label));
  }
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1)).join(' ');
    root.appendChild(svg('path', { d, class: 'line ' + (s.cls || '') }));
    for (const p of pts.slice(-60)) {
      root.appendChild(svg('circle', { cx: x(p[0]).toFixed(1), cy: y(p[1]).toFixed(1), r: 2.5, class: 'dot ' + (s.cls || '') }));
    }
  }
  return root;
}

// bars: [{ label, parts: [{ value, cls, name }] }]
export function barChart(label, bars) {
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': label });
  root.appendChild(svg('title', {}, label));
  if (bars.length === 0) {
    root.appendChild(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'muted' }, 'No data yet'));
    return root;
  }
  const max = Math.max(1, ...bars.map((b) => b.parts.reduce((s, p) => s + p.value, 0)));
  const bw = (W - PAD.l - PAD.r) / bars.length;
  root.appendChild(svg('text', { x: PAD.l - 4, y: PAD.t + 8, 'text-anchor': 'end', class: 'axis' }, String(max)));
  bars.forEach((b, i) => {
    let top = H - PAD.b;
    for (const p of b.parts) {
      const hgt = (p.value / max) * (H - PAD.t - PAD.b);
      top -= hgt;
      if (hgt > 0) {
        root.appendChild(
          svg('rect', { x: PAD.l + i * bw + 2, y: top, width: Math.max(1, bw - 4), height: hgt, class: 'bar ' + (p.cls || '') }, svg('title', {}, `${b.label}: ${p.value} ${p.name || ''}`)),
        );
      }
    }
    if (bars.length <= 14 || i % Math.ceil(bars.length / 10) === 0) {
      root.appendChild(svg('text', { x: PAD.l + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle', class: 'axis' }, b.label));
    }
  });
  return root;
}
