// One task: its facts and actions, its runs (newest first, each expandable to per-device
// results with stdout and stderr), and its audit history. Runs fill in live as devices report.

import { api } from '../api.js';
import { debounce, h, keepingFocus, replaceChildren } from '../dom.js';
import { fleet } from '../fleet.js';
import { duration, formatInstant, plural } from '../format.js';
import { afterEdit, changeLines } from '../change-words.js';
import { deliveryWords } from '../delivery-words.js';
import { describePayload } from '../kinds/index.js';
import { taskIdOf } from '../live.js';
import { describeSchedule } from '../schedule-words.js';
import { deviceRow, runActions, runCounts, TRIGGER_WORDS } from './run.js';
import {
  errorPanel,
  instant,
  loading,
  statusBadge,
  taskActions,
  taskInstant,
  typeBadge,
} from './common.js';
import { fact, targetsWords } from './tasks.js';

const RUNS_PAGE = 20;
const EXECUTION_EVENTS = new Set([
  'ExecutionStarted',
  'ExecutionTargetsAdded',
  'DeviceResultRecorded',
  'ExecutionCompleted',
]);
// Events that move a device between pending, waiting and running, or ask for a cancel: the
// task page asks the read tables again for them.
const PROGRESS_EVENTS = new Set([
  'DeviceJobDispatched',
  'DevicesWaiting',
  'ExecutionCancelRequested',
]);

export function taskDetailView(container, { me, live, navigate, params, query }) {
  const taskId = params.id;
  const canWrite = me.role !== 'viewer';
  const expanded = new Set(query.get('run') ? [query.get('run')] : []);
  let following = query.get('follow') === '1';
  let task = null;
  let runs = [];
  let runsTotal = 0;
  let runsLimit = RUNS_PAGE;
  // execution id → device ids, from ExecutionStarted and its ExecutionTargetsAdded
  const targetsOf = new Map();

  const head = h('div', { class: 'detail-head' });
  const facts = h('div', { class: 'detail-facts' });
  const waiting = h('p', { class: 'notice', role: 'status', hidden: true });
  const runList = h('ol', { class: 'runs' });
  const more = h('button', {
    type: 'button',
    class: 'button small',
    text: 'Show older runs',
    hidden: true,
  });
  const runCount = h('span', { class: 'muted' });
  const history = h('div', { class: 'history' }, loading('Loading the history…'));
  const body = h(
    'div',
    { class: 'detail-body' },
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'runs-heading' },
      h('h2', { id: 'runs-heading' }, 'Runs ', runCount),
      waiting,
      runList,
      more,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'history-heading' },
      h('h2', { id: 'history-heading', text: 'Audit history' }),
      history,
    ),
  );

  replaceChildren(
    container,
    h('p', { class: 'back' }, h('a', { href: '#/tasks', text: '← Scheduled tasks' })),
    loading('Loading the task…'),
  );

  async function load() {
    try {
      const [loadedTask, page] = await Promise.all([
        api.getTask(taskId),
        api.executions(taskId, { limit: runsLimit }),
      ]);
      task = loadedTask;
      runs = mergeRuns(page.items);
      runsTotal = page.total;
      replaceChildren(
        container,
        h('p', { class: 'back' }, h('a', { href: '#/tasks', text: '← Scheduled tasks' })),
        head,
        facts,
        body,
      );
      renderTask();
      renderRuns();
      loadHistory();
    } catch (error) {
      const gone = error.status === 404;
      replaceChildren(
        container,
        h('p', { class: 'back' }, h('a', { href: '#/tasks', text: '← Scheduled tasks' })),
        gone
          ? h(
              'div',
              { class: 'panel-error', role: 'alert' },
              h('p', { text: 'This task does not exist, or it was deleted.' }),
            )
          : errorPanel(error, load, 'The task could not be loaded'),
      );
    }
  }

  /** Keeps what live events added that the read tables do not show yet. */
  function mergeRuns(loaded) {
    const byId = new Map(runs.map((run) => [run.id, run]));
    return loaded.map((run) => {
      const seen = byId.get(run.id);
      if (!seen) return run;
      const details = { ...seen.result.execution_details, ...run.result.execution_details };
      const status = run.status === 'running' ? seen.status : run.status;
      return { ...seen, ...run, status, result: { ...run.result, execution_details: details } };
    });
  }

  async function loadHistory() {
    try {
      const { items } = await api.taskEvents(taskId);
      replaceChildren(history, historyTable(items));
    } catch (error) {
      replaceChildren(history, errorPanel(error, loadHistory, 'The history could not be loaded'));
    }
  }

  async function reloadTask() {
    try {
      task = await api.getTask(taskId);
      renderTask();
    } catch (error) {
      if (error.status === 404) {
        task = { ...task, status: 'deleted' };
        renderTask();
      }
    }
    loadHistory();
  }

  function renderTask() {
    const deleted = task.status === 'deleted';
    keepingFocus(() => {
      replaceChildren(
        head,
        h(
          'div',
          { class: 'detail-title' },
          h('h1', { text: task.name }),
          h('div', { class: 'badges' }, statusBadge(task.status), typeBadge(task.task_type)),
        ),
        deleted
          ? null
          : taskActions(task, {
              canWrite,
              keyPrefix: 'detail',
              onChanged: (updated) => (updated ? reloadTask() : navigate('#/tasks')),
              onExecuted: (executionId) => {
                expanded.add(executionId);
                following = true;
                renderRuns();
              },
            }),
      );
    });
    replaceChildren(
      facts,
      task.description ? h('p', { class: 'task-description', text: task.description }) : null,
      h(
        'dl',
        { class: 'facts wide' },
        fact(
          'Schedule',
          h('span', {
            class: 'schedule-words',
            text: describeSchedule(task.recurrence_type, task.recurrence_config),
          }),
        ),
        fact(
          'Next run',
          h(
            'span',
            { class: 'next-run' },
            taskInstant(task.next_run_time, task, task.status === 'paused' ? 'paused' : 'none'),
          ),
        ),
        fact(
          'Last run',
          taskInstant(task.last_run_time, task, 'never'),
          ' ',
          task.last_execution_status ? statusBadge(task.last_execution_status) : null,
        ),
        fact(
          'Targets',
          targetsWords(task),
          task.device_ids.length
            ? h('span', { class: 'muted', text: ` (${task.device_ids.join(', ')})` })
            : null,
        ),
        fact('What it runs', payloadWords(task)),
        fact(
          'Delivery',
          h('span', { class: 'delivery-words', text: deliveryWords(task.delivery) }),
        ),
        fact('Timing', h('span', { class: 'timing-words', text: timingWords(task) })),
        fact('Owner', task.user_id),
        fact('Created', instant(task.created_at)),
      ),
    );
  }

  // A run that ended before the live feed connected (or while it was away) sends no event
  // this page sees: while any run shows running, ask again every few seconds too.
  let pollTimer = null;
  function pollWhileRunning() {
    clearTimeout(pollTimer);
    if (runs.some((run) => run.status === 'running')) pollTimer = setTimeout(refreshRuns, 3000);
  }

  function renderRuns() {
    pollWhileRunning();
    runCount.textContent = runsTotal ? `(${runsTotal})` : '';
    waiting.hidden = !(following && runs.length === 0);
    if (!waiting.hidden) {
      waiting.textContent = task?.next_run_time
        ? `Waiting for the run to start (due ${formatInstant(task.next_run_time)})…`
        : 'Waiting for the run to start…';
    }
    keepingFocus(() => {
      replaceChildren(
        runList,
        runs.length
          ? runs.map(runItem)
          : [h('li', { class: 'muted', hidden: following, text: 'No run yet.' })],
      );
    });
    more.hidden = runs.length >= runsTotal;
  }

  function runItem(run) {
    const counts = runCounts(run);
    const details = h(
      'details',
      { open: expanded.has(run.id) },
      h(
        'summary',
        { dataset: { focusKey: `run-${run.id}` } },
        statusBadge(run.status),
        h(
          'span',
          { class: 'run-when' },
          `${TRIGGER_WORDS[run.trigger] ?? run.trigger} · `,
          instant(run.scheduled_for),
        ),
        h('span', { class: 'run-counts muted', text: counts }),
        run.completed_at
          ? h('span', {
              class: 'muted',
              text: duration(run.started_at ?? run.scheduled_for, run.completed_at),
            })
          : null,
      ),
      h(
        'div',
        { class: 'run-body' },
        h(
          'p',
          { class: 'run-links' },
          h('a', { class: 'open-run', href: `#/executions/${run.id}`, text: 'Open this run' }),
        ),
        runActions(run, { canWrite, navigate, onChanged: () => refreshRuns() }),
        run.error_message ? h('p', { class: 'run-error', text: run.error_message }) : null,
        deviceResults(run),
      ),
    );
    details.addEventListener('toggle', () => {
      if (details.open) expanded.add(run.id);
      else expanded.delete(run.id);
    });
    return h('li', { class: 'run', dataset: { executionId: run.id, status: run.status } }, details);
  }

  function deviceResults(run) {
    const details = run.result.execution_details;
    const pending = (targetsOf.get(run.id) ?? []).filter((id) => !(id in details));
    const ids = [...Object.keys(details).sort(), ...pending];
    if (ids.length === 0) {
      return h('p', {
        class: 'muted',
        text: run.status === 'running' ? 'Waiting for the devices…' : 'No device results.',
      });
    }
    return h(
      'div',
      { class: 'device-results' },
      ids.map((id) => deviceResult(id, details[id], run.id)),
    );
  }

  // --- live ---------------------------------------------------------------------------------

  const refreshTask = debounce(reloadTask, 300);
  const refreshRuns = debounce(async () => {
    try {
      const page = await api.executions(taskId, { limit: runsLimit });
      runs = mergeRuns(page.items);
      runsTotal = page.total;
      renderRuns();
    } catch {
      // the live view stays; the next event or a resync tries again
    }
  }, 1000);

  function upsertRun(executionId, make) {
    let run = runs.find((item) => item.id === executionId);
    if (!run) {
      run = make();
      runs = [run, ...runs];
      runsTotal += 1;
    }
    return run;
  }

  function onEvent(envelope) {
    if (!task || taskIdOf(envelope) !== taskId) return;
    const data = envelope.data;
    if (PROGRESS_EVENTS.has(envelope.type)) {
      refreshRuns();
      return;
    }
    if (!EXECUTION_EVENTS.has(envelope.type)) {
      refreshTask();
      return;
    }
    const skeleton = () => ({
      id: data.execution_id,
      task_id: taskId,
      trigger: data.trigger ?? 'schedule',
      scheduled_for: data.scheduled_for ?? data.recorded_at,
      started_at: data.started_at ?? null,
      completed_at: null,
      status: 'running',
      error_message: null,
      result: {
        devices_targeted: data.device_ids?.length ?? 0,
        devices_succeeded: 0,
        devices_failed: 0,
        execution_details: {},
      },
    });
    const run = upsertRun(data.execution_id, skeleton);
    if (envelope.type === 'ExecutionStarted') {
      targetsOf.set(run.id, [...data.device_ids]);
      // A run of many devices lists the first of them; ExecutionTargetsAdded the rest.
      run.result.devices_targeted = data.devices_targeted || data.device_ids.length;
      if (following || !expanded.size) expanded.add(run.id);
    } else if (envelope.type === 'ExecutionTargetsAdded') {
      if (!targetsOf.has(run.id)) targetsOf.set(run.id, []);
      targetsOf.get(run.id).push(...data.device_ids);
    } else if (envelope.type === 'DeviceResultRecorded') {
      const { status, exit_code: exitCode, stdout, stderr, error } = data;
      const counted = data.device_id in run.result.execution_details;
      run.result.execution_details[data.device_id] = {
        status,
        exit_code: exitCode,
        stdout,
        stderr,
        error,
      };
      if (!counted && status === 'success') run.result.devices_succeeded += 1;
      else if (!counted) run.result.devices_failed += 1;
    } else {
      Object.assign(run, {
        status: data.status,
        completed_at: data.completed_at,
        error_message: data.error_message,
      });
      Object.assign(run.result, {
        devices_targeted: data.devices_targeted,
        devices_succeeded: data.devices_succeeded,
        devices_failed: data.devices_failed,
      });
      refreshTask();
      refreshRuns();
    }
    renderRuns();
  }

  more.addEventListener('click', () => {
    runsLimit += RUNS_PAGE;
    refreshRuns();
  });
  const stopLive = live.on(onEvent);
  const stopResync = live.onResync(load);
  const unwatch = fleet.watch(() => task && renderTask());
  load();

  return {
    destroy() {
      stopLive();
      stopResync();
      unwatch();
      refreshTask.cancel();
      refreshRuns.cancel();
      clearTimeout(pollTimer);
    },
  };
}

function deviceResult(deviceId, result, runId) {
  return deviceRow(deviceId, result ?? {}, runId);
}

/** "skips a run while one is still going · no jitter · starts up to 3600 s late". */
function timingWords(task) {
  const overlap =
    task.overlap_policy === 'allow'
      ? 'runs beside one still going'
      : 'skips a run while one is still going';
  const jitter = task.jitter_seconds ? `up to ${task.jitter_seconds} s of jitter` : 'no jitter';
  return `${overlap} · ${jitter} · starts up to ${task.misfire_grace_seconds} s late`;
}

function payloadWords(task) {
  return describePayload(task.task_type, task.task_payload);
}

// --- audit history --------------------------------------------------------------------------

const SKIP_KEYS = new Set(['type', 'task_id', 'updated_at', 'next_run_time', 'rearmed']);

function eventWords(envelope) {
  const data = envelope.data;
  const at = (iso) => formatInstant(iso);
  switch (envelope.type) {
    case 'TaskCreated':
      return `Created: ${describeSchedule(data.recurrence_type, data.recurrence_config)}`;
    case 'TaskUpdated': {
      const next = data.next_run_time ? `; next run ${at(data.next_run_time)}` : '';
      if (envelope.changes)
        return `${envelope.changes.length ? 'Changed' : 'Saved, nothing changed'}${next}`;
      const changed = Object.keys(data).filter((key) => !SKIP_KEYS.has(key));
      return `Changed ${changed.join(', ') || 'nothing'}${next}`;
    }
    case 'TaskPaused':
      return 'Paused';
    case 'TaskResumed':
      return `Resumed; next run ${at(data.next_run_time)}`;
    case 'TaskDeleted':
      return 'Deleted';
    case 'TaskDue':
      return data.trigger === 'manual' ? 'Run now' : `Run due for ${at(data.scheduled_for)}`;
    case 'RunMissed':
      return `Missed the run of ${at(data.scheduled_for)}: ${data.reason}`;
    case 'RunSkipped':
      return `Skipped the run of ${at(data.scheduled_for)}: ${data.reason}`;
    case 'ExecutionStarted':
      return `Run started on ${plural(data.devices_targeted || data.device_ids.length, 'device')}`;
    case 'ExecutionTargetsAdded':
      return `Targets listed: ${(data.device_ids ?? []).join(', ')}`;
    case 'DeviceResultRecorded': {
      const code =
        data.exit_code === null || data.exit_code === undefined
          ? ''
          : `, exit code ${data.exit_code}`;
      return `${data.device_id}: ${data.status}${code}${data.error ? ` (${data.error})` : ''}`;
    }
    case 'DeviceJobDispatched':
      return `Job sent to ${(data.device_ids ?? []).join(', ')}`;
    case 'DevicesWaiting':
      return `Waiting for offline ${(data.device_ids ?? []).join(', ')}`;
    case 'ExecutionCancelRequested':
      return `Cancel asked${data.reason ? `: ${data.reason}` : ''}`;
    case 'ExecutionCompleted':
      return `Run ${{ success: 'succeeded', canceled: 'canceled' }[data.status] ?? 'failed'}: ${data.devices_succeeded} of ${plural(data.devices_targeted, 'device')}${data.error_message ? ` (${data.error_message})` : ''}`;
    default:
      return envelope.type;
  }
}

function who(metadata = {}) {
  if (metadata.user && metadata.role) return `${metadata.user} (${metadata.role})`;
  if (metadata.service) return `${metadata.user ?? 'system'} (${metadata.service})`;
  return metadata.user ?? 'system';
}

/** Each edit's changes in words, old → new, from the task as it was before the edit. */
function editsInWords(items) {
  const lines = new Map();
  let task = null;
  const groupName = (id) => `group ${fleet.group(id)?.name ?? `#${id}`}`;
  for (const envelope of items) {
    if (envelope.type === 'TaskCreated') task = envelope.data;
    if (envelope.type !== 'TaskUpdated' || !envelope.changes || !task) continue;
    lines.set(envelope.id, changeLines(envelope.changes, task, { groupName }));
    task = afterEdit(task, envelope.changes);
  }
  return lines;
}

function changeList(lines) {
  return h(
    'ul',
    { class: 'changes' },
    lines.map((line) =>
      h(
        'li',
        { dataset: { field: line.field } },
        h('span', { class: 'change-label', text: `${line.label}: ` }),
        h('span', { class: 'change-old', text: line.old }),
        h('span', { class: 'change-arrow', 'aria-label': 'changed to', text: ' → ' }),
        h('span', { class: 'change-new', text: line.new }),
      ),
    ),
  );
}

function historyTable(items) {
  if (items.length === 0) return h('p', { class: 'muted', text: 'No history.' });
  const edits = editsInWords(items);
  const rows = [...items]
    .reverse()
    .map((envelope) =>
      h(
        'tr',
        { dataset: { event: envelope.type } },
        h('td', {}, instant(envelope.recorded_at, '—', { seconds: true })),
        h('td', {}, h('code', { class: 'event-type', text: envelope.type })),
        h('td', { class: 'event-user', text: who(envelope.metadata) }),
        h(
          'td',
          {},
          eventWords(envelope),
          edits.get(envelope.id)?.length ? changeList(edits.get(envelope.id)) : null,
        ),
      ),
    );
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table' },
      h('caption', { class: 'visually-hidden', text: 'Audit history, newest first' }),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['When', 'Event', 'By', 'What'].map((name) => h('th', { scope: 'col', text: name })),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );
}
