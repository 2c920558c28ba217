// The Network view: the nodes' table and the heatmap of the RTTs between
// them, from GET /nodes.
import { el, svg, show, cores, mib, bar } from './dom.js';

// renderNodes fills the nodes' table. nodes are registry.Node records;
// names alone (from /compute) when the API has no /nodes.
export function renderNodes(box, nodes) {
  document.getElementById('nodes-count').textContent = nodes.length ? `(${nodes.length})` : '';
  if (!nodes.length) {
    show(box, el('p', { class: 'empty' }, 'No allocator yet: start one with ',
      el('code', null, 'allocator -bootstrap <this registry\'s address>'), ' (see docs/operators-guide.md).'));
    return;
  }
  const rows = nodes.map((n) => {
    const usedCPU = n.CPU - n.FreeCPU, usedMem = n.Memory - n.FreeMemory;
    return el('tr', { 'data-node': n.Name || n.PeerID, title: n.PeerID || null },
      el('td', null, n.Name || short(n.PeerID)),
      el('td', { class: 'hide-narrow' }, Object.entries(n.Labels || {}).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`))),
      el('td', null, (n.Runtimes || []).join(', ')),
      el('td', { class: 'num' }, n.CPU === undefined ? '–' : [`${cores(usedCPU)} / ${cores(n.CPU)}`, bar(usedCPU, n.CPU)]),
      el('td', { class: 'num' }, n.Memory === undefined ? '–' : [`${mib(usedMem)} / ${mib(n.Memory)}`, bar(usedMem, n.Memory)]),
      el('td', { class: 'num' }, n.Instances ?? '–'),
      el('td', { class: n.Message ? 'degraded' : 'state-running' }, n.Message || (n.CPU === undefined ? '' : 'up')));
  });
  show(box, el('div', { class: 'scroll' }, el('table', null,
    el('thead', null, el('tr', null, el('th', null, 'node'), el('th', { class: 'hide-narrow' }, 'labels'),
      el('th', null, 'runtimes'), el('th', { class: 'num' }, 'CPU used / offered (cores)'),
      el('th', { class: 'num' }, 'memory used / offered'), el('th', { class: 'num' }, 'instances'), el('th', null, 'state'))),
    el('tbody', null, rows))));
}

// rttOf returns a node's measured RTTs by peer ID (ms).
function rttOf(n) {
  const m = new Map();
  for (const r of n.RTTs || []) m.set(r.PeerID, r.RTT);
  return m;
}

// order sorts nodes so that sites cluster: by their site label when
// they have one, else each next node the nearest to the last one placed.
export function order(nodes) {
  const byName = [...nodes].sort((a, b) => site(a).localeCompare(site(b)) || name(a).localeCompare(name(b)));
  if (nodes.some((n) => site(n))) return byName;
  const rtts = new Map(nodes.map((n) => [n.PeerID, rttOf(n)]));
  const dist = (a, b) => rtts.get(a.PeerID).get(b.PeerID) ?? rtts.get(b.PeerID).get(a.PeerID) ?? Infinity;
  const out = [byName.shift()];
  while (byName.length) {
    const last = out[out.length - 1];
    let next = 0;
    for (let i = 1; i < byName.length; i++) {
      if (dist(last, byName[i]) < dist(last, byName[next])) next = i;
    }
    out.push(byName.splice(next, 1)[0]);
  }
  return out;
}

const site = (n) => (n.Labels && (n.Labels.site || n.Labels.region || n.Labels.zone)) || '';
const name = (n) => n.Name || n.PeerID;
const short = (id) => (id || '').slice(-8);

// colour maps an RTT onto green (near) to red (far), on a log scale up to max.
function colour(ms, max) {
  const f = Math.min(1, Math.log1p(ms) / Math.log1p(Math.max(max, 1)));
  return `hsl(${Math.round(130 - 130 * f)}, 60%, ${Math.round(82 - 32 * f)}%)`;
}

// renderHeatmap draws the RTT matrix as SVG: row node → column node, a
// hatched cell where the row's node has no figure; with limits of a
// service, cells above its hard RTT crossed out and those within its soft
// RTT outlined.
export function renderHeatmap(box, nodes, limits) {
  const withRTT = nodes.filter((n) => n.PeerID);
  if (withRTT.length < 2 || !withRTT.some((n) => (n.RTTs || []).length)) {
    show(box, el('p', { class: 'empty' }, withRTT.length < 2
      ? 'The heatmap needs two nodes or more.'
      : 'No RTTs published yet: allocators measure each other on their heartbeat.'));
    return;
  }
  const ns = order(withRTT);
  let max = 1;
  for (const n of ns) for (const r of n.RTTs || []) max = Math.max(max, r.RTT);
  const cell = ns.length > 40 ? 8 : ns.length > 15 ? 16 : 28;
  const pad = 90;
  const labels = cell >= 16;
  const size = pad + cell * ns.length + (labels ? 60 : 0); // room for the slanted labels
  const kids = [
    svg('defs', null, svg('pattern', { id: 'missing', width: 4, height: 4, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' },
      svg('rect', { width: 4, height: 4, fill: '#f1f1f1' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 4, stroke: '#bbb', 'stroke-width': 1.5 }))),
  ];
  ns.forEach((n, i) => {
    if (labels) {
      kids.push(svg('text', { x: pad - 4, y: pad + i * cell + cell * 0.65, 'text-anchor': 'end' }, name(n)));
      kids.push(svg('text', { transform: `translate(${pad + i * cell + cell * 0.65},${pad - 4}) rotate(-60)` }, name(n)));
    }
    const rtts = rttOf(n);
    ns.forEach((m, j) => {
      const x = pad + j * cell, y = pad + i * cell;
      const attrs = { x, y, width: cell - 1, height: cell - 1, 'data-from': name(n), 'data-to': name(m) };
      if (i === j) {
        kids.push(svg('rect', { ...attrs, fill: '#fff', stroke: '#eee' }));
        return;
      }
      const ms = rtts.get(m.PeerID);
      if (ms === undefined) {
        kids.push(svg('rect', { ...attrs, fill: 'url(#missing)', 'data-rtt': '' }, svg('title', null, `${name(n)} → ${name(m)}: not measured`)));
        return;
      }
      let stroke = null;
      if (limits && limits.hard > 0 && ms > limits.hard) stroke = '#a33a1f';
      else if (limits && limits.soft > 0 && ms <= limits.soft) stroke = '#1d4a3a';
      kids.push(svg('rect', { ...attrs, fill: colour(ms, max), 'data-rtt': ms, stroke, 'stroke-width': stroke ? 2 : null },
        svg('title', null, `${name(n)} → ${name(m)}: ${ms} ms`)));
      if (limits && limits.hard > 0 && ms > limits.hard) {
        kids.push(svg('line', { x1: x + 2, y1: y + 2, x2: x + cell - 3, y2: y + cell - 3, stroke: '#a33a1f', 'pointer-events': 'none' }));
      }
      if (cell >= 28) {
        kids.push(svg('text', { x: x + cell / 2, y: y + cell * 0.65, 'text-anchor': 'middle', 'pointer-events': 'none' }, Math.round(ms)));
      }
    });
  });
  const scale = [0, max / 8, max / 2, max].map((v) => el('span', { style: `background:${colour(v, max)};padding:0 .4em` }, Math.round(v) + ' ms'));
  show(box,
    svg('svg', { viewBox: `0 0 ${size} ${size}`, width: size, height: size, role: 'img', 'aria-label': 'RTT heatmap' }, kids),
    el('div', { class: 'legend' }, 'colour:', scale, el('span', null, '▨ not measured'),
      limits ? el('span', null, `outlined: within soft RTT ${limits.soft || '–'} ms; crossed: beyond hard RTT ${limits.hard || '–'} ms`) : null));
}
