// The public HTTP API, as the page uses it: reads with fetch, writes with
// the token. Nothing here exists for the page alone.

const TOKEN = 'physarum.token';

let token = sessionStorage.getItem(TOKEN) || '';

// hasToken reports whether actions are on: a token was entered and the
// API has not refused it.
export const hasToken = () => token !== '';

export function setToken(t) {
  token = t.trim();
  if (token) sessionStorage.setItem(TOKEN, token);
  else sessionStorage.removeItem(TOKEN);
}

// AuthError is a 401: a read the API wants a token for, or a write whose
// token it refused.
export class AuthError extends Error {}

export function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

async function call(method, path, body) {
  const init = { method, headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
  if (body) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (resp.status === 401) throw new AuthError(data.message || 'unauthorized');
  if (!resp.ok) {
    const err = new Error(data.message || `${method} ${path}: ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

// get reads path; a 404 is null (a route or object that is not there).
export async function get(path) {
  try {
    return await call('GET', path);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

export const post = (path, body) => call('POST', path, body);
