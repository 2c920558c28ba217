// The Services view: each service's definition, figures, autoscaling and
// instances, with scale and stop when actions are on.
import { el, show, age, cores, mib } from './dom.js';

// renderServices fills the list. data: {services (GET /service), statuses
// (GET /status), launched (GET /instances, by uuid), nodes (by peer ID),
// computes (GET /compute)}; act: null when read-only, else {scale(service,
// compute, n), stop(uuid), promote(service), rollback(service)}; open: the
// IDs of instances shown in detail.
export function renderServices(box, data, act, open) {
  const names = Object.keys(data.services || {}).sort();
  document.getElementById('services-count').textContent = names.length ? `(${names.length})` : '';
  if (!names.length) {
    show(box, el('p', { class: 'empty' }, 'No service yet: add one with ',
      el('code', null, 'registry-cli add <config.json> <name>'), ' or ', el('code', null, 'POST /service'), '.'));
    return;
  }
  show(box, names.map((n) => service(n, data.services[n], data.statuses[n] || {}, data, act, open)));
}

function runtime(s) {
  if (s.image || s.DockerHash) return ['docker ', el('code', null, s.image || s.DockerHash)];
  return ['process ', el('code', null, s.command || '')];
}

function service(name, def, st, data, act, open) {
  const req = [`CPU ${cores(def.CpuReq || 0)}`, `memory ${mib(def.MemoryReq || 0)}`];
  if (def.NetworkSoftReq && def.NetworkSoftReq.RTT) req.push(`soft RTT ${def.NetworkSoftReq.RTT} ms`);
  if (def.NetworkHardReq && def.NetworkHardReq.RTT) req.push(`hard RTT ${def.NetworkHardReq.RTT} ms`);
  const computes = Object.entries(st.computes || {});
  if (act && !computes.some(([c]) => c === 'physarum')) computes.push(['physarum', { desired: 0, running: 0, starting: 0, failed: 0 }]);
  computes.sort(([a], [b]) => a.localeCompare(b));
  const figures = el('table', null,
    el('thead', null, el('tr', null, el('th', null, 'compute'), el('th', { class: 'num' }, 'desired'), el('th', { class: 'num' }, 'running'),
      el('th', { class: 'num' }, 'starting'), el('th', { class: 'num' }, 'failed'), el('th', null, act ? 'scale' : ''))),
    el('tbody', null,
      el('tr', { class: 'total' }, el('td', null, 'all'), el('td', { class: 'num desired' }, st.desired ?? 0),
        el('td', { class: 'num running' }, st.running_resources ?? 0), el('td', { class: 'num' }, st.starting ?? 0),
        el('td', { class: 'num' }, st.failed ?? 0), el('td', null, st.on_demand ? `+ ${st.on_demand} on demand` : '')),
      computes.map(([c, cs]) => el('tr', { 'data-compute': c },
        el('td', null, c), el('td', { class: 'num' }, cs.desired), el('td', { class: 'num' }, cs.running),
        el('td', { class: 'num' }, cs.starting), el('td', { class: 'num' }, cs.failed),
        el('td', null, act ? scaler(name, c, cs.desired, act) : (cs.message || cs.last_failure || ''))))));
  return el('article', { class: 'service', 'data-service': name },
    el('h3', null, name, ' ', el('small', null, runtime(def), def.Version ? ` · version ${def.Version}` : '')),
    el('p', null, req.join(' · ')),
    el('div', { class: 'scroll' }, figures),
    autoscale(st.autoscale),
    rollout(name, st.rollout, st.route, act),
    instances(st.instances || [], data, act, open));
}

function scaler(service, compute, desired, act) {
  const input = el('input', { type: 'number', min: 0, value: desired, class: 'action scale-number', 'aria-label': `desired count of ${service} on ${compute}` });
  return el('form', { class: 'actions', onsubmit: (e) => { e.preventDefault(); act.scale(service, compute, Number(input.value)); } },
    input, el('button', { type: 'submit', class: 'action scale' }, 'scale'));
}

function autoscale(a) {
  if (!a || !a.policy) return null;
  const p = a.policy;
  const checks = (p.checks || []).map((c) => `${c.metric} ${c.target}`).join(', ');
  const d = a.last_decision;
  return el('p', { class: 'autoscale' }, `autoscaling ${p.min}–${p.max} on ${p.compute || 'physarum'} (${checks}; every ${p.evaluation_interval})`,
    d ? [el('br'), `last decision ${age(d.at)} ago: ${d.reason}`] : '');
}

// rollout is the service's last rollout (GET /status's rollout and
// route): its versions, state and message, which versions serve while a
// blue-green route decides it, and, with actions on, promote and rollback
// where they apply.
function rollout(service, r, route, act) {
  if (!r || !r.state) return null;
  const strategy = (r.strategy && r.strategy.type) || 'rolling';
  const when = r.state === 'running' ? `started ${age(r.started)} ago` : r.finished ? `ended ${age(r.finished)} ago` : '';
  const running = r.state === 'running';
  const buttons = [];
  if (act && running && strategy === 'blue-green' && r.switched && !r.promoted) {
    buttons.push(el('button', { class: 'action promote', onclick: () => act.promote(service) }, 'promote'));
  }
  if (act && running && !r.revert_of) {
    buttons.push(el('button', { class: 'action rollback', onclick: () => act.rollback(service) }, 'rollback'));
  }
  return el('p', { class: 'rollout', 'data-state': r.state },
    `last rollout (${strategy}): version ${r.from_version} → ${r.to_version}${r.revert_of ? ` reverting version ${r.revert_of}` : ''}, `,
    el('span', { class: 'state-' + r.state }, r.state), when ? ` (${when})` : '',
    route ? [el('br'), el('span', { class: 'serving' }, serving(route))] : '',
    r.message ? [el('br'), r.message] : '',
    buttons.length ? [el('br'), buttons] : '');
}

// serving says which versions a route lets serve.
function serving(route) {
  if (route.switched) return `serving: version ${route.version} and later${(route.equivalent_versions || []).map((v) => `, ${v}`).join('')}`;
  return `serving: the versions before ${route.version} (the old set), until the switch`;
}

function instances(list, data, act, open) {
  if (!list.length) return el('p', { class: 'empty' }, 'No instance.');
  const rows = [];
  for (const i of [...list].sort((a, b) => (a.node_name || '').localeCompare(b.node_name || '') || a.id.localeCompare(b.id))) {
    const launched = data.launched.get(i.id);
    const toggle = () => { if (open.has(i.id)) open.delete(i.id); else open.add(i.id); data.rerender(); };
    rows.push(el('tr', { class: 'instance', 'data-instance': i.id, onclick: toggle },
      el('td', null, i.id),
      el('td', null, i.node_name || (i.node || '').slice(-8)),
      el('td', { class: 'state-' + i.state + (i.standby ? ' standby' : '') }, i.standby ? `${i.state}, standby` : i.state),
      el('td', { class: 'num hide-narrow version' }, i.version || ''),
      el('td', { class: 'num' }, age(i.started)),
      el('td', { class: 'num' }, i.restarts || 0),
      el('td', null, i.on_demand ? 'on demand' : launched ? 'launched' : 'pinned'),
      el('td', null, act && launched && launched.want !== 'stopped'
        ? el('button', { class: 'action stop', 'data-uuid': i.id, onclick: (e) => { e.stopPropagation(); act.stop(i.id); } }, 'stop') : '')));
    if (open.has(i.id)) rows.push(detail(i, launched, data));
  }
  return el('details', { open: true }, el('summary', null, `${list.length} instance${list.length === 1 ? '' : 's'}`),
    el('div', { class: 'scroll' }, el('table', null,
      el('thead', null, el('tr', null, el('th', null, 'instance'), el('th', null, 'node'), el('th', null, 'state'),
        el('th', { class: 'num hide-narrow' }, 'version'), el('th', { class: 'num' }, 'age'), el('th', { class: 'num' }, 'restarts'),
        el('th', null, 'kind'), el('th', null, ''))),
      el('tbody', null, rows))));
}

// detail is what a click shows: where the instance answers and its last
// message. The status has no addresses: they are the launched record's,
// the last instance event's, or else its node's.
function detail(i, launched, data) {
  const seen = data.records.get(i.id);
  const node = data.nodes.get(i.node);
  let addrs = [];
  if (launched && launched.addrs && launched.addrs.multiaddrs) addrs = launched.addrs.multiaddrs;
  else if (seen && seen.Addrs) addrs = seen.Addrs;
  const lines = [
    el('div', null, 'node ', el('code', null, i.node)),
    addrs.length ? el('div', null, 'instance addresses: ', addrs.map((a) => el('code', null, a)), '') : null,
    !addrs.length && node && node.Addrs ? el('div', null, 'node addresses: ', node.Addrs.map((a) => [el('code', null, a), ' '])) : null,
    el('div', { class: 'message' }, 'last message: ', i.message || (launched && launched.message) || 'none'),
  ];
  return el('tr', { class: 'detail' }, el('td', { colspan: 8 }, lines));
}
