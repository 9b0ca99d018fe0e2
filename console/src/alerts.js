// The operator's alerts: one live list of predictive and rule alerts (the /ws
// push with its resume cursor), filters and sorting, and an alert's detail with
// acknowledge, resolve and feedback.

import * as api from './api.js';
import { h, mount, toast, pct, minutes, age, when, field, select, errorText } from './ui.js';
import { lineChart } from './chart.js';

const SEVERITY = { CRITICAL: 0, WARNING: 1 };
const SNAPSHOT = '/offline/alerts.json';

// The org's alerts, kept current by the WebSocket. One feed per session and org.
export class Feed {
  constructor() {
    this.alerts = new Map();
    this.seq = null; // the resume cursor: the highest store sequence seen
    this.ws = null;
    this.retry = 1000;
    this.stopped = false;
    this.listeners = new Set();
    this.state = 'connecting';
    this.predictions = new Map(); // machine -> [[ms, probability]] seen while open
  }

  on(f) {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  emit(kind, detail) {
    for (const f of this.listeners) f(kind, detail);
  }

  setState(s) {
    this.state = s;
    this.emit('state', s);
  }

  // The first page over REST, then the push from the page's highest sequence
  // number on (`since`): a change made between the two is replayed, not lost.
  async start() {
    try {
      const page = await api.get('/api/predictive-alerts?limit=500');
      for (const a of page.alerts) this.upsert(a, false);
      this.seq = page.alerts.reduce((m, a) => Math.max(m, a.seq), 0);
      this.emit('alerts');
      saveSnapshot([...this.alerts.values()]);
    } catch (e) {
      if (e.status === 0) {
        const snap = await loadSnapshot();
        if (snap) {
          for (const a of snap.alerts) this.upsert(a, false);
          this.emit('alerts');
          this.emit('offline', snap.savedAt);
        }
      } else {
        toast('Alerts could not be loaded: ' + errorText(e), 'error');
      }
    }
    this.connect();
  }

  upsert(a, live) {
    const old = this.alerts.get(a.id);
    if (old && old.seq > a.seq) return;
    this.alerts.set(a.id, a);
    if (live && !old) this.emit('new', a);
  }

  connect() {
    if (this.stopped || !api.current()) return;
    const params = this.seq === null ? {} : { since: this.seq };
    const ws = new WebSocket(api.wsUrl(params));
    this.ws = ws;
    this.setState('connecting');
    ws.onmessage = (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      if (ev.type === 'hello') {
        if (this.seq === null) this.seq = ev.seq;
        this.retry = 1000;
        this.setState('live');
      } else if (ev.type && ev.type.startsWith('alert.')) {
        this.seq = Math.max(this.seq || 0, ev.seq);
        this.upsert(ev.alert, !ev.replay);
        this.emit('alerts');
        this.saveSoon();
      } else if (ev.type && ev.type.startsWith('training.')) {
        this.emit('training', ev);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped || !api.current()) return;
      this.setState('reconnecting');
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    };
  }

  saveSoon() {
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => saveSnapshot([...this.alerts.values()]), 2000);
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000);
    this.ws = null;
  }
}

// The latest alerts for reading offline (Cache Storage; deleted at logout).
async function saveSnapshot(alerts) {
  if (!('caches' in self) || !api.current()) return;
  try {
    const c = await caches.open('prognos-data');
    const body = JSON.stringify({ user: api.current().user.username, savedAt: new Date().toISOString(), alerts: alerts.slice(0, 200) });
    await c.put(SNAPSHOT, new Response(body, { headers: { 'content-type': 'application/json' } }));
  } catch (e) {
    /* storage full or unavailable: offline reading is best effort */
  }
}

export async function loadSnapshot() {
  if (!('caches' in self)) return null;
  try {
    const c = await caches.open('prognos-data');
    const r = await c.match(SNAPSHOT);
    return r ? await r.json() : null;
  } catch (e) {
    return null;
  }
}

export async function dropSnapshot() {
  if ('caches' in self) await caches.delete('prognos-data');
}

// ---- the list ------------------------------------------------------------

const filters = { status: 'open', type: 'all', component: 'all', machine: 'all', confidence: '0', ttf: 'any', sort: 'newest' };

function matches(a) {
  if (filters.status === 'open' ? a.status === 'RESOLVED' : filters.status !== 'all' && a.status !== filters.status) return false;
  if (filters.type !== 'all' && a.type !== filters.type) return false;
  if (filters.component !== 'all' && a.component !== filters.component) return false;
  if (filters.machine !== 'all' && a.machineId !== filters.machine) return false;
  if (+filters.confidence > 0 && !(a.confidence !== null && a.confidence >= +filters.confidence)) return false;
  if (filters.ttf !== 'any' && !(a.timeToFailure !== null && a.timeToFailure <= +filters.ttf)) return false;
  return true;
}

const SORTS = {
  newest: (a, b) => Date.parse(b.lastTs || b.ts) - Date.parse(a.lastTs || a.ts),
  probability: (a, b) => (b.probability ?? -1) - (a.probability ?? -1),
  ttf: (a, b) => (a.timeToFailure ?? Infinity) - (b.timeToFailure ?? Infinity),
  severity: (a, b) => SEVERITY[a.severity] - SEVERITY[b.severity] || SORTS.newest(a, b),
};

function card(a) {
  return h(
    'li',
    { class: 'card sev-' + a.severity.toLowerCase(), dataset: { id: a.id, status: a.status } },
    h(
      'a',
      { href: '#/alerts/' + encodeURIComponent(a.id), class: 'card-link' },
      h(
        'div',
        { class: 'card-head' },
        h('span', { class: 'badge type-' + a.type.toLowerCase() }, a.type),
        a.severity !== a.type && h('span', { class: 'badge sev' }, a.severity),
        a.status !== 'ACTIVE' && h('span', { class: 'badge st' }, a.status),
        h('span', { class: 'age' }, age(a.lastTs || a.ts)),
      ),
      h('div', { class: 'card-title' }, a.component, ' · ', a.machineId),
      h(
        'dl',
        { class: 'kv' },
        h('div', {}, h('dt', {}, 'Probability'), h('dd', {}, pct(a.probability))),
        h('div', {}, h('dt', {}, 'Confidence'), h('dd', {}, pct(a.confidence))),
        h('div', {}, h('dt', {}, 'Time to failure'), h('dd', {}, minutes(a.timeToFailure))),
      ),
      a.topFeatures && a.topFeatures.length > 0 && h('p', { class: 'muted small' }, 'Top: ', a.topFeatures.slice(0, 3).map((f) => f.name).join(', ')),
      a.rule && h('p', { class: 'muted small' }, 'Rule: ', a.rule),
    ),
  );
}

export function listView(feed, machine) {
  if (machine) filters.machine = machine;
  const list = h('ul', { class: 'cards', id: 'alert-list', 'aria-live': 'polite', 'aria-label': 'Alerts' });
  const count = h('p', { class: 'muted', id: 'alert-count' });
  const offline = h('p', { class: 'notice', hidden: true });
  const controls = h('form', { class: 'filters', 'aria-label': 'Filter and sort alerts', onsubmit: (e) => e.preventDefault() });

  function options(key, label) {
    const vals = [...new Set([...feed.alerts.values()].map((a) => a[key]))].sort();
    return [['all', 'All ' + label], ...vals.map((v) => [v, v])];
  }

  function renderControls() {
    const set = (k) => (v) => {
      filters[k] = v;
      render();
    };
    controls.replaceChildren(
      field('Status', select('status', [['open', 'Open'], ['ACTIVE', 'Active'], ['ACKNOWLEDGED', 'Acknowledged'], ['RESOLVED', 'Resolved'], ['all', 'All']], filters.status, set('status'))),
      field('Type', select('type', [['all', 'All types'], ['PREDICTIVE', 'Predictive'], ['CRITICAL', 'Critical'], ['WARNING', 'Warning']], filters.type, set('type'))),
      field('Component', select('component', options('component', 'components'), filters.component, set('component'))),
      field('Machine', select('machine', options('machineId', 'machines'), filters.machine, set('machine'))),
      field('Confidence', select('confidence', [['0', 'Any'], ['0.5', '≥ 50%'], ['0.7', '≥ 70%'], ['0.9', '≥ 90%']], filters.confidence, set('confidence'))),
      field('Time to failure', select('ttf', [['any', 'Any'], ['30', '≤ 30 min'], ['60', '≤ 1 h'], ['240', '≤ 4 h'], ['1440', '≤ 1 day']], filters.ttf, set('ttf'))),
      field('Sort', select('sort', [['newest', 'Newest'], ['severity', 'Severity'], ['probability', 'Probability'], ['ttf', 'Time to failure']], filters.sort, set('sort'))),
    );
  }

  let pending = false;
  function render() {
    pending = false;
    const shown = [...feed.alerts.values()].filter(matches).sort(SORTS[filters.sort]).slice(0, 300);
    list.replaceChildren(...shown.map(card));
    count.textContent = `${shown.length} shown of ${feed.alerts.size} loaded`;
    if (shown.length === 0) list.appendChild(h('li', { class: 'empty' }, 'No alerts match.'));
  }
  function soon() {
    if (!pending) {
      pending = true;
      requestAnimationFrame(render);
    }
  }

  const off = feed.on((kind, detail) => {
    if (kind === 'alerts') {
      soon();
    } else if (kind === 'offline') {
      offline.hidden = false;
      offline.textContent = 'Offline: showing the alerts saved at ' + when(detail) + '.';
    }
  });
  renderControls();
  render();
  const timer = setInterval(() => {
    renderControls();
    soon();
  }, 30000);
  mount(h('h1', {}, 'Alerts'), offline, controls, count, list);
  return () => {
    off();
    clearInterval(timer);
  };
}

// ---- one alert -------------------------------------------------------------

export async function detailView(feed, id) {
  mount(h('p', { class: 'loading' }, 'Loading alert…'));
  let a;
  try {
    a = await api.get('/api/predictive-alerts/' + encodeURIComponent(id));
  } catch (e) {
    a = feed.alerts.get(id);
    if (!a) {
      mount(h('h1', {}, 'Alert'), h('p', { class: 'error' }, errorText(e)), h('a', { href: '#/alerts' }, 'Back to alerts'));
      return () => {};
    }
  }
  const chartBox = h('div', { class: 'chart-box' });
  const actions = h('div', { class: 'actions' });
  const facts = h('dl', { class: 'facts' });
  const feedback = h('form', { class: 'feedback', 'aria-label': 'Feedback' });

  function drawChart() {
    const own = [...feed.alerts.values()]
      .filter((x) => x.machineId === a.machineId && x.probability !== null)
      .map((x) => [Date.parse(x.ts), x.probability]);
    const live = feed.predictions.get(a.machineId) || [];
    chartBox.replaceChildren(
      h('h2', {}, 'Probability on ', a.machineId),
      lineChart(`Failure probability of ${a.machineId}: ${own.length} alerts and ${live.length} live scores`, [
        { name: 'alerts', cls: 'alerts', points: own },
        { name: 'live', cls: 'live', points: live },
      ], { yMax: 1, percent: true }),
      h('p', { class: 'muted small' }, 'Dots: this machine\u2019s alerts (by event time) and the scores received since this page opened.'),
    );
  }

  function render() {
    facts.replaceChildren(
      ...[
        ['Type', a.type],
        ['Severity', a.severity],
        ['Status', a.status],
        ['Component', a.component],
        ['Machine', a.machineId],
        ['Probability', pct(a.probability)],
        ['Confidence', pct(a.confidence)],
        ['Time to failure', minutes(a.timeToFailure)],
        ['Model', a.modelVersion],
        ['Rule', a.rule || '–'],
        ['First seen (event time)', when(a.ts)],
        ['Last seen (event time)', when(a.lastTs)],
        ['Repeats suppressed', a.suppressedCount],
        ['Acknowledged', a.acknowledgedBy ? `${a.acknowledgedBy}, ${when(a.acknowledgedAt)}` : '–'],
        ['Resolved', a.resolvedBy ? `${a.resolvedBy}, ${when(a.resolvedAt)}` : '–'],
        ['Feedback', a.isAccurate === null ? '–' : `${a.isAccurate ? 'accurate' : 'not accurate'} (${a.feedbackBy})${a.feedbackComment ? ': ' + a.feedbackComment : ''}`],
      ].map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { dataset: { field: k } }, v))),
    );
    const act = (label, path, enabled) =>
      h('button', {
        type: 'button',
        disabled: !enabled,
        onclick: async (e) => {
          e.target.disabled = true;
          try {
            a = await api.post(`/api/predictive-alerts/${encodeURIComponent(a.id)}/${path}`);
            feed.upsert(a, false);
            toast(label + 'd', 'ok');
            render();
          } catch (err) {
            toast(errorText(err), 'error');
            e.target.disabled = false;
          }
        },
      }, label);
    actions.replaceChildren(act('Acknowledge', 'acknowledge', a.status === 'ACTIVE'), act('Resolve', 'resolve', a.status !== 'RESOLVED'));
  }

  const comment = h('textarea', { name: 'comment', maxlength: 2000, rows: 2 });
  const give = (isAccurate) => async (e) => {
    e.preventDefault();
    try {
      a = await api.post(`/api/predictive-alerts/${encodeURIComponent(a.id)}/feedback`, { isAccurate, comment: comment.value || null });
      feed.upsert(a, false);
      toast('Feedback saved', 'ok');
      render();
    } catch (err) {
      toast(errorText(err), 'error');
    }
  };
  feedback.append(
    h('h2', {}, 'Was this alert right?'),
    field('Comment (optional)', comment),
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: give(true) }, 'Accurate'), h('button', { type: 'button', class: 'secondary', onclick: give(false) }, 'Not accurate')),
  );

  const top = h(
    'table',
    { class: 'table' },
    h('caption', {}, 'Top features'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Feature'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Contribution'))),
    h('tbody', {}, (a.topFeatures || []).map((f) => h('tr', {}, h('td', {}, f.name), h('td', {}, f.value === null ? '–' : (+f.value).toPrecision(4)), h('td', {}, (+f.contribution).toPrecision(3))))),
  );

  render();
  drawChart();
  mount(
    h('p', {}, h('a', { href: '#/alerts' }, '← Alerts')),
    h('h1', {}, a.component, ' on ', a.machineId),
    h('p', { class: 'lead' }, a.message),
    actions,
    facts,
    chartBox,
    (a.topFeatures || []).length > 0 && top,
    feedback,
  );

  // Live scores of this machine while the page is open (where the process runs the pipeline).
  let ws = null;
  try {
    ws = new WebSocket(api.wsUrl({ predictions: true, machine: a.machineId }));
    ws.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      if (ev.type !== 'prediction') return;
      const p = ev.prediction;
      const pts = feed.predictions.get(a.machineId) || [];
      pts.push([typeof p.ts === 'number' ? p.ts : Date.parse(p.ts), p.failureProbability ?? p.probability ?? 0]);
      if (pts.length > 500) pts.splice(0, pts.length - 500);
      feed.predictions.set(a.machineId, pts);
      drawChart();
    };
  } catch (e) {
    ws = null;
  }
  const off = feed.on((kind) => {
    if (kind !== 'alerts') return;
    const now = feed.alerts.get(a.id);
    if (now && now.seq > a.seq) {
      a = now;
      render();
    }
  });
  return () => {
    off();
    if (ws) ws.close(1000);
  };
}
