// The Network view: the nodes' table and the heatmap of the RTTs between
// them, from GET /nodes.
import { el, show, cores, mib, bar } from './dom.js';

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

// esc makes text safe inside markup (element text and quoted attributes).
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

let drawn = ''; // the heatmap's last markup: the same data is not drawn again

// renderHeatmap draws the RTT matrix as SVG: row node → column node, a
// hatched cell where the row's node has no figure; with limits of a
// service, cells above its hard RTT crossed out and those within its soft
// RTT outlined. At 100 nodes that is 10,000 cells, so no cell is an
// element: the cells of one colour are one <path>, the SVG is built as
// one string and parsed once, and one tooltip for the whole map finds
// the cell under the pointer from its coordinates. The figures stay in
// the DOM for whoever reads it: the <svg> has data-cols (the columns'
// node names, JSON), data-pad and data-cell (where the cells are, in the
// viewBox's units), and each row a <g data-from="name" data-rtts="[…]">,
// the row's RTTs in ms in column order, null where not measured.
export function renderHeatmap(box, nodes, limits) {
  const withRTT = nodes.filter((n) => n.PeerID);
  if (withRTT.length < 2 || !withRTT.some((n) => (n.RTTs || []).length)) {
    drawn = '';
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
  const names = ns.map((n) => name(n));
  const hard = limits && limits.hard > 0 ? limits.hard : 0;
  const soft = limits && limits.soft > 0 ? limits.soft : 0;
  const w = cell - 1;
  const sq = (x, y) => `M${x} ${y}h${w}v${w}h${-w}z`;
  const fills = new Map(); // colour → the path of its cells
  const add = (m, k, d) => { const a = m.get(k); if (a) a.push(d); else m.set(k, [d]); };
  const diag = [], within = [], beyond = [], rows = [], text = [], matrix = [];
  ns.forEach((n, i) => {
    const y = pad + i * cell;
    const rtts = rttOf(n);
    const row = ns.map((m) => rtts.get(m.PeerID) ?? null);
    matrix.push(row);
    rows.push(`<g data-from="${esc(names[i])}" data-rtts="${esc(JSON.stringify(row))}"/>`);
    if (labels) {
      text.push(`<text x="${pad - 4}" y="${y + cell * 0.65}" text-anchor="end">${esc(names[i])}</text>`,
        `<text transform="translate(${pad + i * cell + cell * 0.65},${pad - 4}) rotate(-60)">${esc(names[i])}</text>`);
    }
    row.forEach((ms, j) => {
      const x = pad + j * cell, d = sq(x, y);
      if (i === j) { diag.push(d); return; }
      if (ms === null) { add(fills, 'url(#missing)', d); return; }
      add(fills, colour(ms, max), d);
      if (hard && ms > hard) beyond.push(d, `M${x + 2} ${y + 2}L${x + cell - 3} ${y + cell - 3}`);
      else if (soft && ms <= soft) within.push(d);
      if (cell >= 28) text.push(`<text x="${x + cell / 2}" y="${y + cell * 0.65}" text-anchor="middle">${Math.round(ms)}</text>`);
    });
  });
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${size} ${size}" width="${size}" height="${size}" role="img" aria-label="RTT heatmap"`,
    ` data-cols="${esc(JSON.stringify(names))}" data-pad="${pad}" data-cell="${cell}">`,
    '<defs><pattern id="missing" width="4" height="4" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">',
    '<rect width="4" height="4" fill="#f1f1f1"/><line x1="0" y1="0" x2="0" y2="4" stroke="#bbb" stroke-width="1.5"/></pattern></defs>',
    ...rows, `<path d="${diag.join('')}" fill="#fff" stroke="#eee"/>`];
  for (const [fill, ds] of fills) out.push(`<path d="${ds.join('')}" fill="${fill}"/>`);
  if (within.length) out.push(`<path class="within-soft" d="${within.join('')}" fill="none" stroke="#1d4a3a" stroke-width="2"/>`);
  if (beyond.length) out.push(`<path class="beyond-hard" d="${beyond.join('')}" fill="none" stroke="#a33a1f" stroke-width="2"/>`);
  out.push(...text, '</svg>');
  const markup = out.join('') + JSON.stringify(limits);
  if (markup === drawn && box.querySelector('svg')) return;
  drawn = markup;
  const map = el('div', { class: 'map' });
  map.innerHTML = out.join('');
  const tip = el('div', { class: 'tip', role: 'tooltip', hidden: true });
  map.append(tip);
  const svgEl = map.firstElementChild;
  map.addEventListener('pointermove', (e) => {
    const p = new DOMPoint(e.clientX, e.clientY).matrixTransform(svgEl.getScreenCTM().inverse());
    const i = Math.floor((p.y - pad) / cell), j = Math.floor((p.x - pad) / cell);
    if (i < 0 || j < 0 || i >= names.length || j >= names.length || i === j) { tip.hidden = true; return; }
    const ms = matrix[i][j];
    let what = ms === null ? 'not measured' : `${ms} ms`;
    if (ms !== null && hard && ms > hard) what += `, beyond hard RTT ${hard} ms`;
    else if (ms !== null && soft && ms <= soft) what += `, within soft RTT ${soft} ms`;
    tip.textContent = `${names[i]} → ${names[j]}: ${what}`;
    const r = map.getBoundingClientRect();
    tip.style.left = `${e.clientX - r.left + 12}px`;
    tip.style.top = `${e.clientY - r.top + 12}px`;
    tip.hidden = false;
  });
  map.addEventListener('pointerleave', () => { tip.hidden = true; });
  const scale = [0, max / 8, max / 2, max].map((v) => el('span', { style: `background:${colour(v, max)};padding:0 .4em` }, Math.round(v) + ' ms'));
  show(box, map,
    el('div', { class: 'legend' }, 'colour:', scale, el('span', null, '▨ not measured'),
      limits ? el('span', null, `outlined: within soft RTT ${limits.soft || '–'} ms; crossed: beyond hard RTT ${limits.hard || '–'} ms`) : null));
}
