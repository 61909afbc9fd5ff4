// Runs across tasks (#/executions), newest first: filters by status, trigger, device and task
// (kept in the address), twenty a page, ad-hoc runs by their name and "ad hoc".

import { api } from '../api.js';
import { debounce, h, replaceChildren } from '../dom.js';
import { instant, statusBadge, typeBadge } from './common.js';
import { listTable, pagedList } from './paged-list.js';
import { runCounts, TRIGGER_WORDS } from './run.js';

const PAGE_SIZE = 20;
const FILTERS = ['status', 'trigger', 'device_id', 'task_id'];
const STATUSES = ['running', 'success', 'failed', 'canceled'];

export function executionsView(container, { live, query }) {
  const runs = pagedList({
    query,
    filters: FILTERS,
    pageSize: PAGE_SIZE,
    route: 'executions',
    pagerKey: 'runs',
    noun: 'run',
    what: 'the runs',
    fetchPage: (filters, page) => api.listExecutions({ ...filters, ...page }),
    table: runsTable,
  });
  const { state, load } = runs;

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
    runs.count,
    runs.list,
    runs.pager,
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

  function changed() {
    runs.refilter({
      status: status.value,
      trigger: trigger.value,
      device_id: device.value,
      task_id: task.value,
    });
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
  return listTable({
    items,
    empty: 'No run matches these filters.',
    className: 'runs-table',
    caption: 'Runs, newest first',
    columns: ['Status', 'Run', 'Kind', 'Trigger', 'Started', 'Devices'],
    row: (run) =>
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
  });
}
