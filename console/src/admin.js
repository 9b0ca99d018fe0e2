// Admin screens: the org's models (versions with their validation metrics, the
// active marker, deploy, rollback, train now), training runs (refreshed when a
// run ends: the /ws training events), the audit log, and the health routes as
// a system overview.

import * as api from './api.js';
import { h, mount, toast, pct, when, errorText, field, scroller } from './ui.js';

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
  return off;
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
