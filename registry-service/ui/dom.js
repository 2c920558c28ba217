// Small DOM helpers: build elements, format figures.

// el builds an HTML element: attributes from attrs (on* keys become event
// listeners, null and false are left out), then children (strings become
// text, null is skipped; arrays, nested or not, give their items).
export function el(tag, attrs, ...kids) {
  return fill(document.createElement(tag), attrs, kids);
}

function fill(node, attrs, kids) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'style') node.style.cssText = v; // CSSOM: the CSP allows no style attributes
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    node.append(kid instanceof Node ? kid : String(kid));
  }
  return node;
}

// show replaces a container's children.
export function show(container, ...kids) {
  container.replaceChildren();
  fill(container, null, kids);
}

// age is how long ago an RFC 3339 time was: "42s", "5m", "3h", "2d".
export function age(iso) {
  const t = Date.parse(iso);
  if (!t || t < 0) return '–';
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm';
  if (s < 86400) return Math.floor(s / 3600) + 'h';
  return Math.floor(s / 86400) + 'd';
}

// cores formats millicores: 1500 → "1.5".
export const cores = (m) => (m / 1000).toFixed(m % 1000 === 0 ? 0 : 1);

// mib formats MiB: 2048 → "2 GiB".
export const mib = (m) => (m >= 1024 ? (m / 1024).toFixed(m % 1024 === 0 ? 0 : 1) + ' GiB' : m + ' MiB');

// bar is a small usage bar, used of total.
export function bar(used, total) {
  const pct = total > 0 ? Math.min(100, Math.round((100 * used) / total)) : 0;
  return el('span', { class: 'bar', title: pct + '%' }, el('span', { style: `width:${pct}%` }));
}
