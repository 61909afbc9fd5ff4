// Runs across tasks (#/executions), newest first: filters by status, trigger, device and task
// (kept in the address), twenty a page, ad-hoc runs by their name and "ad hoc".

import { api } from '../api.js';
import { debounce, h, keepingFocus, replaceChildren } from '../dom.js';
import { plural } from '../format.js';
import { errorPanel, instant, loading, pagerControls, statusBadge, typeBadge } from './common.js';
import { runCounts, TRIGGER_WORDS } from './run.js';

const PAGE_SIZE = 20;
const FILTERS = ['status', 'trigger', 'device_id', 'task_id'];
const STATUSES = ['running', 'success', 'failed', 'canceled'];

export function executionsView(container, { live, query }) {
  const state = Object.fromEntries(FILTERS.map((name) => [name, query.get(name) ?? '']));
  state.page = Math.max(1, Number(query.get('page')) || 1);

  const select = (name, label, options) => {
    const node = h(
      'select',
      { class: 'input', id: `runs-${name}` },
      h('option', { value: '', text: label }),
      options.map(([value, text]) => h('option', { value, text })),
    );
    node.value = state[name];
    return node;
  };
  const status = select(
    'status',
    'Any status',
    STATUSES.map((value) => [value, value]),
  );
  const trigger = select('trigger', 'Any trigger', Object.entries(TRIGGER_WORDS));
  const device = select('device_id', 'Any device', []);
  const task = select('task_id', 'Any task', []);
  const count = h('p', { class: 'list-count', role: 'status' });
  const list = h('div', { class: 'table-wrap' }, loading('Loading the runs…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of runs' });
  const labelled = (node, text) =>
    h('div', { class: 'field' }, h('label', { for: node.id, text }), node);
  replaceChildren(
    container,
    h('div', { class: 'page-head' }, h('h1', { text: 'Executions' })),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (event) => event.preventDefault() },
      labelled(status, 'Status'),
      labelled(trigger, 'Trigger'),
      labelled(device, 'Device'),
      labelled(task, 'Task'),
    ),
    count,
    list,
    pager,
  );

  // The choices of the device and task filters (a value from the address stays chosen).
  const fill = (node, name, items) => {
    const chosen = state[name];
    node.append(
      ...items
        .filter(([value]) => value !== chosen)
        .map(([value, text]) => h('option', { value, text })),
    );
    if (chosen && !items.some(([value]) => value === chosen)) {
      node.append(h('option', { value: chosen, text: chosen }));
    }
    node.value = chosen;
  };
  api
    .devices()
    .then(({ items }) =>
      fill(
        device,
        'device_id',
        items.map((item) => [item.id, item.id]),
      ),
    )
    .catch(() => fill(device, 'device_id', []));
  api
    .listTasks({ limit: 100 })
    .then(({ items }) =>
      fill(
        task,
        'task_id',
        items.map((item) => [item.id, item.name]),
      ),
    )
    .catch(() => fill(task, 'task_id', []));

  let sequence = 0;
  async function load() {
    const asked = ++sequence;
    const filters = Object.fromEntries(FILTERS.map((name) => [name, state[name]]));
    try {
      const page = await api.listExecutions({
        ...filters,
        limit: PAGE_SIZE,
        offset: (state.page - 1) * PAGE_SIZE,
      });
      if (asked !== sequence) return;
      const first = (state.page - 1) * PAGE_SIZE + 1;
      count.textContent = page.total
        ? `Showing ${first}–${first + page.items.length - 1} of ${plural(page.total, 'run')}`
        : '';
      keepingFocus(() => {
        replaceChildren(list, runsTable(page.items));
        renderPager(page.total);
      });
    } catch (error) {
      if (asked !== sequence) return;
      count.textContent = '';
      replaceChildren(list, errorPanel(error, load, 'The runs could not be loaded'));
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
        : pagerControls({ page: state.page, pages, key: 'runs', go }),
    );
  }

  function remember() {
    const params = new URLSearchParams();
    for (const name of FILTERS) if (state[name]) params.set(name, state[name]);
    if (state.page > 1) params.set('page', String(state.page));
    const text = params.toString();
    history.replaceState(null, '', `#/executions${text ? `?${text}` : ''}`);
  }

  function changed() {
    state.status = status.value;
    state.trigger = trigger.value;
    state.device_id = device.value;
    state.task_id = task.value;
    state.page = 1;
    remember();
    load();
  }
  for (const node of [status, trigger, device, task]) node.addEventListener('change', changed);

  const reload = debounce(load, 1000);
  const stopLive = live.on((envelope) => {
    if (envelope.type.startsWith('Execution')) reload();
  });
  const stopResync = live.onResync(load);
  load();
  return {
    destroy() {
      reload.cancel();
      stopLive();
      stopResync();
    },
  };
}

function runsTable(items) {
  if (!items.length) return h('p', { class: 'empty', text: 'No run matches these filters.' });
  const rows = items.map((run) =>
    h(
      'tr',
      { class: 'run-row', dataset: { executionId: run.id, status: run.status } },
      h('td', {}, statusBadge(run.status)),
      h(
        'td',
        { class: 'run-name' },
        h('a', { href: `#/executions/${run.id}`, text: run.name ?? run.id }),
        run.trigger === 'adhoc' ? h('span', { class: 'muted', text: ' · ad hoc' }) : null,
      ),
      h('td', {}, typeBadge(run.task_type)),
      h('td', { class: 'run-trigger', text: TRIGGER_WORDS[run.trigger] ?? run.trigger }),
      h('td', {}, instant(run.started_at ?? run.scheduled_for)),
      h('td', { class: 'run-counts', text: runCounts(run) }),
    ),
  );
  return h(
    'table',
    { class: 'table runs-table' },
    h('caption', { class: 'visually-hidden', text: 'Runs, newest first' }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Status', 'Run', 'Kind', 'Trigger', 'Started', 'Devices'].map((name) =>
          h('th', { scope: 'col', text: name }),
        ),
      ),
    ),
    h('tbody', {}, rows),
  );
}
