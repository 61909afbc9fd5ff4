// One run (#/executions/<id>), of a task, ad hoc or a rerun: each device's status as it moves
// (pending, waiting, running, then its result), Cancel while it runs, "Rerun failed" once it
// has finished with failures, and the rerun links both ways (rerun of … / rerun as …).

import { api } from '../api.js';
import { confirmDialog } from '../dialog.js';
import { debounce, h, keepingFocus, replaceChildren } from '../dom.js';
import { duration, plural } from '../format.js';
import { toast, toastError } from '../toast.js';
import { deliveryWords } from '../delivery-words.js';
import { outputBlock } from '../output.js';
import { errorPanel, instant, loading, statusBadge, typeBadge } from './common.js';
import { fact } from './tasks.js';

const POLL_MS = 2000;
const FINAL = new Set([
  'success',
  'failed',
  'timeout',
  'unreachable',
  'expired',
  'skipped',
  'canceled',
]);

export const TRIGGER_WORDS = {
  schedule: 'scheduled',
  manual: 'run now',
  adhoc: 'ad hoc',
  rerun: 'rerun',
};

/** "2 of 5 devices finished" while running, "3/5 succeeded, 2 failed" after, "no target
 * devices" for a run that found none (its groups empty or deleted). */
export function runCounts(run) {
  const details = Object.values(run.result?.execution_details ?? {});
  const targeted = run.result?.devices_targeted || details.length;
  if (targeted === 0 && run.status !== 'running') return 'no target devices';
  if (run.status === 'running') {
    const done = details.filter((detail) => FINAL.has(detail.status)).length;
    return `${done} of ${plural(targeted, 'device')} finished`;
  }
  const { devices_succeeded: ok = 0, devices_failed: failed = 0 } = run.result ?? {};
  return `${ok}/${targeted} succeeded${failed ? `, ${failed} failed` : ''}`;
}

export function runView(container, { me, live, navigate, params }) {
  const runId = params.id;
  const canWrite = me.role !== 'viewer';
  let run = null;
  let reruns = [];
  let timer = null;
  let gone = false;

  const back = h('p', { class: 'back' }, h('a', { href: '#/executions', text: '← Executions' }));
  const head = h('div', { class: 'detail-head' });
  const facts = h('div', { class: 'detail-facts' });
  const devices = h('div', { class: 'device-results' });
  const body = h(
    'section',
    { class: 'card', 'aria-labelledby': 'devices-heading' },
    h('h2', { id: 'devices-heading', text: 'Devices' }),
    devices,
  );
  replaceChildren(container, back, loading('Loading the run…'));

  async function load() {
    try {
      run = await api.getExecution(runId);
      replaceChildren(container, back, head, facts, body);
      render();
      loadReruns();
      schedulePoll();
    } catch (error) {
      replaceChildren(
        container,
        back,
        error.status === 404
          ? h(
              'div',
              { class: 'panel-error', role: 'alert' },
              h('p', { text: 'This run does not exist, or you may not see it.' }),
            )
          : errorPanel(error, load, 'The run could not be loaded'),
      );
    }
  }

  async function refresh() {
    try {
      run = await api.getExecution(runId);
      render();
      if (run.status !== 'running') loadReruns();
    } catch {
      // the page stays; the next event or poll tries again
    }
    schedulePoll();
  }

  // The read tables follow the log a moment later: while the run runs, ask again every 2 s
  // as well as on its live events.
  function schedulePoll() {
    clearTimeout(timer);
    if (!gone && run?.status === 'running') timer = setTimeout(refresh, POLL_MS);
  }

  async function loadReruns() {
    try {
      const page = await api.listExecutions({ trigger: 'rerun', limit: 200 });
      reruns = page.items.filter((item) => item.rerun_of === runId);
      renderFacts();
    } catch {
      // the link is a convenience; the run is shown without it
    }
  }

  function render() {
    renderHead();
    renderFacts();
    renderDevices();
  }

  function renderHead() {
    back.firstChild.href = run.task_id ? `#/tasks/${run.task_id}` : '#/executions';
    back.firstChild.textContent = run.task_id ? '← The task' : '← Executions';
    keepingFocus(() => {
      replaceChildren(
        head,
        h(
          'div',
          { class: 'detail-title' },
          h('h1', { text: run.name ?? 'Run' }),
          h(
            'div',
            { class: 'badges' },
            statusBadge(run.status),
            typeBadge(run.task_type),
            h('span', { class: 'badge trigger', text: TRIGGER_WORDS[run.trigger] ?? run.trigger }),
          ),
        ),
        runActions(run, { canWrite, navigate, onChanged: changed }),
      );
    });
  }

  function renderFacts() {
    if (!run) return;
    replaceChildren(
      facts,
      run.error_message ? h('p', { class: 'run-error', text: run.error_message }) : null,
      h(
        'dl',
        { class: 'facts wide' },
        fact('Devices', h('span', { class: 'run-counts', text: runCounts(run) })),
        fact('Started', instant(run.started_at ?? run.scheduled_for, 'not yet')),
        fact(
          'Finished',
          instant(run.completed_at, run.status === 'running' ? 'still running' : '—'),
          run.completed_at
            ? h('span', {
                class: 'muted',
                text: ` (${duration(run.started_at ?? run.scheduled_for, run.completed_at)})`,
              })
            : null,
        ),
        fact(
          'Task',
          run.task_id
            ? h('a', { href: `#/tasks/${run.task_id}`, text: run.name ?? run.task_id })
            : h('span', { class: 'muted', text: 'none (ad hoc)' }),
        ),
        fact('Delivery', h('span', { class: 'delivery-words', text: deliveryWords(run.delivery) })),
        run.rerun_of
          ? fact(
              'Rerun of',
              h('a', {
                class: 'rerun-of',
                href: `#/executions/${run.rerun_of}`,
                text: `rerun of ${run.rerun_of.slice(0, 8)}`,
              }),
            )
          : null,
        reruns.length
          ? fact(
              'Rerun as',
              reruns.map((item, index) => [
                index ? ', ' : '',
                h('a', {
                  class: 'rerun-as',
                  href: `#/executions/${item.id}`,
                  text: `rerun as ${item.id.slice(0, 8)}`,
                }),
              ]),
            )
          : null,
      ),
    );
  }

  function renderDevices() {
    const details = run.result.execution_details;
    const ids = Object.keys(details).sort();
    keepingFocus(() => {
      replaceChildren(
        devices,
        ids.length
          ? ids.map((id) => deviceRow(id, details[id], run.id))
          : h('p', { class: 'muted', text: 'Waiting for the devices…' }),
      );
    });
  }

  function changed(updated) {
    if (updated) run = updated;
    render();
    refresh();
  }

  const debounced = debounce(refresh, 250);
  const stopLive = live.on((envelope) => {
    const data = envelope.data ?? {};
    if (data.execution_id === runId || data.rerun_of === runId) debounced();
  });
  const stopResync = live.onResync(refresh);
  load();

  return {
    destroy() {
      gone = true;
      clearTimeout(timer);
      debounced.cancel();
      stopLive();
      stopResync();
    },
  };
}

/** One device of a run: its status, exit code, error (offline times in words) and output,
 * each with Copy and Download. */
export function deviceRow(deviceId, result = {}, runId = '') {
  const status = result.status ?? 'pending';
  const output = (label, kind) =>
    outputBlock({ deviceId, runId, label, kind, text: result[kind] });
  const quiet = !result.stdout && !result.stderr && !result.error && FINAL.has(status);
  return h(
    'section',
    { class: 'device-result', dataset: { device: deviceId, status } },
    h(
      'header',
      { class: 'device-result-head' },
      h('strong', { text: deviceId }),
      statusBadge(status),
      result.exit_code === null || result.exit_code === undefined
        ? null
        : h('span', { class: 'exit-code', text: `exit code ${result.exit_code}` }),
    ),
    result.error ? h('p', { class: 'run-error', text: result.error }) : null,
    output('stdout', 'stdout'),
    output('stderr', 'stderr'),
    quiet ? h('p', { class: 'muted', text: 'No output.' }) : null,
  );
}

/**
 * A run's buttons: Cancel run while it runs (asks first; "canceling…" once asked), Rerun failed
 * once it finished with any device not `success` (opens the new run). onChanged(run) after a
 * cancel.
 */
export function runActions(run, { canWrite, navigate, onChanged = () => {} }) {
  const canceling = run.status === 'running' && run.cancel_requested_at;
  const details = Object.values(run.result?.execution_details ?? {});
  const failures = details.some((detail) => detail.status !== 'success');

  async function cancel() {
    const sure = await confirmDialog({
      title: 'Cancel this run?',
      message:
        'Devices that have not started will not start, and running jobs are stopped. Devices that already finished keep their result.',
      confirmLabel: 'Cancel run',
      danger: true,
    });
    if (!sure) return;
    try {
      const updated = await api.cancelExecution(run.id);
      toast('Canceling the run.');
      onChanged(updated);
    } catch (error) {
      toastError(error);
      onChanged(null);
    }
  }

  async function rerunFailed() {
    try {
      const { execution_id: newId } = await api.rerunExecution(run.id, 'failed');
      toast('Started a rerun of the failed devices.');
      navigate(`#/executions/${newId}`);
    } catch (error) {
      toastError(error);
    }
  }

  return h(
    'div',
    { class: 'task-actions run-actions' },
    canceling ? h('span', { class: 'canceling muted', role: 'status', text: 'canceling…' }) : null,
    run.status === 'running' && !canceling
      ? h('button', {
          type: 'button',
          class: 'button small danger-ghost',
          text: 'Cancel run',
          disabled: !canWrite,
          dataset: { focusKey: `run-cancel-${run.id}` },
          onclick: cancel,
        })
      : null,
    run.status !== 'running' && failures
      ? h('button', {
          type: 'button',
          class: 'button small primary',
          text: 'Rerun failed',
          disabled: !canWrite,
          dataset: { focusKey: `run-rerun-${run.id}` },
          onclick: rerunFailed,
        })
      : null,
  );
}
