// The dashboard: targets, a panel per task kind (Command, Software, File, Script) with Execute
// and Schedule, and what is running now, live.

import { api } from '../api.js';
import { offlineAmong, offlineWords, resolveTargets } from '../capabilities.js';
import { dialogActions, openDialog } from '../dialog.js';
import { h, replaceChildren } from '../dom.js';
import { FieldErrors } from '../field-errors.js';
import { fleet } from '../fleet.js';
import { formatInstant, plural, relativeTime } from '../format.js';
import { icon } from '../icons.js';
import { KINDS, payloadFields } from '../kinds/index.js';
import { openScheduleModal } from '../schedule-modal.js';
import { targetPicker } from '../targets.js';
import { toast } from '../toast.js';
import { statusBadge } from './common.js';

const ACTIVITY_LIMIT = 8;

export function dashboardView(container, { me, live, navigate }) {
  const canWrite = me.role !== 'viewer';
  const picker = targetPicker({ legend: 'Targets' });
  const activity = activityCard(live);
  const panels = KINDS.map((kind) => deploymentPanel(kind, { picker, canWrite, navigate }));
  // Each panel offers only what every chosen target can run.
  const unfollow = picker.subscribe((value) => {
    const devices = resolveTargets(value);
    for (const panel of panels) panel.setTargets(devices);
  });

  replaceChildren(
    container,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { text: 'Dashboard' }),
      h('p', {
        class: 'muted',
        text: 'Execute runs now on the chosen targets; Schedule opens the scheduling form.',
      }),
    ),
    canWrite
      ? null
      : h('p', {
          class: 'notice',
          text: `The ${me.role} role may only read: Execute and Schedule are off.`,
        }),
    h(
      'div',
      { class: 'dash-top' },
      h('section', { class: 'card targets-card', 'aria-label': 'Targets' }, picker.element),
      activity.element,
    ),
    h(
      'div',
      { class: 'panels' },
      panels.map((panel) => panel.element),
    ),
  );

  return {
    destroy() {
      unfollow();
      picker.destroy();
      activity.destroy();
    },
  };
}

function deploymentPanel(kind, { picker, canWrite, navigate }) {
  const { type, label: title, blurb } = kind;
  const headingId = `panel-${type}`;
  const fields = payloadFields(type, {}, { upload: kind.upload });
  const errors = new FieldErrors()
    .addAll(fields.errors)
    .add('device_ids', { show: picker.setError, focus: picker.focus })
    .add('group_ids', { show: picker.setError, focus: picker.focus });
  const panelError = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const execute = h(
    'button',
    { type: 'button', class: 'button primary', disabled: !canWrite },
    h('span', { 'aria-hidden': 'true', text: '▶ ' }),
    'Execute',
  );
  const schedule = h(
    'button',
    { type: 'button', class: 'button', disabled: !canWrite },
    h('span', { 'aria-hidden': 'true', text: '■ ' }),
    'Schedule',
  );
  execute.setAttribute('aria-describedby', headingId);
  schedule.setAttribute('aria-describedby', headingId);

  const element = h(
    'section',
    { class: 'card panel', 'aria-labelledby': headingId, dataset: { panel: type } },
    h(
      'header',
      { class: 'panel-head' },
      h('span', { class: 'panel-icon' }, icon(kind.icon)),
      h(
        'div',
        {},
        h('h2', { id: headingId, text: title }),
        h('p', { class: 'muted', text: blurb }),
      ),
    ),
    fields.element,
    panelError,
    h('div', { class: 'panel-actions' }, execute, schedule),
  );

  function fail(error) {
    if (!errors.show(error.field, error.reason, { focus: true })) {
      panelError.textContent = error.message;
      panelError.hidden = false;
    }
  }

  /** Checks the panel and the targets, and uploads the file if there is one. */
  async function ready({ needTargets }) {
    panelError.hidden = true;
    errors.clear();
    let ok = fields.validate();
    const targets = picker.value();
    if (needTargets && targets.device_ids.length + targets.group_ids.length === 0) {
      picker.setError('Choose at least one device or group to run on.');
      // Said beside the button too: on a phone the picker is a screen or more above.
      panelError.textContent = 'Choose at least one device or group to run on, under Targets.';
      panelError.hidden = false;
      ok = false;
    }
    return ok && (await fields.prepare());
  }

  async function busy(button, label, work) {
    const before = [...button.childNodes];
    button.disabled = true;
    button.textContent = label;
    try {
      await work();
    } catch (error) {
      fail(error);
    } finally {
      button.replaceChildren(...before);
      button.disabled = !canWrite;
    }
  }

  execute.addEventListener('click', () =>
    busy(execute, 'Starting…', async () => {
      if (!(await ready({ needTargets: true }))) return;
      // Offline targets: said before anything runs, with the offline wait offered.
      const offline = offlineAmong(resolveTargets(picker.value()));
      let delivery;
      if (offline.length) {
        const wait = await askOfflineWait(offline);
        if (wait === undefined) return;
        if (wait > 0) delivery = { offline_wait_seconds: wait };
      }
      const summary = fields.summary().slice(0, 120);
      // An ad-hoc run: it starts now and creates no task.
      const { execution_id: executionId } = await api.runNow({
        name: `Run now: ${summary}`,
        task_type: type,
        ...picker.value(),
        task_payload: fields.value(),
        ...(delivery ? { delivery } : {}),
      });
      toast(`Running “${summary}” on ${targetsText(picker.value())}.`);
      navigate(`#/executions/${executionId}`);
    }),
  );

  schedule.addEventListener('click', async () => {
    let payload = null;
    await busy(schedule, 'Preparing…', async () => {
      if (!(await ready({ needTargets: false }))) return;
      payload = fields.value()[kind.payloadKey];
      if (fields.fileName) payload.name = fields.fileName();
    });
    if (!payload) return;
    schedule.focus(); // where the focus returns when the modal closes
    const task = await openScheduleModal({ taskType: type, payload, targets: picker.value() });
    if (!task) return;
    toast(`Scheduled “${task.name}”: next run ${formatInstant(task.next_run_time)}.`, {
      action: { label: 'Open', href: `#/tasks/${task.id}` },
    });
    navigate('#/tasks');
  });

  return { element, setTargets: (devices) => fields.setTargets?.(devices) };
}

/**
 * Asks what to do about offline targets: wait for them (the run's offline wait, in minutes),
 * run without waiting (they are unreachable at once), or not run. Resolves with the wait in
 * seconds (0: no wait), or undefined when canceled.
 */
function askOfflineWait(offline) {
  return openDialog({
    title:
      offline.length === 1 ? 'A target is offline' : `${offline.length} targets are offline`,
    className: 'offline-dialog',
    initialFocus: 'input',
    build: (close) => {
      const minutes = h('input', {
        class: 'input',
        type: 'number',
        min: 1,
        max: 1440,
        step: 1,
        value: 10,
        inputmode: 'numeric',
        id: 'offline-wait-minutes',
      });
      const error = h('p', { class: 'field-error', hidden: true, role: 'alert' });
      const waitAnd = () => {
        const value = Number(minutes.value);
        if (!Number.isInteger(value) || value < 1 || value > 1440) {
          error.textContent = 'Wait 1 to 1440 minutes.';
          error.hidden = false;
          minutes.focus();
          return;
        }
        close(value * 60);
      };
      return h(
        'div',
        { class: 'dialog-body' },
        h(
          'ul',
          { class: 'offline-list' },
          offline.map((device) =>
            h('li', {}, h('strong', { text: device.id }), ` is ${offlineWords(device)}.`),
          ),
        ),
        h('p', {
          text:
            offline.length === 1
              ? 'Without a wait it is unreachable at once; with one, it gets the job if it comes back in time.'
              : 'Without a wait they are unreachable at once; with one, each gets the job if it comes back in time.',
        }),
        h(
          'div',
          { class: 'field' },
          h('label', { class: 'label', for: minutes.id, text: 'Wait for offline devices (minutes)' }),
          minutes,
          error,
        ),
        dialogActions(
          close,
          undefined,
          h('button', {
            type: 'button',
            class: 'button',
            text: 'Run without waiting',
            onclick: () => close(0),
          }),
          h('button', { type: 'button', class: 'button primary', text: 'Run and wait', onclick: waitAnd }),
        ),
      );
    },
  });
}

function targetsText({ device_ids: devices, group_ids: groups }) {
  const parts = [];
  if (devices.length) parts.push(plural(devices.length, 'device'));
  if (groups.length) parts.push(plural(groups.length, 'group'));
  return parts.join(' and ');
}

// --- what is running ----------------------------------------------------------------------------

const NAME_TRIES = 5;

/**
 * The latest runs: those of GET /api/executions on load, kept up to date from the live feed
 * (merged by execution id). A run's name is the task's, or its own for an ad-hoc run.
 */
function activityCard(live) {
  const runs = new Map(); // execution id → {name, status, targeted, done, at}
  const list = h('ul', { class: 'activity-list', 'aria-live': 'polite' });
  const fleetLine = h('p', { class: 'fleet-line' });
  const element = h(
    'section',
    { class: 'card activity', 'aria-labelledby': 'activity-heading' },
    h('h2', { id: 'activity-heading', text: 'Live activity' }),
    fleetLine,
    h('h3', { class: 'small-heading', text: 'Runs' }),
    list,
  );
  let loaded = false;
  let gone = false;

  function render() {
    const newest = [...runs.entries()].sort(
      ([, a], [, b]) => (Date.parse(b.at) || 0) - (Date.parse(a.at) || 0),
    );
    // Older runs never come back into view: new ones are newer still.
    for (const [id] of newest.slice(ACTIVITY_LIMIT)) runs.delete(id);
    const items = newest.slice(0, ACTIVITY_LIMIT);
    replaceChildren(
      list,
      items.length
        ? items.map(([id, run]) =>
            h(
              'li',
              { class: 'activity-item', dataset: { execution: id } },
              statusBadge(run.status),
              h('a', { href: `#/executions/${id}`, text: run.name ?? '…' }),
              h('span', { class: 'muted', text: progressText(run) }),
            ),
          )
        : [
            h('li', {
              class: 'muted',
              text: loaded ? 'No runs yet. Runs appear here as they start.' : 'Loading runs…',
            }),
          ],
    );
  }

  function progressText(run) {
    const results = run.targeted ? ` · ${run.done} of ${plural(run.targeted, 'device')} done` : '';
    return `${relativeTime(run.at)}${results}`;
  }

  /** A run as GET /api/executions describes it. */
  function fromApi(execution) {
    const { result } = execution;
    return {
      name: execution.name,
      status: execution.status,
      targeted: result.devices_targeted,
      done:
        execution.status === 'running'
          ? Object.values(result.execution_details ?? {}).filter(
              (device) => !['pending', 'running', 'waiting'].includes(device.status),
            ).length
          : result.devices_targeted,
      at: execution.started_at ?? execution.scheduled_for,
    };
  }

  /** The latest runs, merged with what the live feed already said about them. */
  async function latest() {
    try {
      const { items } = await api.listExecutions({ limit: ACTIVITY_LIMIT });
      for (const execution of items) {
        const known = runs.get(execution.id);
        const loadedRun = fromApi(execution);
        if (!known) runs.set(execution.id, loadedRun);
        else if (known.status === 'running' || !known.name) {
          // The feed may be ahead of the list (a result after it was read): keep its counts.
          Object.assign(known, {
            name: known.name ?? loadedRun.name,
            status: known.status === 'running' ? loadedRun.status : known.status,
            done: Math.max(known.done, loadedRun.done),
            targeted: known.targeted || loadedRun.targeted,
          });
        }
      }
    } catch {
      // the live events still fill the list
    }
    loaded = true;
    render();
  }

  /**
   * The run's name from its own record. The feed can bring a run's start before the read
   * tables have it (they follow the log a moment later), so a miss is tried again shortly.
   */
  async function name(id, run) {
    for (let attempt = 0; attempt < NAME_TRIES && !gone; attempt += 1) {
      try {
        run.name = (await api.getExecution(id)).name;
        render();
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 200 * 2 ** attempt));
      }
    }
    if (!run.name) {
      run.name = 'a run';
      render();
    }
  }

  function track(envelope) {
    const data = envelope.data ?? {};
    const id = data.execution_id;
    if (!id) return;
    if (envelope.type === 'ExecutionStarted') {
      let run = runs.get(id);
      if (!run) {
        run = { name: undefined, status: 'running', targeted: 0, done: 0 };
        runs.set(id, run);
        name(id, run);
      }
      const targeted = data.devices_targeted || data.device_ids.length;
      Object.assign(run, { targeted, at: data.started_at });
    } else if (!runs.has(id)) {
      return;
    } else if (envelope.type === 'DeviceResultRecorded') {
      const run = runs.get(id);
      run.done = Math.min(run.done + 1, run.targeted || Infinity);
    } else if (envelope.type === 'ExecutionCompleted') {
      Object.assign(runs.get(id), { status: data.status, done: data.devices_targeted });
    }
    render();
  }

  const stopLive = live.on(track);
  const unwatch = fleet.watch(({ devices, error }) => {
    const online = devices.filter((device) => device.online).length;
    replaceChildren(
      fleetLine,
      error
        ? h('span', { class: 'field-error', text: `Devices could not be loaded: ${error.message}` })
        : [
            h('strong', { text: `${online} of ${devices.length}` }),
            ` ${devices.length === 1 ? 'device' : 'devices'} online · `,
            h('a', { href: '#/devices', text: 'Devices' }),
          ],
    );
  });
  render();
  latest();
  return {
    element,
    destroy() {
      gone = true;
      stopLive();
      unwatch();
    },
  };
}
