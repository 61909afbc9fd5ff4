// The scheduled tasks manager: stats and charts, search and filters, task cards with their
// actions, pagination; refreshed live.

import { api } from '../api.js';
import { executionsChart } from '../chart.js';
import { debounce, h, keepingFocus, replaceChildren } from '../dom.js';
import { fleet } from '../fleet.js';
import { displayZone, formatInstant, plural, relativeTime, STATUSES } from '../format.js';
import { KINDS } from '../kinds/index.js';
import { taskIdOf } from '../live.js';
import { describeSchedule } from '../schedule-words.js';
import { errorPanel, loading, pagerControls, statusBadge, taskActions, taskInstant, typeBadge } from './common.js';

export const PAGE_SIZE = 10;

export function tasksView(container, { me, live, query }) {
  const canWrite = me.role !== 'viewer';
  const state = {
    q: query.get('q') ?? '',
    status: query.get('status') ?? '',
    type: query.get('type') ?? '',
    page: Math.max(1, Number(query.get('page')) || 1),
  };

  const statsBox = h(
    'section',
    { class: 'stats', 'aria-label': 'Statistics' },
    loading('Loading statistics…'),
  );
  // Open where there is room; on a phone folded, so that the list is on the first screen.
  const overview = h(
    'details',
    { class: 'overview', open: !window.matchMedia('(max-width: 600px)').matches },
    h('summary', { class: 'overview-summary', text: 'Statistics and charts' }),
    statsBox,
  );
  const search = h('input', {
    type: 'search',
    class: 'input',
    id: 'task-search',
    placeholder: 'Name or description',
    value: state.q,
  });
  const status = selectOf(
    'task-status',
    'All statuses',
    STATUSES.map((value) => [value, value]),
    state.status,
  );
  const type = selectOf(
    'task-type',
    'All types',
    KINDS.map((kind) => [kind.type, kind.label]),
    state.type,
  );
  const clear = h('button', { type: 'button', class: 'button ghost', text: 'Clear filters' });
  const count = h('p', { class: 'list-count', role: 'status' });
  const list = h('div', { class: 'task-list' }, loading('Loading tasks…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of tasks' });

  replaceChildren(
    container,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { text: 'Scheduled tasks' }),
      h('a', { class: 'button primary', href: '#/dashboard', text: 'New task' }),
    ),
    overview,
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (event) => event.preventDefault() },
      h('div', { class: 'field grow' }, h('label', { for: search.id, text: 'Search' }), search),
      h('div', { class: 'field' }, h('label', { for: status.id, text: 'Status' }), status),
      h('div', { class: 'field' }, h('label', { for: type.id, text: 'Type' }), type),
      h('div', { class: 'field end' }, clear),
    ),
    count,
    list,
    pager,
  );

  let sequence = 0; // only the answer to the latest request is shown
  let shown = null; // the page on screen, re-rendered when the registry changes
  async function loadList() {
    const asked = ++sequence;
    try {
      const page = await api.listTasks({
        q: state.q,
        status: state.status,
        task_type: state.type,
        limit: PAGE_SIZE,
        offset: (state.page - 1) * PAGE_SIZE,
      });
      if (asked !== sequence) return;
      if (page.items.length === 0 && page.total > 0 && state.page > 1) {
        state.page = Math.ceil(page.total / PAGE_SIZE);
        remember();
        loadList();
        return;
      }
      renderList(page);
    } catch (error) {
      if (asked !== sequence) return;
      shown = null;
      count.textContent = '';
      replaceChildren(list, errorPanel(error, loadList, 'The tasks could not be loaded'));
      replaceChildren(pager);
    }
  }

  function renderList({ items, total }) {
    shown = { items, total };
    const first = (state.page - 1) * PAGE_SIZE + 1;
    count.textContent = total
      ? `Showing ${first}–${first + items.length - 1} of ${plural(total, 'task')}`
      : '';
    keepingFocus(() => {
      replaceChildren(
        list,
        items.length ? items.map((task) => taskCard(task, { canWrite, refresh })) : emptyState(),
      );
      renderPager(total);
    });
  }

  function emptyState() {
    const filtered = state.q || state.status || state.type;
    return h(
      'div',
      { class: 'empty' },
      h('p', { text: filtered ? 'No task matches these filters.' : 'No scheduled task yet.' }),
      filtered ? null : h('a', { href: '#/dashboard', text: 'Schedule one from the dashboard' }),
    );
  }

  function renderPager(total) {
    const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
    if (pages === 1) {
      replaceChildren(pager);
      return;
    }
    const go = (page) => {
      state.page = page;
      remember();
      loadList();
    };
    replaceChildren(
      pager,
      pagerControls({ page: state.page, pages, key: 'pager', go, back: '← Previous', forward: 'Next →' }),
    );
  }

  async function loadStats() {
    try {
      renderStats(statsBox, await api.stats());
    } catch (error) {
      replaceChildren(statsBox, errorPanel(error, loadStats, 'The statistics could not be loaded'));
    }
  }

  /** Filters live in the address (#/tasks?status=paused), without a reload of the screen. */
  function remember() {
    const params = new URLSearchParams();
    if (state.q) params.set('q', state.q);
    if (state.status) params.set('status', state.status);
    if (state.type) params.set('type', state.type);
    if (state.page > 1) params.set('page', String(state.page));
    const text = params.toString();
    history.replaceState(null, '', `#/tasks${text ? `?${text}` : ''}`);
  }

  function filtersChanged() {
    state.q = search.value.trim();
    state.status = status.value;
    state.type = type.value;
    state.page = 1;
    remember();
    loadList();
  }

  const refresh = () => {
    loadList();
    loadStats();
  };
  const liveRefresh = debounce(refresh, 300);
  search.addEventListener('input', debounce(filtersChanged, 250));
  status.addEventListener('change', filtersChanged);
  type.addEventListener('change', filtersChanged);
  clear.addEventListener('click', () => {
    search.value = '';
    status.value = '';
    type.value = '';
    filtersChanged();
  });

  const stopLive = live.on((envelope) => {
    if (taskIdOf(envelope)) liveRefresh();
  });
  const stopResync = live.onResync(refresh);
  // Group names on the cards come from the registry (and the relative times age meanwhile).
  const unwatch = fleet.watch(() => shown && renderList(shown));
  refresh();

  return {
    destroy() {
      stopLive();
      stopResync();
      unwatch();
      liveRefresh.cancel();
    },
  };
}

function selectOf(id, allLabel, options, selected) {
  return h(
    'select',
    { class: 'input', id },
    h('option', { value: '', text: allLabel }),
    options.map(([value, label]) =>
      h('option', { value, text: label, selected: value === selected }),
    ),
  );
}

export function targetsWords(task) {
  const parts = [];
  if (task.device_ids.length) parts.push(plural(task.device_ids.length, 'device'));
  for (const id of task.group_ids) {
    const group = fleet.group(id);
    const gone = fleet.loaded && !group;
    parts.push(group ? `group ${group.name}` : `group #${id}${gone ? ' (deleted)' : ''}`);
  }
  return parts.join(', ') || 'no targets';
}

function taskCard(task, { canWrite, refresh }) {
  const titleId = `task-${task.id}-title`;
  const next = task.next_run_time
    ? [
        taskInstant(task.next_run_time, task),
        h('span', { class: 'muted', text: ` (${relativeTime(task.next_run_time)})` }),
      ]
    : [h('span', { class: 'muted', text: task.status === 'paused' ? 'paused' : 'none' })];
  const last = task.last_run_time
    ? [
        taskInstant(task.last_run_time, task),
        ' ',
        task.last_execution_status ? statusBadge(task.last_execution_status) : null,
      ]
    : [h('span', { class: 'muted', text: 'never' })];
  return h(
    'article',
    {
      class: 'task-card',
      'aria-labelledby': titleId,
      dataset: { taskId: task.id, status: task.status },
    },
    h(
      'header',
      { class: 'task-card-head' },
      h(
        'h2',
        { class: 'task-title', id: titleId },
        h('a', { href: `#/tasks/${task.id}`, text: task.name }),
      ),
      h('div', { class: 'badges' }, statusBadge(task.status), typeBadge(task.task_type)),
    ),
    task.description ? h('p', { class: 'task-description', text: task.description }) : null,
    h(
      'dl',
      { class: 'facts' },
      fact(
        'Schedule',
        h('span', {
          class: 'schedule-words',
          text: describeSchedule(task.recurrence_type, task.recurrence_config),
        }),
      ),
      fact('Next run', h('span', { class: 'next-run' }, next)),
      fact('Last run', h('span', { class: 'last-run' }, last)),
      fact('Runs', String(task.execution_count)),
      fact('Targets', targetsWords(task)),
    ),
    taskActions(task, { canWrite, onChanged: refresh, onExecuted: refresh }),
  );
}

export function fact(term, ...description) {
  return h('div', { class: 'fact' }, h('dt', { text: term }), h('dd', {}, ...description));
}

function renderStats(box, stats) {
  // Over the runs that succeeded or failed: a canceled run is neither.
  const decided = stats.executions_success + stats.executions_failed;
  const rate = decided ? `${Math.round(stats.success_rate * 1000) / 10}%` : '—';
  const canceled = stats.executions_canceled ? ` · ${stats.executions_canceled} canceled` : '';
  const hourTick = (bucket, index) => (index % 6 === 0 ? localHour(bucket.start) : null);
  const dayTick = (bucket) =>
    new Date(bucket.start).toLocaleDateString(undefined, { weekday: 'short', timeZone: 'UTC' });
  replaceChildren(
    box,
    h(
      'div',
      { class: 'stat-cards' },
      statCard(
        'Tasks',
        String(stats.total_tasks),
        chips(STATUSES.map((name) => [name, stats.by_status[name] ?? 0])),
      ),
      statCard(
        'By type',
        null,
        chips(KINDS.map((kind) => [kind.label, stats.by_type[kind.type] ?? 0])),
      ),
      statCard(
        'Success rate',
        rate,
        h('p', {
          class: 'muted',
          text: `${stats.executions_success} succeeded · ${stats.executions_failed} failed${canceled} of ${plural(stats.executions_total, 'run')}`,
        }),
      ),
    ),
    h(
      'div',
      { class: 'charts' },
      executionsChart({
        title: `Runs per hour, last 24 h (${displayZone()})`,
        buckets: stats.executions_by_hour,
        label: (bucket) => formatInstant(bucket.start),
        tick: hourTick,
      }),
      executionsChart({
        title: 'Runs per day, last 7 days',
        buckets: stats.executions_by_day,
        label: (bucket) =>
          `${new Date(bucket.start).toLocaleDateString(undefined, {
            dateStyle: 'medium',
            timeZone: 'UTC',
          })} (UTC day)`,
        tick: dayTick,
      }),
    ),
  );
}

function localHour(iso) {
  return new Date(iso).toLocaleTimeString(undefined, {
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
    timeZone: displayZone(),
  });
}

function statCard(title, big, detail) {
  return h(
    'div',
    { class: 'stat-card' },
    h('h2', { class: 'stat-title', text: title }),
    big === null ? null : h('p', { class: 'stat-big', text: big }),
    detail,
  );
}

function chips(pairs) {
  return h(
    'ul',
    { class: 'chips' },
    pairs.map(([name, value]) =>
      h(
        'li',
        { class: 'chip', dataset: { name } },
        h('span', { text: name }),
        h('strong', { text: String(value) }),
      ),
    ),
  );
}
