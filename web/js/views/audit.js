// The audit log (admin): who did what, when, to which task; every event of the log, newest
// first, filtered by user, event type, task and time.

import { request } from '../api.js';
import { h, keepingFocus, replaceChildren } from '../dom.js';
import { browserTimeZone, plural } from '../format.js';
import { errorPanel, instant, loading, pagerControls } from './common.js';
import { adminOnly } from './webhooks.js';

const PAGE_SIZE = 50;
const FILTERS = ['user', 'type', 'task_id', 'since', 'until'];

export function auditView(container, { me, query }) {
  if (me.role !== 'admin') {
    replaceChildren(container, adminOnly('The audit log and its filters'));
    return { destroy() {} };
  }
  const state = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) ?? '']));
  state.page = Math.max(1, Number(query.get('page')) || 1);

  const input = (name, attrs) =>
    h('input', { class: 'input', id: `audit-${name}`, value: state[name], ...attrs });
  const user = input('user', { type: 'search', placeholder: 'admin', autocomplete: 'off' });
  const task = input('task_id', { type: 'search', placeholder: 'a task id', autocomplete: 'off' });
  const since = input('since', { type: 'datetime-local', value: localInput(state.since) });
  const until = input('until', { type: 'datetime-local', value: localInput(state.until) });
  const type = h(
    'select',
    { class: 'input', id: 'audit-type' },
    h('option', { value: '', text: 'All events' }),
  );
  const count = h('p', { class: 'list-count', role: 'status' });
  const list = h('div', { class: 'table-wrap' }, loading('Loading the audit log…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of the audit log' });
  const labelled = (node, text, grow = false) =>
    h('div', { class: `field${grow ? ' grow' : ''}` }, h('label', { for: node.id, text }), node);
  replaceChildren(
    container,
    h('div', { class: 'page-head' }, h('h1', { text: 'Audit log' })),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (event) => event.preventDefault() },
      labelled(user, 'User'),
      labelled(type, 'Event'),
      labelled(task, 'Task', true),
      // datetime-local inputs read the browser's wall clock.
      labelled(since, `From (${browserTimeZone()})`),
      labelled(until, `To (${browserTimeZone()})`),
    ),
    count,
    list,
    pager,
  );

  request('GET', '/api/event-types')
    .then(({ items }) => {
      type.append(...items.map((name) => h('option', { value: name, text: name })));
      type.value = state.type;
    })
    .catch(() => {});

  let sequence = 0;
  async function load() {
    const asked = ++sequence;
    const filters = Object.fromEntries(FILTERS.map((name) => [name, state[name]]));
    try {
      const page = await request('GET', '/api/audit', {
        query: { ...filters, limit: PAGE_SIZE, offset: (state.page - 1) * PAGE_SIZE },
      });
      if (asked !== sequence) return;
      const first = (state.page - 1) * PAGE_SIZE + 1;
      count.textContent = page.total
        ? `Showing ${first}–${first + page.items.length - 1} of ${plural(page.total, 'event')}`
        : '';
      keepingFocus(() => {
        replaceChildren(list, auditTable(page.items));
        renderPager(page.total);
      });
    } catch (error) {
      if (asked !== sequence) return;
      count.textContent = '';
      replaceChildren(list, errorPanel(error, load, 'The audit log could not be loaded'));
    }
  }

  function renderPager(total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    const go = (page) => {
      state.page = page;
      remember();
      load();
    };
    replaceChildren(
      pager,
      pages === 1
        ? null
        : pagerControls({ page: state.page, pages, key: 'audit', go }),
    );
  }

  function remember() {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (state[name]) params.set(name, state[name]);
    if (state.page > 1) params.set('page', String(state.page));
    const text = params.toString();
    history.replaceState(null, '', `#/audit${text ? `?${text}` : ''}`);
  }

  function changed() {
    state.user = user.value.trim();
    state.type = type.value;
    state.task_id = task.value.trim();
    state.since = isoOf(since.value);
    state.until = isoOf(until.value);
    state.page = 1;
    remember();
    load();
  }
  for (const node of [user, task]) node.addEventListener('change', changed);
  for (const node of [type, since, until]) node.addEventListener('change', changed);
  load();
  return { destroy() {} };
}

function auditTable(items) {
  if (!items.length) return h('p', { class: 'empty', text: 'No event matches these filters.' });
  return h(
    'table',
    { class: 'table audit-table' },
    h('caption', { class: 'visually-hidden', text: 'Events, newest first' }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['When', 'Who', 'What', 'Task', 'Position'].map((name) =>
          h('th', { scope: 'col', text: name }),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      items.map((item) =>
        h(
          'tr',
          { dataset: { position: item.position } },
          h('td', {}, instant(item.recorded_at, '—', { seconds: true })),
          h('td', {}, item.user ?? h('span', { class: 'muted', text: 'system' })),
          h('th', { scope: 'row', text: item.type }),
          h(
            'td',
            {},
            item.task_id
              ? h('a', { href: `#/tasks/${item.task_id}`, text: item.task_id })
              : h('span', { class: 'muted', text: item.stream_id }),
          ),
          h('td', { class: 'muted', text: String(item.position) }),
        ),
      ),
    ),
  );
}

/** A datetime-local input's value (the browser's zone) as an ISO instant, or ''. */
function isoOf(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

/** An ISO instant as a datetime-local value in the browser's zone. */
function localInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}
