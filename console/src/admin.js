// Admin screens: the org's models (versions with their validation metrics, the
// active marker, deploy, rollback, train now), training runs (refreshed when a
// run ends: the /ws training events), the audit log, and the health routes as
// a system overview.

import * as api from './api.js';
import { h, mount, toast, pct, when, errorText } from './ui.js';

const num = (x, digits) => (x === null || x === undefined ? '–' : (+x).toFixed(digits));

export async function modelsView(feed) {
  const box = h('div', {});
  mount(h('h1', {}, 'Models'), box);

  async function load() {
    let versions;
    let status;
    try {
      [versions, status] = await Promise.all([api.get('/api/ml/versions'), api.get('/api/ml/status')]);
    } catch (e) {
      box.replaceChildren(h('p', { class: 'error' }, errorText(e)));
      return;
    }
    const act = (label, run, cls) =>
      h('button', {
        type: 'button',
        class: cls,
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            await run();
            toast(label + ': done', 'ok');
          } catch (err) {
            toast(errorText(err), 'error');
          }
          await load();
        },
      }, label);
    const rows = [...versions.versions].reverse().map((v) => {
      const m = v.metrics || {};
      return h(
        'tr',
        { class: v.active ? 'active' : '', dataset: { version: v.version } },
        h('th', { scope: 'row' }, v.version, v.active && h('span', { class: 'badge ok', 'aria-label': 'active version' }, 'active')),
        h('td', {}, when(v.createdAt)),
        h('td', {}, num(m.auc, 3)),
        h('td', {}, pct(m.eventRecall)),
        h('td', {}, num(m.falseAlarmsPerMachineDay, 2)),
        h('td', {}, m.medianLeadMinutes === null || m.medianLeadMinutes === undefined ? '–' : Math.round(m.medianLeadMinutes) + ' min'),
        h('td', {}, v.active ? '' : act('Deploy ' + v.version, () => api.post('/api/ml/deploy', { version: v.version }))),
      );
    });
    const runs = [...(status.jobs || [])].reverse().slice(0, 20);
    box.replaceChildren(
      h('p', { id: 'active-version', class: 'notice' + (status.activeVersion ? ' ok' : '') }, status.activeVersion ? 'Active version: ' + status.activeVersion : 'No active model: the rules alone alert.'),
      h(
        'div',
        { class: 'actions' },
        act('Roll back', () => api.post('/api/ml/rollback'), 'secondary'),
        act('Train now', () => api.post('/api/ml/train', {})),
      ),
      h(
        'div',
        { class: 'scroll' },
        h(
          'table',
          { class: 'table', id: 'versions' },
          h('caption', {}, `${versions.versions.length} versions (validation metrics of each)`),
          h('thead', {}, h('tr', {}, ['Version', 'Created', 'AUC', 'Event recall', 'False alarms / machine-day', 'Median lead', ''].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows),
        ),
      ),
      h('h2', {}, 'Training runs'),
      h(
        'div',
        { class: 'scroll' },
        h(
          'table',
          { class: 'table', id: 'runs' },
          h('caption', {}, 'Queued, running and finished runs'),
          h('thead', {}, h('tr', {}, ['Run', 'Trigger', 'By', 'Status', 'Queued', 'Ended', 'Version'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            runs.map((j) => h('tr', {}, h('td', {}, j.id), h('td', {}, j.trigger), h('td', {}, j.requestedBy), h('td', {}, j.status, j.error ? ': ' + j.error : ''), h('td', {}, when(j.queuedAt)), h('td', {}, when(j.completedAt)), h('td', {}, j.version || '–'))),
          ),
        ),
      ),
    );
  }
  await load();
  const off = feed.on((kind) => {
    if (kind === 'training') load();
  });
  return off;
}

export async function auditView() {
  const list = h('tbody', {});
  const more = h('button', { type: 'button', class: 'secondary' }, 'Older entries');
  let next = null;
  async function page() {
    try {
      const p = await api.get('/api/audit?limit=50' + (next ? '&cursor=' + encodeURIComponent(next) : ''));
      for (const e of p.entries) {
        list.appendChild(h('tr', {}, h('td', {}, when(e.at)), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.outcome), h('td', { class: 'small' }, JSON.stringify(e.detail))));
      }
      next = p.next;
      more.hidden = !next;
    } catch (e) {
      toast(errorText(e), 'error');
    }
  }
  more.addEventListener('click', page);
  mount(
    h('h1', {}, 'Audit log'),
    h('div', { class: 'scroll' }, h('table', { class: 'table', id: 'audit' }, h('caption', {}, 'Newest first'), h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Outcome', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))), list)),
    more,
  );
  await page();
  return () => {};
}

export async function overviewView() {
  mount(h('h1', {}, 'System'), h('p', { class: 'loading' }, 'Loading…'));
  const routes = ['prediction-service', 'training-service', 'model-cache', 'background-monitor'];
  const results = await Promise.all(routes.map((r) => api.get('/api/health/' + r).then((v) => v, (e) => ({ status: 'unavailable', error: errorText(e) }))));
  mount(
    h('h1', {}, 'System'),
    routes.map((r, i) =>
      h(
        'section',
        { class: 'panel' },
        h('h2', {}, r.replace('-', ' '), ' ', h('span', { class: 'badge health-' + (results[i].status || 'unknown') }, results[i].status || 'ok')),
        h('pre', { class: 'small', tabindex: 0, 'aria-label': r + ' answer' }, JSON.stringify(results[i], null, 2)),
      ),
    ),
  );
  return () => {};
}
