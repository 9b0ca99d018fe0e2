// The fleet (machines with their latest alert probability, open alerts and last
// alert time, and whether the org is scored by a model or by its rules alone)
// and the statistics and trends of the org's alerts.

import * as api from './api.js';
import { h, mount, pct, age, when, errorText } from './ui.js';
import { barChart } from './chart.js';

export async function fleetView(feed) {
  mount(h('h1', {}, 'Fleet'), h('p', { class: 'loading' }, 'Loading…'));
  let service = null;
  try {
    service = await api.get('/api/health/prediction-service');
  } catch (e) {
    service = null;
  }
  const org = service && service.organizations.find((o) => o.organizationId === api.currentOrg());
  const machines = new Map();
  for (const a of feed.alerts.values()) {
    const m = machines.get(a.machineId) || { id: a.machineId, open: 0, last: null, probability: null };
    if (a.status !== 'RESOLVED') m.open += 1;
    const t = a.lastTs || a.ts;
    if (!m.last || Date.parse(t) > Date.parse(m.last)) {
      m.last = t;
      if (a.probability !== null) m.probability = a.probability;
    }
    machines.set(a.machineId, m);
  }
  const rows = [...machines.values()].sort((x, y) => y.open - x.open || x.id.localeCompare(y.id));
  const mode = org
    ? org.mode === 'model'
      ? `Scored by model ${org.activeVersion} (last scored ${when(org.lastScoredAt)})`
      : `Rules only${org.modelError ? ': ' + org.modelError : ' (no active model)'}`
    : 'Scoring status unavailable';
  mount(
    h('h1', {}, 'Fleet'),
    h('p', { class: org && org.mode === 'model' ? 'notice ok' : 'notice' }, mode),
    h(
      'table',
      { class: 'table', id: 'fleet' },
      h('caption', {}, `${rows.length} machines with alerts`),
      h('thead', {}, h('tr', {}, ['Machine', 'Open alerts', 'Latest probability', 'Last alert'].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        {},
        rows.map((m) =>
          h('tr', {}, h('th', { scope: 'row' }, h('a', { href: '#/alerts?machine=' + encodeURIComponent(m.id) }, m.id)), h('td', {}, m.open), h('td', {}, pct(m.probability)), h('td', {}, age(m.last))),
        ),
      ),
    ),
  );
  return () => {};
}

export async function statsView() {
  mount(h('h1', {}, 'Statistics'), h('p', { class: 'loading' }, 'Loading…'));
  let stats;
  let trends;
  try {
    [stats, trends] = await Promise.all([api.get('/api/predictive-alerts/statistics'), api.get('/api/predictive-alerts/trends/summary')]);
  } catch (e) {
    mount(h('h1', {}, 'Statistics'), h('p', { class: 'error' }, errorText(e)));
    return () => {};
  }
  const counts = (title, obj) =>
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, title),
      barChart(title, Object.entries(obj).map(([k, v]) => ({ label: k, parts: [{ value: v, cls: 'b0', name: k }] }))),
    );
  const days = trends.days || [];
  mount(
    h('h1', {}, 'Statistics'),
    h(
      'dl',
      { class: 'facts' },
      [
        ['Alerts', stats.total],
        ['Acknowledged', `${stats.acknowledged} (${pct(stats.acknowledgedShare)})`],
        ['With feedback', stats.withFeedback],
        ['Feedback accuracy', pct(stats.feedbackAccuracy)],
        ['Mean time to acknowledge', stats.meanTimeToAcknowledgeMs === null ? '–' : Math.round(stats.meanTimeToAcknowledgeMs / 60000) + ' min'],
        ['Mean time to resolve', stats.meanTimeToResolveMs === null ? '–' : Math.round(stats.meanTimeToResolveMs / 60000) + ' min'],
      ].map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, v))),
    ),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, 'Alerts per day'),
      barChart(
        'Alerts per UTC day: predictive, critical and warning',
        days.map((d) => ({
          label: d.date.slice(5),
          parts: [
            { value: d.predictive, cls: 'b0', name: 'predictive' },
            { value: d.critical, cls: 'b1', name: 'critical' },
            { value: d.warning, cls: 'b2', name: 'warning' },
          ],
        })),
      ),
      h('p', { class: 'legend small' }, h('span', { class: 'key b0' }, 'predictive'), h('span', { class: 'key b1' }, 'critical'), h('span', { class: 'key b2' }, 'warning')),
    ),
    counts('By type', stats.byType),
    counts('By component', stats.byComponent),
    counts('By status', stats.byStatus),
  );
  return () => {};
}
