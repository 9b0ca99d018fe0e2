// The API client: the bearer token lives in this module's memory only (never in
// localStorage, sessionStorage or a cookie), so no other page or script on the
// origin can send it and a closed tab forgets it. Every call goes through the
// service's authorised API; nothing here decides what a user may see.

let session = null; // { token, expiresAt, user: { username, role, organizationId } }
let org = null; // the org a super admin looks at
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, code, message, fields) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields || {};
  }
}

export function onSession(f) {
  listeners.add(f);
}

function changed() {
  for (const f of listeners) f(session);
}

export function current() {
  return session;
}

export function currentOrg() {
  if (!session) return null;
  return session.user.role === 'super_admin' ? org : session.user.organizationId;
}

export function setOrg(o) {
  org = o;
  changed();
}

export function isAdmin() {
  return !!session && (session.user.role === 'admin' || session.user.role === 'super_admin');
}

export async function login(username, password) {
  const body = await call('POST', '/api/auth/login', { username, password }, false);
  session = { token: body.token, expiresAt: Date.parse(body.expiresAt), user: body.user };
  org = body.user.organizationId;
  changed();
  return session;
}

export function logout() {
  session = null;
  org = null;
  changed();
}

// `path` with the org a super admin picked as `?org=` (the API pins everyone else).
export function scoped(path) {
  if (!session || session.user.role !== 'super_admin' || !org) return path;
  return path + (path.includes('?') ? '&' : '?') + 'org=' + encodeURIComponent(org);
}

// One request; an answer that is not 2xx becomes an ApiError (a 401 on an
// authorised call also signs out).
async function send(method, path, body, auth) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (auth) {
    if (!session) throw new ApiError(401, 'unauthorized', 'Please log in.');
    headers.authorization = 'Bearer ' + session.token;
  }
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new ApiError(0, 'offline', 'The service cannot be reached.');
  }
  if (!res.ok) {
    const err = ((await json(res)) || {}).error || {};
    if (res.status === 401 && auth) logout();
    throw new ApiError(res.status, err.code || 'error', err.message || res.statusText, err.fields);
  }
  return res;
}

async function json(res) {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch (e) {
    return null;
  }
}

async function call(method, path, body, auth) {
  return json(await send(method, path, body, auth));
}

// A picture (or any file) of an authorised route, as an object URL for <img>
// (an <img src> could not send the bearer token). Revoke it when done.
export async function objectUrl(path) {
  const res = await send('GET', scoped(path), undefined, true);
  return URL.createObjectURL(await res.blob());
}

export function get(path) {
  return call('GET', scoped(path), undefined, true);
}

export function post(path, body) {
  return call('POST', scoped(path), body === undefined ? {} : body, true);
}

export function put(path, body) {
  return call('PUT', scoped(path), body, true);
}

// Routes that name the org in their path (no `?org=`).
export function getPath(path) {
  return call('GET', path, undefined, true);
}

export function postPath(path, body) {
  return call('POST', path, body === undefined ? {} : body, true);
}

export function putPath(path, body) {
  return call('PUT', path, body, true);
}

// The `/ws` URL for this session (the token goes in the query: browsers cannot
// set headers on a WebSocket).
export function wsUrl(params) {
  const u = new URL('/ws', location.href);
  u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  u.searchParams.set('token', session.token);
  const o = currentOrg();
  if (session.user.role === 'super_admin' && o) u.searchParams.set('org', o);
  for (const [k, v] of Object.entries(params || {})) u.searchParams.set(k, String(v));
  return u.toString();
}
