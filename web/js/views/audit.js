// The audit log (admin): who did what, when, to which task; every event of the log, newest
// first, filtered by user, event type, task and time.

import { request } from '../api.js';
import { h, replaceChildren } from '../dom.js';
import { browserTimeZone } from '../format.js';
import { instant } from './common.js';
import { listTable, pagedList } from './paged-list.js';
import { adminOnly } from './webhooks.js';

const PAGE_SIZE = 50;
const FILTERS = ['user', 'type', 'task_id', 'since', 'until'];

export function auditView(container, { me, query }) {
  if (me.role !== 'admin') {
    replaceChildren(container, adminOnly('The audit log and its filters'));
    return { destroy() {} };
  }
  const events = pagedList({
    query,
    filters: FILTERS,
    pageSize: PAGE_SIZE,
    route: 'audit',
    pagerKey: 'audit',
    noun: 'event',
    what: 'the audit log',
    fetchPage: (filters, page) => request('GET', '/api/audit', { query: { ...filters, ...page } }),
    table: auditTable,
  });
  const { state, load } = events;

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
    events.count,
    events.list,
    events.pager,
  );

  request('GET', '/api/event-types')
    .then(({ items }) => {
      type.append(...items.map((name) => h('option', { value: name, text: name })));
      type.value = state.type;
    })
    .catch(() => {});

  function changed() {
    events.refilter({
      user: user.value.trim(),
      type: type.value,
      task_id: task.value.trim(),
      since: isoOf(since.value),
      until: isoOf(until.value),
    });
  }
  for (const node of [user, task]) node.addEventListener('change', changed);
  for (const node of [type, since, until]) node.addEventListener('change', changed);
  load();
  return { destroy() {} };
}

function auditTable(items) {
  return listTable({
    items,
    empty: 'No event matches these filters.',
    className: 'audit-table',
    caption: 'Events, newest first',
    columns: ['When', 'Who', 'What', 'Task', 'Position'],
    row: (item) =>
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
  });
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
