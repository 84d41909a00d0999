// The jobs' dependency graph as SVG: each job in the column of its longest chain of parents,
// parents left of their children, an arrow from each parent to each child.

import {s} from './dom.js';

const BOX_W = 170;
const BOX_H = 34;
const GAP_X = 56;
const GAP_Y = 14;

function shorten(id) {
  return id.length > 22 ? `${id.slice(0, 21)}…` : id;
}

/**
 * parents: Map of job id -> [parent ids] (only the jobs to draw); focus: the job to mark.
 * Returns an <svg role="img" aria-label="Dependency graph"> whose description lists the edges.
 */
export function dependencyGraph(parents, focus) {
  const ids = [...parents.keys()].sort();
  const layer = new Map();
  const depth = (id, seen = new Set()) => {
    if (layer.has(id)) return layer.get(id);
    if (seen.has(id)) return 0; // a cycle: the API refuses them, but never loop
    seen.add(id);
    const ps = (parents.get(id) || []).filter((p) => parents.has(p));
    const d = ps.length ? 1 + Math.max(...ps.map((p) => depth(p, seen))) : 0;
    layer.set(id, d);
    return d;
  };
  ids.forEach((id) => depth(id));
  const columns = [];
  for (const id of ids) {
    const d = layer.get(id);
    (columns[d] = columns[d] || []).push(id);
  }
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((id, r) => {
    pos.set(id, {x: 8 + c * (BOX_W + GAP_X), y: 8 + r * (BOX_H + GAP_Y)});
  }));
  const width = 16 + columns.length * BOX_W + Math.max(0, columns.length - 1) * GAP_X;
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const height = 16 + rows * BOX_H + (rows - 1) * GAP_Y;

  const edges = [];
  for (const id of ids) for (const p of parents.get(id) || []) if (pos.has(p)) edges.push([p, id]);
  // Fixed ids (one graph a page): a redraw of the same graph is then equal to the one shown.
  const descId = 'graph-desc';
  const markerId = 'graph-arrow';
  const svg = s('svg', {
    role: 'img', 'aria-label': 'Dependency graph', 'aria-describedby': descId,
    viewBox: `0 0 ${width} ${height}`, width, class: 'graph',
  });
  const described = edges.length
    ? edges.map(([p, c]) => `${c} depends on ${p}`).join('; ')
    : `${ids.join(', ')}: no dependencies`;
  svg.append(
    s('desc', {id: descId}, described),
    s('defs', {}, s('marker', {id: markerId, viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
      s('path', {d: 'M0 0 L10 5 L0 10 z', class: 'arrow'}))));
  for (const [p, c] of edges) {
    const a = pos.get(p);
    const b = pos.get(c);
    const x1 = a.x + BOX_W;
    const y1 = a.y + BOX_H / 2;
    const x2 = b.x;
    const y2 = b.y + BOX_H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(s('path', {d: `M${x1} ${y1} C${mid} ${y1} ${mid} ${y2} ${x2} ${y2}`, class: 'edge', 'marker-end': `url(#${markerId})`}));
  }
  for (const id of ids) {
    const {x, y} = pos.get(id);
    svg.append(s('g', {class: id === focus ? 'node focus' : 'node'},
      s('title', {}, id),
      s('rect', {x, y, width: BOX_W, height: BOX_H, rx: 6}),
      s('text', {x: x + BOX_W / 2, y: y + BOX_H / 2 + 5, 'text-anchor': 'middle'}, shorten(id))));
  }
  return svg;
}

/** The jobs connected to `id` (its ancestors and descendants), from every job's parents. */
export function component(allParents, id) {
  const children = new Map();
  for (const [c, ps] of allParents) for (const p of ps) (children.get(p) || children.set(p, []).get(p)).push(c);
  const keep = new Set();
  const walk = (start, next) => {
    const stack = [start];
    while (stack.length) {
      const n = stack.pop();
      if (keep.has(n) && n !== start) continue;
      keep.add(n);
      for (const m of next(n)) if (!keep.has(m)) stack.push(m);
    }
  };
  walk(id, (n) => allParents.get(n) || []);
  walk(id, (n) => children.get(n) || []);
  const out = new Map();
  for (const n of keep) out.set(n, (allParents.get(n) || []).filter((p) => keep.has(p)));
  return out;
}
