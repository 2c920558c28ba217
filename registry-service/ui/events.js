// The Events view: GET /v1/events read as NDJSON with fetch (EventSource
// cannot send the token), resumed after a reload from the last index kept
// in sessionStorage; the last events shown are kept there too.
import { el, show } from './dom.js';
import { headers } from './api.js';

const INDEX = 'physarum.events.index';
const KEPT = 'physarum.events.kept';
const MAX = 200;
export const TOPICS = ['service', 'desired', 'compute', 'node', 'instance', 'launched', 'autoscale', 'rollout'];

let kept = JSON.parse(sessionStorage.getItem(KEPT) || '[]');
const hidden = new Set(JSON.parse(sessionStorage.getItem('physarum.events.hidden') || '[]'));

// follow reads the stream until the page closes, calling onEvent for
// every event, and reconnecting (from the last index) when it breaks.
export async function follow(onEvent, onState) {
  renderTopics();
  render();
  for (let wait = 1000; ; wait = Math.min(wait * 2, 10000)) {
    const index = sessionStorage.getItem(INDEX) || '0';
    try {
      const resp = await fetch('/v1/events?index=' + encodeURIComponent(index), { headers: headers({ Accept: 'application/x-ndjson' }) });
      if (resp.status === 410) {
        sessionStorage.removeItem(INDEX); // compacted: start again from now
        onState('the registry no longer keeps the events after the last one seen; following from now');
        continue;
      }
      if (!resp.ok) throw new Error(`${resp.status}`);
      onState('live');
      wait = 1000;
      await read(resp.body, (ev) => {
        if (ev.index) sessionStorage.setItem(INDEX, String(ev.index));
        if (ev.type === 'heartbeat') return;
        keep(ev);
        onEvent(ev);
      });
    } catch (e) {
      onState(`disconnected (${e.message}); retrying`);
    }
    await new Promise((r) => setTimeout(r, wait));
  }
}

// read splits a body into lines of JSON.
async function read(body, each) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended');
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).trim();
      buf = buf.slice(nl + 1);
      if (line) each(JSON.parse(line));
    }
  }
}

function keep(ev) {
  kept.push({ id: ev.id, index: ev.index, time: ev.time, topic: ev.topic, type: ev.type, key: ev.key, summary: summary(ev) });
  if (kept.length > MAX) kept = kept.slice(-MAX);
  sessionStorage.setItem(KEPT, JSON.stringify(kept));
  render();
}

// summary is the one thing worth reading in an event's object.
function summary(ev) {
  const o = ev.object || {};
  switch (ev.topic) {
    case 'instance': return `${o.State || ''}${o.Restarts ? `, ${o.Restarts} restarts` : ''}${o.Message ? ': ' + o.Message : ''}`;
    case 'launched': return `${o.state || ''}${o.message ? ': ' + o.message : ''}`;
    case 'desired': return `desired ${o.number} on ${o.compute}`;
    case 'node': return `${o.Name || ''} ${o.Instances ?? ''} instances`;
    case 'rollout': return `${o.from_version ?? ''} → ${o.to_version ?? ''} ${o.state || ''}${o.message ? ': ' + o.message : ''}`;
    case 'autoscale': return (o.last_decision && o.last_decision.reason) || o.reason || '';
    default: return '';
  }
}

function render() {
  const list = document.getElementById('event-list');
  const shown = kept.filter((e) => !hidden.has(e.topic)).slice(-MAX).reverse();
  if (!shown.length) {
    show(list, el('li', { class: 'empty' }, 'No event yet: changes appear here as they happen.'));
    return;
  }
  show(list, shown.map((e) => el('li', { 'data-topic': e.topic, 'data-type': e.type, 'data-key': e.key, 'data-index': e.index },
    el('span', null, new Date(e.time).toLocaleTimeString()), el('span', null, e.topic), el('span', null, e.type),
    el('span', null, e.key, e.summary ? ' · ' + e.summary : ''))));
}

function renderTopics() {
  show(document.getElementById('topics'), TOPICS.map((t) => el('label', null,
    el('input', { type: 'checkbox', checked: !hidden.has(t), 'data-topic': t, onchange: (e) => {
      if (e.target.checked) hidden.delete(t); else hidden.add(t);
      sessionStorage.setItem('physarum.events.hidden', JSON.stringify([...hidden]));
      render();
    } }), ' ', t)));
}
