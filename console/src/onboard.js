// The onboarding wizard (super admins): a sample of an org's rows (CSV or JSON
// lines, uploaded or pasted) → its columns and their types → machine and time
// columns, signals (kind, unit, limits) → what the sample holds against those
// limits → POST /api/orgs (the server validates; its refusal is shown at the
// field it names) → next steps.

import * as api from './api.js';
import { h, mount, toast, field, select, errorText } from './ui.js';

const MAX_ROWS = 20000;

// Rows of a CSV (header line, `,`, `"` quoting) or of JSON lines, as objects.
export function parseSample(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    const rows = [];
    for (const [i, line] of trimmed.split(/\r?\n/).entries()) {
      if (!line.trim()) continue;
      try {
        rows.push(JSON.parse(line));
      } catch (e) {
        throw new Error(`line ${i + 1} is not JSON: ${e.message}`);
      }
      if (rows.length >= MAX_ROWS) break;
    }
    return rows;
  }
  const records = csvRecords(trimmed);
  if (records.length < 2) throw new Error('a CSV sample needs a header line and at least one row');
  const header = records[0].map((c) => c.trim());
  return records.slice(1, MAX_ROWS + 1).map((r) => Object.fromEntries(header.map((k, i) => [k, r[i] === undefined ? '' : r[i]])));
}

function csvRecords(text) {
  const out = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      out.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  row.push(cell);
  out.push(row);
  return out.filter((r) => r.length > 1 || r[0] !== '');
}

const isBool = (v) => typeof v === 'boolean' || (typeof v === 'string' && /^(true|false|on|off)$/i.test(v.trim()));
const num = (v) => (typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' && isFinite(+v) ? +v : null);
const isTime = (v) => (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(v) && !isNaN(Date.parse(v))) || (typeof v === 'number' && v > 946684800000 && v < 4102444800000);

// Each column's type (time, boolean, number, text) and what the sample holds.
export function profile(rows) {
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return cols.map((name) => {
    const vals = rows.map((r) => r[name]).filter((v) => v !== undefined && v !== null && v !== '');
    const nums = vals.map(num).filter((v) => v !== null);
    let type = 'text';
    if (vals.length && vals.every(isTime)) type = 'time';
    else if (vals.length && vals.every(isBool)) type = 'boolean';
    else if (vals.length && nums.length === vals.length) type = nums.every((v) => v === 0 || v === 1) ? 'boolean' : 'number';
    const distinct = new Set(vals.map(String));
    return {
      name,
      type,
      present: vals.length,
      distinct: distinct.size,
      min: nums.length ? Math.min(...nums) : null,
      max: nums.length ? Math.max(...nums) : null,
      example: vals.length ? String(vals[0]) : '',
    };
  });
}

// A canonical signal name for a column (`Oil Temp (K)` → `oil_temp_k`).
export function canonical(col) {
  let s = col.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  if (!/^[a-z]/.test(s)) s = 's_' + s;
  return s || 'signal';
}

export async function onboardView() {
  const state = { rows: [], cols: [], signals: [] };
  const idInput = h('input', { name: 'id', required: true, maxlength: 128, autocomplete: 'off', 'aria-describedby': 'err-id' });
  const nameInput = h('input', { name: 'name', required: true, maxlength: 256, autocomplete: 'off', 'aria-describedby': 'err-name' });
  const fileInput = h('input', { type: 'file', name: 'sample-file', accept: '.csv,.jsonl,.json,.txt,text/csv,application/json' });
  const paste = h('textarea', { name: 'sample', rows: 6, class: 'mono', spellcheck: 'false' });
  const step2 = h('section', { id: 'columns' });
  const step3 = h('section', { id: 'signals' });
  const step4 = h('section', { id: 'preview' });
  const done = h('section', { id: 'next-steps', 'aria-live': 'polite' });
  const errs = { id: h('p', { class: 'error small', id: 'err-id', hidden: true }), name: h('p', { class: 'error small', id: 'err-name', hidden: true }) };
  const general = h('p', { class: 'error', role: 'alert', hidden: true });

  fileInput.addEventListener('change', async () => {
    const f = fileInput.files && fileInput.files[0];
    if (f) paste.value = await f.text();
  });

  function analyse() {
    try {
      state.rows = parseSample(paste.value);
    } catch (e) {
      step2.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'The sample cannot be read: ' + e.message));
      return;
    }
    if (state.rows.length === 0) {
      step2.replaceChildren(h('p', { class: 'error', role: 'alert' }, 'The sample has no rows.'));
      return;
    }
    state.cols = profile(state.rows);
    const text = state.cols.filter((c) => c.type === 'text');
    const machineGuess = (text.find((c) => /asset|machine|furnace|pump|unit|equipment|device|id/i.test(c.name) && c.distinct > 1) || text.find((c) => c.distinct > 1) || text[0] || state.cols[0]).name;
    const timeGuess = (state.cols.find((c) => c.type === 'time') || state.cols[0]).name;
    state.machine = machineGuess;
    state.time = timeGuess;
    renderColumns();
    renderSignals();
    step4.replaceChildren();
  }

  function renderColumns() {
    const names = state.cols.map((c) => [c.name, c.name]);
    step2.replaceChildren(
      h('h2', {}, '2. Columns'),
      h('p', { class: 'muted' }, `${state.rows.length} rows, ${state.cols.length} columns.`),
      h(
        'div',
        { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Detected columns' },
        h(
          'table',
          { class: 'table', id: 'detected' },
          h('caption', {}, 'Detected types'),
          h('thead', {}, h('tr', {}, ['Column', 'Type', 'Values', 'Distinct', 'Min', 'Max', 'Example'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, state.cols.map((c) => h('tr', { dataset: { column: c.name, type: c.type } }, h('th', { scope: 'row' }, c.name), h('td', {}, c.type), h('td', {}, c.present), h('td', {}, c.distinct), h('td', {}, c.min ?? '–'), h('td', {}, c.max ?? '–'), h('td', {}, c.example.slice(0, 32))))),
        ),
      ),
      h(
        'div',
        { class: 'grid2' },
        field('Machine column', select('machine', names, state.machine, (v) => { state.machine = v; renderSignals(); })),
        field('Time column', select('time', names, state.time, (v) => { state.time = v; renderSignals(); })),
      ),
    );
  }

  function renderSignals() {
    const candidates = state.cols.filter((c) => c.name !== state.machine && c.name !== state.time && (c.type === 'number' || c.type === 'boolean'));
    state.signals = candidates.map((c) => {
      const i = state.signals.findIndex((s) => s.column === c.name);
      const old = i >= 0 ? state.signals[i] : null;
      const s = {
        column: c.name,
        include: h('input', { type: 'checkbox', checked: old ? old.include.checked : true, 'aria-label': 'use ' + c.name }),
        name: h('input', { value: old ? old.name.value : canonical(c.name), autocomplete: 'off', 'aria-label': 'signal name of ' + c.name }),
        kind: h('select', { 'aria-label': 'kind of ' + c.name }, ['continuous', 'boolean'].map((k) => h('option', { value: k, selected: (old ? old.kind.value : c.type === 'boolean' ? 'boolean' : 'continuous') === k }, k))),
        unit: h('input', { value: old ? old.unit.value : '', autocomplete: 'off', 'aria-label': 'unit of ' + c.name, size: 6 }),
        low: h('input', { value: old ? old.low.value : '', inputmode: 'decimal', 'aria-label': 'low limit of ' + c.name, size: 7 }),
        high: h('input', { value: old ? old.high.value : '', inputmode: 'decimal', 'aria-label': 'high limit of ' + c.name, size: 7 }),
        component: h('input', { value: old ? old.component.value : '', autocomplete: 'off', 'aria-label': 'component of the limits of ' + c.name }),
        error: h('p', { class: 'error small', role: 'alert', hidden: true, id: 'sig-err-' + canonical(c.name) }),
        profile: c,
      };
      return s;
    });
    step3.replaceChildren(
      h('h2', {}, '3. Signals'),
      h('p', { class: 'muted small' }, 'Names: a-z, 0-9 and _, starting with a letter. A continuous signal needs a unit. Limits are optional; a limit names the component it protects (its crossings label training and drive the limit and forecast checks).'),
      h(
        'div',
        { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Signals' },
        h(
          'table',
          { class: 'table', id: 'signal-map' },
          h('caption', {}, 'Columns mapped to signals'),
          h('thead', {}, h('tr', {}, ['Use', 'Column', 'Signal', 'Kind', 'Unit', 'Low limit', 'High limit', 'Component'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            {},
            state.signals.map((s) => [
              h('tr', { dataset: { column: s.column } }, h('td', {}, s.include), h('th', { scope: 'row' }, s.column), h('td', {}, s.name), h('td', {}, s.kind), h('td', {}, s.unit), h('td', {}, s.low), h('td', {}, s.high), h('td', {}, s.component)),
              h('tr', { class: 'error-row' }, h('td', { colspan: 8 }, s.error)),
            ]),
          ),
        ),
      ),
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: preview }, 'Preview on the sample'), h('button', { type: 'button', onclick: save }, 'Validate and save')),
    );
  }

  const limitOf = (v) => (v.trim() === '' ? null : Number(v));

  // What the sample holds against the limits: rows and machines past each one.
  function preview() {
    const used = state.signals.filter((s) => s.include.checked);
    const rows = used.map((s) => {
      const low = limitOf(s.low.value);
      const high = limitOf(s.high.value);
      let past = 0;
      const machines = new Set();
      for (const r of state.rows) {
        const v = num(r[s.column]);
        if (v === null) continue;
        if ((high !== null && v > high) || (low !== null && v < low)) {
          past += 1;
          machines.add(String(r[state.machine]));
        }
      }
      return h('tr', {}, h('th', { scope: 'row' }, s.name.value), h('td', {}, s.profile.min ?? '–'), h('td', {}, s.profile.max ?? '–'), h('td', {}, low === null && high === null ? 'no limits' : `${past} rows on ${machines.size} machines`));
    });
    const machines = new Set(state.rows.map((r) => String(r[state.machine])));
    const times = state.rows.map((r) => r[state.time]).map((t) => (typeof t === 'number' ? t : Date.parse(t))).filter((t) => isFinite(t));
    step4.replaceChildren(
      h('h2', {}, '4. Preview'),
      h('p', {}, `${machines.size} machines; ${times.length ? new Date(Math.min(...times)).toISOString() + ' to ' + new Date(Math.max(...times)).toISOString() : 'no readable times'}.`),
      h(
        'div',
        { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Preview' },
        h('table', { class: 'table', id: 'limit-preview' }, h('caption', {}, 'Sample rows past the limits'), h('thead', {}, h('tr', {}, ['Signal', 'Min', 'Max', 'Past a limit'].map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows)),
      ),
    );
  }

  function config() {
    const signals = state.signals
      .filter((s) => s.include.checked)
      .map((s) => {
        const low = limitOf(s.low.value);
        const high = limitOf(s.high.value);
        const sig = { name: s.name.value.trim(), column: s.column, kind: s.kind.value };
        if (s.unit.value.trim()) sig.unit = s.unit.value.trim();
        if (low !== null || high !== null) sig.limits = { low, high, component: s.component.value.trim() || null };
        return sig;
      });
    const components = [...new Set(signals.map((s) => s.limits && s.limits.component).filter(Boolean))];
    const mapping = Object.fromEntries([['0', 'general'], ...components.map((c, i) => [String(i + 1), c])]);
    return { name: nameInput.value.trim(), machine_column: state.machine, time_column: state.time, signals, prediction: { component_mapping: mapping } };
  }

  async function save() {
    general.hidden = true;
    for (const e of Object.values(errs)) e.hidden = true;
    const used = state.signals.filter((s) => s.include.checked);
    for (const s of state.signals) {
      s.error.hidden = true;
      for (const k of ['name', 'unit', 'low', 'high', 'component']) s[k].removeAttribute('aria-invalid');
    }
    try {
      const r = await api.postPath('/api/orgs', { id: idInput.value.trim(), config: config() });
      toast('Organization saved', 'ok');
      const id = r.organization.id;
      done.replaceChildren(
        h('h2', {}, '5. Next steps'),
        h('p', { class: 'notice ok' }, `${id} is stored and validated. The pipeline processes it from the next start of the service.`),
        h(
          'ol',
          {},
          h('li', {}, 'Restart the service (or the workers) so the pipeline maps its rows.'),
          h('li', {}, 'Import its history: ', h('code', {}, `prognos history import --org ${id} <files>`)),
          h('li', {}, 'Record past failures (work orders): the Work orders screen, or ', h('code', {}, `prognos history failures import --org ${id} <file>`)),
          h('li', {}, 'Train its first model: ', h('code', {}, `prognos train --org ${id}`), ', or Train now on the Models screen.'),
        ),
      );
    } catch (x) {
      let shown = false;
      for (const [k, v] of Object.entries(x.fields || {})) {
        const m = k.match(/^config\.signals\[(\d+)\]\.?(\w*)/);
        if (m && used[+m[1]]) {
          const s = used[+m[1]];
          const key = { name: 'name', unit: 'unit', limits: 'high', column: 'name', kind: 'name' }[m[2]] || 'name';
          s.error.textContent = `${s.column}: ${v}`;
          s.error.hidden = false;
          s[key].setAttribute('aria-invalid', 'true');
          s[key].setAttribute('aria-describedby', s.error.id);
          shown = true;
        } else if (k === 'id' || k === 'config.name') {
          const e = errs[k === 'id' ? 'id' : 'name'];
          e.textContent = v;
          e.hidden = false;
          (k === 'id' ? idInput : nameInput).setAttribute('aria-invalid', 'true');
          shown = true;
        }
      }
      if (!shown) {
        general.textContent = errorText(x);
        general.hidden = false;
      }
    }
  }

  mount(
    h('h1', {}, 'Onboard an organization'),
    h(
      'section',
      { class: 'panel' },
      h('h2', {}, '1. The organization and a sample of its rows'),
      h('div', { class: 'grid2' }, h('div', {}, field('Organization id', idInput), errs.id), h('div', {}, field('Name', nameInput), errs.name)),
      field('Sample file (CSV or JSON lines)', fileInput),
      field('…or paste rows', paste),
      h('button', { type: 'button', onclick: analyse }, 'Read the sample'),
    ),
    step2,
    step3,
    step4,
    general,
    done,
  );
  return () => {};
}
