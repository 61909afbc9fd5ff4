// Building DOM without innerHTML: every text from the API goes in as text, never as markup.

/**
 * h('button', {class: 'button', onclick: fn, 'aria-label': 'Close'}, 'Close')
 * Attributes: `class`, `text`, `dataset` (object), `on<event>` (listener), `hidden`/`disabled`/...
 * (booleans), anything else as an attribute. Children: nodes, strings, numbers, arrays, null.
 * A table's body cells get their column's name as data-label (a phone shows rows stacked, each
 * cell under its column's name: app.css).
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else if (name === 'dataset') Object.assign(node.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) node.setAttribute(name, '');
    else node.setAttribute(name, String(value));
  }
  append(node, children);
  if (tag === 'table') labelCells(node);
  return node;
}

/** Each body cell's data-label: the text of its column's header. */
export function labelCells(table) {
  const names = [...table.querySelectorAll('thead th')].map((th) => th.textContent.trim());
  for (const row of table.querySelectorAll('tbody tr')) {
    [...row.cells].forEach((cell, index) => {
      if (names[index]) cell.dataset.label = names[index];
    });
  }
  return table;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of node. */
export function replaceChildren(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

let counter = 0;
/** A unique id for label/aria wiring. */
export function uid(prefix = 'id') {
  counter += 1;
  return `${prefix}-${counter}`;
}

/**
 * Runs render() (which replaces part of the page) and puts the focus back on the element with
 * the same data-focus-key, so live refreshes never throw a keyboard user's focus away.
 */
export function keepingFocus(render) {
  const active = document.activeElement;
  const key = active?.dataset?.focusKey;
  render();
  if (key && !document.activeElement?.dataset?.focusKey) {
    document.querySelector(`[data-focus-key="${CSS.escape(key)}"]`)?.focus();
  }
}

/** A labelled form field: returns {wrapper, input, error}. */
export function field({ label, input, hint, id = uid('field') }) {
  input.id = id;
  const error = h('p', { class: 'field-error', id: `${id}-error`, hidden: true });
  const hintNode = hint ? h('p', { class: 'field-hint', id: `${id}-hint`, text: hint }) : null;
  const described = [hintNode ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', described);
  const wrapper = h(
    'div',
    { class: 'field' },
    h('label', { for: id, text: label }),
    input,
    hintNode,
    error,
  );
  return { wrapper, input, error };
}

/** Shows (or with an empty message, clears) an error beside a field. */
export function setFieldError(error, input, message) {
  error.textContent = message ?? '';
  error.hidden = !message;
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
}

export function debounce(fn, ms) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}
