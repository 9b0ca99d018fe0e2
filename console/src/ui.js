// DOM helpers. Data from the API only ever becomes text nodes or attribute
// values (never HTML), so an alert message cannot inject markup.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function mount(...children) {
  const main = document.getElementById('main');
  main.replaceChildren(...children.flat().filter(Boolean));
  return main;
}

let toastTimer = null;
export function toast(message, kind) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.className = 'toast ' + (kind || 'info');
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    t.hidden = true;
  }, 5000);
}

export function pct(x) {
  return x === null || x === undefined ? '–' : Math.round(x * 100) + '%';
}

// Minutes as "45 min", "3 h 20 min", "2 d 4 h".
export function minutes(m) {
  if (m === null || m === undefined || !isFinite(m)) return '–';
  if (m < 1) return '< 1 min';
  if (m < 60) return Math.round(m) + ' min';
  const hours = Math.floor(m / 60);
  if (hours < 48) return hours + ' h ' + Math.round(m % 60) + ' min';
  return Math.floor(hours / 24) + ' d ' + (hours % 24) + ' h';
}

// How long ago `iso` was, from the browser's clock.
export function age(iso, now) {
  const ms = (now || Date.now()) - Date.parse(iso);
  if (!isFinite(ms)) return '–';
  return minutes(Math.max(0, ms) / 60000) + ' ago';
}

export function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

export function field(label, control, hint) {
  const id = control.id || 'f-' + Math.random().toString(36).slice(2);
  control.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint && h('small', {}, hint));
}

export function select(name, options, value, onchange) {
  return h(
    'select',
    { name, onchange: (e) => onchange(e.target.value) },
    options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)),
  );
}

export function errorText(e) {
  const fields = Object.entries((e && e.fields) || {}).map(([k, v]) => `${k}: ${v}`);
  return (e && e.message ? e.message : String(e)) + (fields.length ? ' (' + fields.join('; ') + ')' : '');
}

// A wide table in a region that scrolls sideways on a phone (focusable, so a
// keyboard can scroll it too).
export function scroller(label, table) {
  return h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': label }, table);
}
