// Admin screens: the org's models (versions with their validation metrics, the
// active marker, deploy, rollback, train now), training runs (refreshed when a
// run ends: the /ws training events), the audit log, and the health routes as
// a system overview.

import * as api from './api.js';
import { lineChart } from './chart.js';
import { h, mount, toast, pct, when, errorText, field, scroller } from './ui.js';

const num = (x, digits) => (x === null || x === undefined ? '–' : (+x).toFixed(digits));

export async function modelsView(feed) {
  const box = h('div', {});
  const report = h('section', { id: 'report', 'aria-live': 'polite' });
  let reportUrl = null;
  mount(h('h1', {}, 'Models'), box);

  async function load() {
    let versions;
    let status;
    let metrics;
    try {
      [versions, status, metrics] = await Promise.all([api.get('/api/ml/versions'), api.get('/api/ml/status'), api.get('/api/ml/metrics')]);
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
        h(
          'td',
          { class: 'row-actions' },
          h('button', { type: 'button', class: 'secondary', onclick: () => showReport(v.version) }, 'Report ' + v.version),
          v.active ? '' : act('Deploy ' + v.version, () => api.post('/api/ml/deploy', { version: v.version })),
        ),
      );
    });
    const runs = [...(status.jobs || [])].reverse().slice(0, 20);
    async function showReport(version) {
      report.replaceChildren(h('p', { class: 'loading' }, 'Loading the report of ' + version + '…'));
      try {
        if (reportUrl) URL.revokeObjectURL(reportUrl);
        reportUrl = await api.objectUrl('/api/ml/versions/' + encodeURIComponent(version) + '/report');
        report.replaceChildren(
          h('h2', {}, 'Training report of ', version),
          h('img', { src: reportUrl, class: 'report', alt: `Training report of ${version}: validation curves and the operating-point curve` }),
        );
      } catch (e) {
        report.replaceChildren(h('p', { class: 'error' }, 'Report of ' + version + ': ' + errorText(e)));
      }
      report.scrollIntoView({ block: 'nearest' });
    }
    box.replaceChildren(
      h('p', { id: 'active-version', class: 'notice' + (status.activeVersion ? ' ok' : '') }, status.activeVersion ? 'Active version: ' + status.activeVersion : 'No active model: the rules alone alert.'),
      h(
        'div',
        { class: 'actions' },
        act('Roll back', () => api.post('/api/ml/rollback'), 'secondary'),
        act('Train now', () => api.post('/api/ml/train', {})),
      ),
      scroller(
        'Model versions',
        h(
          'table',
          { class: 'table', id: 'versions' },
          h('caption', {}, `${versions.versions.length} versions (validation metrics of each)`),
          h('thead', {}, h('tr', {}, ['Version', 'Created', 'AUC', 'Event recall', 'False alarms / machine-day', 'Median lead', ''].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows),
        ),
      ),
      curve(metrics),
      report,
      h('h2', {}, 'Training runs'),
      scroller(
        'Training runs',
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
  if (api.current().user.role === 'super_admin') box.after(await scheduleForm());
  return () => {
    off();
    if (reportUrl) URL.revokeObjectURL(reportUrl);
  };
}

// The org's training schedule (super admins: it is part of the org's stored
// configuration, PUT /api/orgs/{org}); the server's validation error is shown
// at the field.
async function scheduleForm() {
  const org = api.currentOrg();
  const section = h('section', { class: 'panel', id: 'schedule' }, h('h2', {}, 'Training schedule'));
  let detail;
  try {
    detail = await api.getPath('/api/orgs/' + encodeURIComponent(org));
  } catch (e) {
    section.append(h('p', { class: 'error' }, errorText(e)));
    return section;
  }
  const training = detail.config.training || {};
  const cron = h('input', { name: 'schedule', value: training.schedule || '', 'aria-describedby': 'schedule-error', autocomplete: 'off' });
  const enabled = h('input', { type: 'checkbox', name: 'enabled', checked: training.enabled !== false });
  const err = h('p', { class: 'error', id: 'schedule-error', role: 'alert', hidden: true });
  const saved = h('p', { class: 'muted small', role: 'status' });
  const form = h(
    'form',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        err.hidden = true;
        cron.removeAttribute('aria-invalid');
        const config = structuredClone(detail.config);
        config.training = { ...(config.training || {}), schedule: cron.value.trim(), enabled: enabled.checked };
        try {
          const r = await api.putPath('/api/orgs/' + encodeURIComponent(org), config);
          detail = r.organization;
          const later = (r.restartKeys || []).length > 0;
          saved.textContent = 'Saved' + (later ? ': applied at the next start (' + r.restartKeys.join(', ') + ').' : '.');
          toast('Schedule saved', 'ok');
        } catch (x) {
          const mine = Object.entries(x.fields || {}).filter(([k]) => k.startsWith('training'));
          err.textContent = mine.length ? mine.map(([, v]) => v).join('; ') : errorText(x);
          err.hidden = false;
          cron.setAttribute('aria-invalid', 'true');
          cron.focus();
        }
      },
    },
    field('Schedule (cron: minute hour day-of-month month day-of-week, or with seconds first)', cron),
    err,
    h('div', { class: 'check' }, enabled, h('label', { for: 'sched-enabled' }, 'Scheduled training on')),
    h('button', { type: 'submit' }, 'Save schedule'),
    saved,
  );
  enabled.id = 'sched-enabled';
  section.append(h('p', { class: 'muted small' }, `Timezone ${training.timezone || 'UTC'}; trains on the last ${training.data_days ?? '–'} days of the org's history.`), form);
  return section;
}

// The org's work orders (failures with their start and end): training labels.
export async function workOrdersView() {
  const org = api.currentOrg();
  const base = '/api/orgs/' + encodeURIComponent(org) + '/failures';
  const list = h('tbody', {});
  async function load() {
    try {
      const r = await api.getPath(base);
      list.replaceChildren(
        ...r.failures.map((f) => h('tr', { dataset: { id: f.id } }, h('td', {}, f.machineId), h('td', {}, f.component), h('td', {}, when(f.start)), h('td', {}, when(f.end)), h('td', {}, f.note || ''), h('td', {}, f.createdBy))),
      );
      if (r.failures.length === 0) list.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No work orders yet.')));
    } catch (e) {
      toast(errorText(e), 'error');
    }
  }
  const inputs = {
    machineId: h('input', { name: 'machineId', required: true, maxlength: 256 }),
    component: h('input', { name: 'component', required: true, maxlength: 256 }),
    start: h('input', { name: 'start', type: 'datetime-local', required: true, step: 1 }),
    end: h('input', { name: 'end', type: 'datetime-local', step: 1 }),
    note: h('textarea', { name: 'note', maxlength: 2000, rows: 2 }),
  };
  const errors = Object.fromEntries(Object.keys(inputs).map((k) => [k, h('p', { class: 'error small', id: 'err-' + k, role: 'alert', hidden: true })]));
  for (const [k, el] of Object.entries(inputs)) el.setAttribute('aria-describedby', 'err-' + k);
  const general = h('p', { class: 'error', role: 'alert', hidden: true });
  const iso = (v) => (v ? new Date(v).toISOString() : null); // the browser's local time
  const form = h(
    'form',
    {
      class: 'panel',
      'aria-label': 'Add a work order',
      onsubmit: async (e) => {
        e.preventDefault();
        for (const p of [...Object.values(errors), general]) p.hidden = true;
        for (const el of Object.values(inputs)) el.removeAttribute('aria-invalid');
        try {
          await api.postPath(base, {
            machineId: inputs.machineId.value.trim(),
            component: inputs.component.value.trim(),
            start: iso(inputs.start.value),
            end: iso(inputs.end.value),
            note: inputs.note.value || null,
          });
          toast('Work order saved', 'ok');
          form.reset();
          await load();
        } catch (x) {
          const fields = Object.entries(x.fields || {});
          for (const [k, v] of fields) {
            if (errors[k]) {
              errors[k].textContent = v;
              errors[k].hidden = false;
              inputs[k].setAttribute('aria-invalid', 'true');
            }
          }
          if (!fields.some(([k]) => errors[k])) {
            general.textContent = errorText(x);
            general.hidden = false;
          }
        }
      },
    },
    h('h2', {}, 'Add a work order'),
    h('div', { class: 'grid2' }, Object.entries(inputs).map(([k, el]) => h('div', {}, field({ machineId: 'Machine', component: 'Component', start: 'Failure started (your local time)', end: 'Repaired (optional)', note: 'Note (optional)' }[k], el), errors[k]))),
    general,
    h('button', { type: 'submit' }, 'Save work order'),
  );
  mount(
    h('h1', {}, 'Work orders'),
    h('p', { class: 'muted' }, 'Failures recorded here label the next training run.'),
    api.isAdmin() && form,
    scroller('Work orders', h('table', { class: 'table', id: 'work-orders' }, h('caption', {}, 'Newest start first'), h('thead', {}, h('tr', {}, ['Machine', 'Component', 'Started', 'Repaired', 'Note', 'By'].map((c) => h('th', { scope: 'col' }, c)))), list)),
  );
  await load();
  return () => {};
}

// The active version's operating-point curve (its validation sweep): event
// recall and false alarms per machine-day by failure threshold, with the
// chosen point and the threshold in force marked.
function curve(metrics) {
  const op = metrics && metrics.operatingPoint;
  const points = (op && op.curve) || [];
  if (!metrics.activeVersion || points.length === 0) return null;
  const inForce = metrics.thresholds ? metrics.thresholds.failureThreshold : null;
  const chosen = op.chosen && op.chosen.failureThreshold !== undefined ? op.chosen.failureThreshold : null;
  const markers = [
    { x: chosen, label: 'chosen', cls: 'chosen' },
    { x: inForce, label: 'in force', cls: 'in-force' },
  ];
  const xFormat = (t) => t.toFixed(2);
  const recall = points.filter((p) => p.eventRecall !== null).map((p) => [p.failureThreshold, p.eventRecall]);
  const alarms = points.map((p) => [p.failureThreshold, p.falseAlarmsPerMachineDay]);
  const budget = op.budget === null || op.budget === undefined ? 'none (the best recall)' : op.budget + ' false alarms per machine-day';
  return h(
    'section',
    { class: 'panel', id: 'curve' },
    h('h2', {}, 'Operating point of ', metrics.activeVersion),
    h('p', { class: 'muted small' }, `On the validation rows, by failure threshold. Budget: ${budget}${op.pinned ? ' (pinned)' : ''}; chosen threshold ${chosen === null ? '–' : chosen}; in force ${inForce === null ? '–' : inForce}.`),
    h('div', { class: 'grid2' },
      lineChart(`Event recall of ${metrics.activeVersion} by failure threshold`, [{ name: 'recall', points: recall }], { yMax: 1, percent: true, xFormat, xLabel: 'failure threshold', xMarkers: markers }),
      lineChart(`False alarms per machine-day of ${metrics.activeVersion} by failure threshold`, [{ name: 'false alarms', cls: 'live', points: alarms }], { xFormat, xLabel: 'failure threshold', xMarkers: markers }),
    ),
  );
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
    scroller('Audit log', h('table', { class: 'table', id: 'audit' }, h('caption', {}, 'Newest first'), h('thead', {}, h('tr', {}, ['When', 'Who', 'What', 'Outcome', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))), list)),
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

// A super admin's editor of the org's whole stored configuration
// (GET/PUT /api/orgs/{org}): one input per setting (lists and tables as JSON),
// grouped by section; the server validates and its refusal is shown at the
// setting it names (`prediction.failure_threshold`, `signals[2].column` → the
// nearest setting shown).
export async function orgConfigView() {
  const org = api.currentOrg();
  const path = '/api/orgs/' + encodeURIComponent(org);
  mount(h('h1', {}, 'Organization'), h('p', { class: 'loading' }, 'Loading…'));
  let detail;
  try {
    detail = await api.getPath(path);
  } catch (e) {
    mount(h('h1', {}, 'Organization'), h('p', { class: 'error' }, errorText(e)));
    return () => {};
  }
  const settings = []; // { path: [..], kind, input, error }
  const idOf = (p) => 'cfg-' + p.join('-').replace(/[^A-Za-z0-9_-]/g, '_');
  function control(p, value) {
    const key = p.join('.');
    let input;
    let kind;
    if (typeof value === 'boolean') {
      kind = 'bool';
      input = h('select', { name: key }, h('option', { value: 'true', selected: value }, 'true'), h('option', { value: 'false', selected: !value }, 'false'));
    } else if (typeof value === 'number') {
      kind = 'number';
      input = h('input', { name: key, value: String(value), inputmode: 'decimal', autocomplete: 'off' });
    } else if (typeof value === 'string' || value === null) {
      kind = value === null ? 'null' : 'string';
      input = h('input', { name: key, value: value === null ? '' : value, autocomplete: 'off', placeholder: value === null ? '(none)' : null });
    } else {
      kind = 'json';
      const text = JSON.stringify(value, null, 1);
      input = h('textarea', { name: key, rows: Math.min(12, text.split('\n').length), spellcheck: 'false', class: 'mono' }, text);
    }
    input.id = idOf(p);
    const error = h('p', { class: 'error small', id: input.id + '-err', role: 'alert', hidden: true });
    input.setAttribute('aria-describedby', error.id);
    settings.push({ path: p, kind, input, error });
    return h('div', { class: 'field' }, h('label', { for: input.id }, p[p.length - 1].replace(/_/g, ' ')), input, error);
  }
  function section(title, obj, base) {
    const plain = [];
    const nested = [];
    for (const [k, v] of Object.entries(obj)) {
      if (v && typeof v === 'object' && !Array.isArray(v)) nested.push([k, v]);
      else plain.push(control([...base, k], v));
    }
    return h(
      'fieldset',
      { class: 'panel' },
      h('legend', {}, title),
      h('div', { class: 'grid2' }, plain),
      nested.map(([k, v]) => section(title + ' · ' + k.replace(/_/g, ' '), v, [...base, k])),
    );
  }
  const config = detail.config;
  const top = Object.fromEntries(Object.entries(config).filter(([, v]) => !(v && typeof v === 'object' && !Array.isArray(v))));
  const groups = Object.entries(config).filter(([, v]) => v && typeof v === 'object' && !Array.isArray(v));
  const outcome = h('p', { class: 'notice', role: 'status', hidden: true });
  const general = h('p', { class: 'error', role: 'alert', hidden: true });

  function collect() {
    const out = structuredClone(config);
    let bad = false;
    for (const s of settings) {
      const raw = s.input.value;
      let v;
      if (s.kind === 'bool') v = raw === 'true';
      else if (s.kind === 'number') {
        v = raw.trim() === '' ? NaN : Number(raw);
        if (!isFinite(v)) {
          show(s, 'must be a number');
          bad = true;
        }
      } else if (s.kind === 'null') v = raw === '' ? null : raw;
      else if (s.kind === 'string') v = raw;
      else {
        try {
          v = JSON.parse(raw);
        } catch (e) {
          show(s, 'not valid JSON: ' + e.message);
          bad = true;
        }
      }
      let o = out;
      for (const k of s.path.slice(0, -1)) o = o[k];
      o[s.path[s.path.length - 1]] = v;
    }
    return bad ? null : out;
  }
  function show(s, message) {
    s.error.textContent = message;
    s.error.hidden = false;
    s.input.setAttribute('aria-invalid', 'true');
  }
  // The setting a server field names: the longest shown path it starts with.
  function settingOf(field) {
    let best = null;
    for (const s of settings) {
      const key = s.path.join('.');
      if (field === key || field.startsWith(key + '.') || field.startsWith(key + '[')) {
        if (!best || key.length > best.path.join('.').length) best = s;
      }
    }
    return best;
  }
  const form = h(
    'form',
    {
      'aria-label': 'Organization configuration',
      onsubmit: async (e) => {
        e.preventDefault();
        outcome.hidden = true;
        general.hidden = true;
        for (const s of settings) {
          s.error.hidden = true;
          s.input.removeAttribute('aria-invalid');
        }
        const body = collect();
        if (!body) return;
        try {
          const r = await api.putPath(path, body);
          detail = r.organization;
          const live = r.appliedLive ? 'Thresholds applied now (event time ' + new Date(r.appliedLive.effectiveTs).toISOString() + '). ' : '';
          const later = (r.restartKeys || []).length ? 'At the next start: ' + r.restartKeys.join(', ') + '.' : '';
          outcome.textContent = 'Saved. ' + live + later;
          outcome.hidden = false;
          toast('Configuration saved', 'ok');
        } catch (x) {
          let first = null;
          for (const [k, v] of Object.entries(x.fields || {})) {
            const s = settingOf(k);
            if (s) {
              show(s, k + ': ' + v);
              first = first || s;
            } else {
              general.textContent = errorText(x);
              general.hidden = false;
            }
          }
          if (!first && general.hidden) {
            general.textContent = errorText(x);
            general.hidden = false;
          }
          if (first) first.input.focus();
        }
      },
    },
    section('General', top, []),
    groups.map(([k, v]) => section(k.replace(/_/g, ' '), v, [k])),
    general,
    h('button', { type: 'submit' }, 'Save configuration'),
  );
  mount(
    h('h1', {}, 'Organization: ', detail.name),
    h('p', { class: 'muted' }, `Source: ${detail.source}; last changed ${when(detail.updatedAt)}${detail.updatedBy ? ' by ' + detail.updatedBy : ''}. Thresholds apply at once; other changes at the next start.`),
    outcome,
    form,
  );
  return () => {};
}
