// The page: load everything from the API, render the views, re-load on
// events (debounced), and the token that turns actions on.
import { get, post, hasToken, setToken, AuthError } from './api.js';
import { renderNodes, renderHeatmap } from './network.js';
import { renderServices } from './services.js';
import { follow } from './events.js';

const $ = (id) => document.getElementById(id);

const state = {
  nodes: [], services: {}, statuses: {}, launched: new Map(),
  records: new Map(), // the last instance record seen in an event, by ID
  open: new Set(), // instances shown in detail
  readDenied: false,
};

function notice(text) {
  $('notice').textContent = text || '';
  $('notice').hidden = !text;
}

// nodes reads GET /nodes; an API without it gives the allocators' names
// from their builtin computes.
async function nodes() {
  const ns = await get('/nodes');
  if (ns) return ns;
  const cs = (await get('/compute')) || {};
  return Object.values(cs).filter((c) => c.kind === 'node').map((c) => ({ Name: c.name }));
}

async function load() {
  try {
    const [ns, services, statuses, launched] = await Promise.all([nodes(), get('/service'), get('/status'), get('/instances')]);
    state.nodes = (ns || []).sort((a, b) => (a.Name || a.PeerID).localeCompare(b.Name || b.PeerID));
    state.services = services || {};
    state.statuses = statuses || {};
    state.launched = new Map((launched || []).map((l) => [l.uuid, l]));
    state.readDenied = false;
    if (!$('notice').dataset.sticky) notice('');
  } catch (e) {
    if (e instanceof AuthError) {
      state.readDenied = true;
      notice('This registry needs its API token to be read: enter it above.');
    } else {
      notice(`Cannot reach the registry's API: ${e.message}`);
    }
  }
  render();
}

function render() {
  renderNodes($('nodes'), state.nodes);
  renderServiceChoice();
  const chosen = state.services[$('rtt-service').value];
  const limits = chosen ? { soft: (chosen.NetworkSoftReq || {}).RTT || 0, hard: (chosen.NetworkHardReq || {}).RTT || 0 } : null;
  renderHeatmap($('heatmap'), state.nodes, limits);
  const byID = new Map(state.nodes.map((n) => [n.PeerID, n]));
  renderServices($('service-list'), { ...state, nodes: byID, rerender: render }, hasToken() ? actions : null, state.open);
  renderToken();
  if (!document.body.dataset.ready) {
    document.body.dataset.ready = String(Math.round(performance.now())); // ms since navigation
  }
}

function renderServiceChoice() {
  const sel = $('rtt-service');
  const names = Object.keys(state.services).sort();
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (have.join() === names.join()) return;
  const keep = sel.value;
  sel.replaceChildren(sel.options[0]);
  for (const n of names) sel.append(new Option(n, n, false, n === keep));
}

function renderToken() {
  $('token-form').hidden = hasToken();
  $('token-state').hidden = !hasToken();
}

// act runs a write; a 401 turns actions off.
async function act(what, fn) {
  try {
    await fn();
    notice('');
    schedule();
  } catch (e) {
    if (e instanceof AuthError) {
      setToken('');
      notice(`The API refused the token (${e.message}): actions are off.`);
      render();
      return;
    }
    notice(`${what}: ${e.message}`);
  }
}

const actions = {
  scale: (service, compute, number) =>
    act(`scale ${service} on ${compute}`, () => post(`/service/${encodeURIComponent(service)}/scale`, { number, compute })),
  stop: (uuid) => act(`stop ${uuid}`, () => post(`/instances/${encodeURIComponent(uuid)}/actions`, { action: 'stop' })),
  promote: (service) => act(`promote ${service}`, () => post(`/service/${encodeURIComponent(service)}/promote`, {})),
  rollback: (service) => act(`rollback ${service}`, () => post(`/service/${encodeURIComponent(service)}/rollback`, {})),
};

// schedule re-loads once the events of a burst have arrived.
let timer = null;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(load, 250);
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  setToken($('token').value);
  $('token').value = '';
  load();
});
$('token-clear').addEventListener('click', () => { setToken(''); render(); });
$('rtt-service').addEventListener('change', render);

load();
follow((ev) => {
  if (ev.topic === 'instance' && ev.object && ev.object.ID) state.records.set(ev.object.ID, ev.object);
  schedule();
}, (s) => { $('events-state').textContent = s; });
// Some changes are no events (a node's RTTs and load move quietly), and
// ages move on: load again every 10 s anyway.
setInterval(load, 10000);
