// The console's shell: login, navigation by role, the org switch of a super
// admin, the hash router, and the service worker (offline shell).

import * as api from './api.js';
import { h, mount, toast, field, errorText, when } from './ui.js';
import { Feed, listView, detailView, loadSnapshot, dropSnapshot } from './alerts.js';
import { fleetView, statsView } from './fleet.js';
import { modelsView, auditView, overviewView, workOrdersView, orgConfigView } from './admin.js';
import { onboardView } from './onboard.js';

let feed = null;
let leave = () => {};
let orgs = [];

const SECTIONS = [
  { hash: '#/alerts', label: 'Alerts', admin: false },
  { hash: '#/fleet', label: 'Fleet', admin: false },
  { hash: '#/stats', label: 'Statistics', admin: false },
  { hash: '#/models', label: 'Models', admin: true },
  { hash: '#/work-orders', label: 'Work orders', admin: false },
  { hash: '#/org', label: 'Organization', admin: true, superOnly: true },
  { hash: '#/onboard', label: 'Onboard', admin: true, superOnly: true },
  { hash: '#/audit', label: 'Audit', admin: true },
  { hash: '#/system', label: 'System', admin: false },
];

function loginView(message) {
  const user = h('input', { name: 'username', autocomplete: 'username', required: true, maxlength: 64 });
  const pass = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 1024 });
  const err = h('p', { class: 'error', role: 'alert', hidden: !message }, message || '');
  const offline = h('div', {});
  loadSnapshot().then((s) => {
    if (!s) return;
    offline.replaceChildren(h('button', { type: 'button', class: 'secondary', onclick: () => offlineView(s) }, `Read the alerts saved at ${when(s.savedAt)} (offline)`));
  });
  const form = h(
    'form',
    {
      class: 'login panel',
      onsubmit: async (e) => {
        e.preventDefault();
        err.hidden = true;
        try {
          await api.login(user.value.trim(), pass.value);
        } catch (x) {
          err.textContent = x.status === 401 ? 'Wrong username or password.' : errorText(x);
          err.hidden = false;
        }
      },
    },
    h('h1', {}, 'Sign in'),
    field('Username', user),
    field('Password', pass),
    err,
    h('button', { type: 'submit' }, 'Sign in'),
  );
  mount(form, offline);
  user.focus();
}

function offlineView(snap) {
  const f = new Feed();
  for (const a of snap.alerts) f.alerts.set(a.id, a);
  leave();
  leave = listView(f);
  const n = document.querySelector('main .notice');
  if (n) {
    n.hidden = false;
    n.textContent = `Offline: the alerts ${snap.user} saw at ${when(snap.savedAt)}. Sign in to act on them.`;
  }
}

function renderBar() {
  const s = api.current();
  const nav = document.getElementById('nav');
  const who = document.getElementById('who');
  if (!s) {
    nav.hidden = true;
    nav.replaceChildren();
    who.replaceChildren();
    return;
  }
  nav.hidden = false;
  nav.replaceChildren(
    ...SECTIONS.filter((x) => (!x.admin || api.isAdmin()) && (!x.superOnly || s.user.role === 'super_admin')).map((x) =>
      h('a', { href: x.hash, 'aria-current': location.hash.startsWith(x.hash) ? 'page' : null }, x.label),
    ),
  );
  const here = nav.querySelector('[aria-current="page"]');
  if (here && here.scrollIntoView) here.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  const parts = [h('span', { class: 'user' }, s.user.username, ' · ', s.user.role.replace('_', ' '))];
  if (s.user.role === 'super_admin') {
    const sel = h(
      'select',
      {
        'aria-label': 'Organization',
        onchange: (e) => {
          api.setOrg(e.target.value);
        },
      },
      orgs.map((o) => h('option', { value: o.id, selected: o.id === api.currentOrg() }, o.name || o.id)),
    );
    parts.push(sel);
  } else {
    parts.push(h('span', { class: 'org' }, s.user.organizationId));
  }
  parts.push(
    h('button', {
      type: 'button',
      class: 'link',
      onclick: async () => {
        await dropSnapshot();
        api.logout();
      },
    }, 'Sign out'),
  );
  who.replaceChildren(...parts);
}

function setConn(state) {
  const c = document.getElementById('conn');
  c.dataset.state = state;
  c.textContent = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…' }[state] || '';
}

async function route() {
  leave();
  leave = () => {};
  renderBar();
  if (!api.current()) return;
  if (!api.currentOrg()) {
    mount(h('h1', {}, 'Choose an organization'), h('p', {}, 'No organization is configured yet.'));
    return;
  }
  const [path, query] = (location.hash || '#/alerts').slice(1).split('?');
  const parts = path.split('/').filter(Boolean);
  const done = (f) => {
    leave = f || (() => {});
    document.getElementById('main').focus({ preventScroll: true });
  };
  if (parts[0] === 'alerts' && parts[1]) done(await detailView(feed, decodeURIComponent(parts[1])));
  else if (parts[0] === 'fleet') done(await fleetView(feed));
  else if (parts[0] === 'stats') done(await statsView());
  else if (parts[0] === 'models' && api.isAdmin()) done(await modelsView(feed));
  else if (parts[0] === 'audit' && api.isAdmin()) done(await auditView());
  else if (parts[0] === 'work-orders') done(await workOrdersView());
  else if (parts[0] === 'org' && api.current().user.role === 'super_admin') done(await orgConfigView());
  else if (parts[0] === 'onboard' && api.current().user.role === 'super_admin') done(await onboardView());
  else if (parts[0] === 'system') done(await overviewView());
  else {
    const machine = new URLSearchParams(query || '').get('machine');
    done(listView(feed, machine));
  }
}

async function started(session) {
  if (feed) feed.stop();
  feed = null;
  if (!session) {
    renderBar();
    setConn('');
    loginView();
    return;
  }
  if (session.user.role === 'super_admin' && orgs.length === 0) {
    try {
      orgs = (await api.get('/api/orgs')).organizations;
    } catch (e) {
      orgs = [];
    }
    if (!api.currentOrg() && orgs.length > 0) {
      api.setOrg(orgs[0].id); // calls started again through onSession
      return;
    }
  }
  feed = new Feed();
  feed.on((kind, detail) => {
    if (kind === 'state') setConn(detail);
    if (kind === 'new' && (detail.type === 'CRITICAL' || detail.type === 'PREDICTIVE')) {
      toast(`New ${detail.type.toLowerCase()} alert: ${detail.component} on ${detail.machineId}`, 'warn');
    }
  });
  feed.start();
  route();
}

api.onSession(started);
window.addEventListener('hashchange', () => {
  if (api.current()) route();
});

if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js').catch(() => toast('Offline support is unavailable in this browser.', 'info'));
}

started(null);
