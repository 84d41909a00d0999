// Small line charts in inline SVG: a few series over time, a y axis from zero, the latest values
// in a legend as text (so the numbers never depend on reading the lines or their colours).

import {h, s} from './dom.js';

const W = 600;
const H = 180;
const PAD = {left: 52, right: 12, top: 12, bottom: 24};

function clock(ms) {
  const d = new Date(ms);
  return `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

/** A round upper bound for the y axis: 0.87 -> 1, 13 -> 15, 420 -> 500. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

/**
 * series: [{name, points: [[unixMs, value], ...]}]; title: the chart's name; format(v): how
 * values read. Returns a <figure> with the chart and its legend.
 */
export function lineChart({title, series, format = String}) {
  const all = series.flatMap((x) => x.points);
  const figure = h('figure', {class: 'chart'});
  // Without samples yet (a server that just started) the axes are drawn over the last hour.
  const now = Date.now();
  const t0 = all.length ? Math.min(...all.map((p) => p[0])) : now - 3600 * 1000;
  const t1 = all.length ? Math.max(...all.map((p) => p[0])) : now;
  const top = niceMax(all.length ? Math.max(...all.map((p) => p[1])) : 0);
  const x = (t) => PAD.left + (t1 === t0 ? W - PAD.left - PAD.right : ((t - t0) / (t1 - t0)) * (W - PAD.left - PAD.right));
  const y = (v) => PAD.top + (1 - v / top) * (H - PAD.top - PAD.bottom);

  const summary = series.map((ser) => {
    const values = ser.points.map((p) => p[1]);
    if (!values.length) return `${ser.name}: no samples`;
    return `${ser.name} now ${format(values[values.length - 1])}, lowest ${format(Math.min(...values))}, highest ${format(Math.max(...values))}`;
  }).join('; ');
  const svg = s('svg', {viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title} since ${clock(t0)}: ${summary}`, class: 'plot'});
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    svg.append(
      s('line', {x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid'}),
      s('text', {x: PAD.left - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis'}, format(v)));
  }
  svg.append(
    s('text', {x: PAD.left, y: H - 6, class: 'axis'}, clock(t0)),
    s('text', {x: W - PAD.right, y: H - 6, 'text-anchor': 'end', class: 'axis'}, clock(t1)));
  series.forEach((ser, i) => {
    if (!ser.points.length) return;
    const d = ser.points.map((p, j) => `${j ? 'L' : 'M'}${x(p[0]).toFixed(1)} ${y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('path', {d, class: `line series-${i}`}));
  });
  figure.append(svg, h('ul', {class: 'legend'}, series.map((ser, i) => {
    const last = ser.points.length ? format(ser.points[ser.points.length - 1][1]) : '—';
    return h('li', {}, h('span', {class: `swatch series-${i}`, 'aria-hidden': 'true'}), `${ser.name}: ${last}`);
  })));
  return figure;
}
