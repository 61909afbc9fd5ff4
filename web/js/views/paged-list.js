// A filtered list a page at a time (the runs, the audit log): the filters and the page kept in
// the address, only the newest answer shown, "Showing a–b of N", the pager, and the table.

import { h, keepingFocus, replaceChildren } from '../dom.js';
import { plural } from '../format.js';
import { errorPanel, loading, pagerControls } from './common.js';

/**
 * filters: the names kept in the address (#/<route>?name=value&page=n), read from query;
 * pagerKey keeps the keyboard focus on the pager's button across a reload.
 * fetchPage(filters, { limit, offset }) -> { items, total }; table(items) -> a node.
 * noun names one item ("run"); what names the list in the loading and error panels.
 * Returns the nodes to place (count, list, pager), the state (filters and page), load() and
 * refilter(values), which sets filters and goes back to the first page.
 */
export function pagedList({
  query,
  filters,
  pageSize,
  route,
  pagerKey,
  noun,
  what,
  fetchPage,
  table,
}) {
  const state = Object.fromEntries(filters.map((name) => [name, query.get(name) ?? '']));
  state.page = Math.max(1, Number(query.get('page')) || 1);
  const count = h('p', { class: 'list-count', role: 'status' });
  const list = h('div', { class: 'table-wrap' }, loading(`Loading ${what}…`));
  const pager = h('nav', { class: 'pager', 'aria-label': `Pages of ${what}` });

  let sequence = 0;
  async function load() {
    const asked = ++sequence;
    const values = Object.fromEntries(filters.map((name) => [name, state[name]]));
    try {
      const page = await fetchPage(values, {
        limit: pageSize,
        offset: (state.page - 1) * pageSize,
      });
      if (asked !== sequence) return;
      const first = (state.page - 1) * pageSize + 1;
      count.textContent = page.total
        ? `Showing ${first}–${first + page.items.length - 1} of ${plural(page.total, noun)}`
        : '';
      keepingFocus(() => {
        replaceChildren(list, table(page.items));
        renderPager(page.total);
      });
    } catch (error) {
      if (asked !== sequence) return;
      count.textContent = '';
      replaceChildren(list, errorPanel(error, load, `${capital(what)} could not be loaded`));
    }
  }

  function renderPager(total) {
    const pages = Math.max(1, Math.ceil(total / pageSize));
    const go = (page) => {
      state.page = page;
      remember();
      load();
    };
    replaceChildren(
      pager,
      pages === 1 ? null : pagerControls({ page: state.page, pages, key: pagerKey, go }),
    );
  }

  function remember() {
    const params = new URLSearchParams();
    for (const name of filters) if (state[name]) params.set(name, state[name]);
    if (state.page > 1) params.set('page', String(state.page));
    const text = params.toString();
    history.replaceState(null, '', `#/${route}${text ? `?${text}` : ''}`);
  }

  function refilter(values) {
    Object.assign(state, values);
    state.page = 1;
    remember();
    load();
  }

  return { count, list, pager, state, load, refilter };
}

/** A table of a list: its hidden caption, the column heads, and rows (or an empty note). */
export function listTable({ items, empty, className, caption, columns, row }) {
  if (!items.length) return h('p', { class: 'empty', text: empty });
  return h(
    'table',
    { class: `table ${className}` },
    h('caption', { class: 'visually-hidden', text: caption }),
    h('thead', {}, h('tr', {}, columns.map((name) => h('th', { scope: 'col', text: name })))),
    h('tbody', {}, items.map(row)),
  );
}

function capital(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
