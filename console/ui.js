// Small DOM helpers shared by the console's pages: element building, tables, forms, messages.

/** Builds an element: h('a', {href: '#/x', class: 'btn'}, 'text', child…). `on*` attributes add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's content. */
export function show(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** A table: columns are [heading, row => cell]; an empty list shows `empty`. */
export function table(columns, rows, empty = 'None yet.') {
  if (rows.length === 0) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, columns.map(([heading]) => h('th', { scope: 'col' }, heading)))),
      h('tbody', {}, rows.map((row) => h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row))))))));
}

let fieldCount = 0;

/** A labelled form field; `input` is the control (its id is set here). */
export function field(label, input, hint) {
  const id = input.id || `f${++fieldCount}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', {}, hint) : null);
}

/** A <select> of [value, label] pairs. */
export function select(name, options, selected) {
  return h('select', { name }, options.map(([value, label]) => h('option', { value, selected: value === selected }, label)));
}

let noticeCount = 0;

/**
 * A message area whose content says how the last action went. Put it beside the controls whose action it reports.
 * When a refusal's code names a parameter (`InvalidParameterValue.FunctionName`) and the same form or panel has a
 * control of that name, the control is marked invalid, the API's message is shown under it (and describes it), and
 * it takes the focus; otherwise the message is scrolled into view.
 */
export function notice() {
  const el = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite' });
  let marked = null;
  const unmark = () => {
    if (!marked) return;
    marked.control.removeAttribute('aria-invalid');
    marked.control.removeAttribute('aria-describedby');
    marked.message.remove();
    marked = null;
  };
  el.ok = (text) => { unmark(); el.className = 'notice ok'; el.textContent = text; };
  el.error = (error) => {
    unmark();
    el.className = 'notice error';
    el.textContent = error && error.code ? `${error.code}: ${error.message}` : String(error && error.message || error);
    const control = namedControl(el.closest('form, .panel'), error);
    if (control) {
      const message = h('small', { class: 'field-error', id: `field-error${++noticeCount}` }, error.message);
      control.after(message);
      control.setAttribute('aria-invalid', 'true');
      control.setAttribute('aria-describedby', message.id);
      marked = { control, message };
      control.focus();
    } else {
      el.scrollIntoView({ block: 'nearest' });
    }
  };
  el.clear = () => { unmark(); el.className = 'notice'; el.textContent = ''; };
  return el;
}

/** The control a refusal's code names (`InvalidParameterValue.Handler` → `[name=Handler]`) within `scope`. */
function namedControl(scope, error) {
  const parameter = error && typeof error.code === 'string' ? error.code.split('.').pop() : '';
  if (!scope || !/^[A-Za-z]+$/.test(parameter)) return null;
  return scope.querySelector(`[name="${parameter}"]`);
}

/** Runs an async action from a button, disabling it meanwhile and reporting a failure in `note`. */
export async function act(button, note, action) {
  button.disabled = true;
  note.clear();
  try {
    return await action();
  } catch (error) {
    note.error(error);
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A tab bar; `current` is the selected tab's key, links go to `href(key)`. */
export function tabs(entries, current, href) {
  return h('nav', { class: 'tabs', 'aria-label': 'Sections' },
    entries.map(([key, label]) => h('a', { href: href(key), class: key === current ? 'tab current' : 'tab', 'aria-current': key === current ? 'page' : null }, label)));
}

/** Reads a form's named controls into an object. */
export function values(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** A page heading with optional actions at its side. */
export function heading(text, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', {}, text), h('div', { class: 'actions' }, actions));
}
