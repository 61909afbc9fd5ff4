// Pieces every screen uses: badges, the loading and error states, and task actions.

import { api } from '../api.js';
import { confirmDialog } from '../dialog.js';
import { h } from '../dom.js';
import { displayZone, formatInstant, sameWallClock, wallClockIn } from '../format.js';
import { typeLabel } from '../kinds/index.js';
import { openScheduleModal } from '../schedule-modal.js';
import { toast, toastError } from '../toast.js';

export function statusBadge(status) {
  return h('span', { class: `badge badge-${status}`, text: status });
}

export function typeBadge(type) {
  return h('span', { class: `type type-${type}`, text: typeLabel(type) });
}

/** A time element: the text in the display zone with the zone's name (seconds when asked),
 * the exact instant in datetime and title. */
export function instant(iso, fallback = '—', { seconds = false } = {}) {
  if (!iso) return h('span', { class: 'muted', text: fallback });
  const zone = displayZone();
  return h('time', {
    datetime: iso,
    title: `${iso} (shown in ${zone})`,
    text: formatInstant(iso, { zone, seconds }),
  });
}

/** A time of a task's schedule: in the display zone, and beside it the task's own wall clock
 * when its zone reads another ("· 08:15 America/New_York"). */
export function taskInstant(iso, task, fallback = '—') {
  const shown = instant(iso, fallback);
  const zone = task.recurrence_config?.timezone ?? 'UTC';
  if (!iso || task.recurrence_type === 'interval' || sameWallClock(iso, zone, displayZone())) {
    return shown;
  }
  return h(
    'span',
    { class: 'task-time' },
    shown,
    h('span', { class: 'muted task-zone-time', text: ` · ${wallClockIn(iso, zone)}` }),
  );
}

/** A pager's buttons and "Page n of m"; go(page) shows another page. */
export function pagerControls({ page, pages, key, go, back = '← Newer', forward = 'Older →' }) {
  return [
    h('button', {
      type: 'button',
      class: 'button small',
      text: back,
      disabled: page <= 1,
      dataset: { focusKey: `${key}-prev` },
      onclick: () => go(page - 1),
    }),
    h('span', { class: 'pager-text', text: `Page ${page} of ${pages}` }),
    h('button', {
      type: 'button',
      class: 'button small',
      text: forward,
      disabled: page >= pages,
      dataset: { focusKey: `${key}-next` },
      onclick: () => go(page + 1),
    }),
  ];
}

export function loading(what = 'Loading…') {
  return h('p', { class: 'loading', role: 'status', text: what });
}

/** Never a blank panel: what failed, the API's message, and a way to try again. */
export function errorPanel(error, retry = null, what = 'This could not be loaded') {
  return h(
    'div',
    { class: 'panel-error', role: 'alert' },
    h('p', {}, h('strong', { text: `${what}: ` }), error?.message ?? String(error)),
    retry
      ? h('button', { type: 'button', class: 'button small', text: 'Try again', onclick: retry })
      : null,
  );
}

/**
 * The buttons of a task (card and detail page): Pause or Resume, Execute, Edit, Duplicate,
 * Delete.
 * onChanged(task | null) after a change (null when deleted); onExecuted(executionId).
 */
export function taskActions(
  task,
  { canWrite, onChanged, onExecuted = () => {}, keyPrefix = task.id },
) {
  // While an action runs its button says so with aria-disabled rather than `disabled`, which
  // would drop the keyboard focus; the refreshed list puts the focus back by data-focus-key.
  const button = (label, action, { kind = '', key = label } = {}) =>
    h('button', {
      type: 'button',
      class: `button small ${kind}`,
      text: label,
      disabled: !canWrite,
      'aria-label': `${label} ${task.name}`,
      dataset: { focusKey: `${keyPrefix}-${key}`, action: label.toLowerCase() },
      onclick: async (event) => {
        const target = event.currentTarget;
        if (target.getAttribute('aria-disabled') === 'true') return;
        target.setAttribute('aria-disabled', 'true');
        try {
          await action();
        } catch (error) {
          toastError(error);
        } finally {
          target.removeAttribute('aria-disabled');
        }
      },
    });

  const paused = task.status === 'paused';
  const finished = task.status === 'completed' || task.status === 'failed';
  return h(
    'div',
    { class: 'task-actions' },
    paused
      ? button(
          'Resume',
          async () => {
            const updated = await api.resumeTask(task.id);
            toast(`Resumed “${task.name}”: next run ${formatInstant(updated.next_run_time)}.`);
            onChanged(updated);
          },
          { key: 'pause-resume' },
        )
      : finished
        ? null
        : button(
            'Pause',
            async () => {
              onChanged(await api.pauseTask(task.id));
              toast(`Paused “${task.name}”.`);
            },
            { key: 'pause-resume' },
          ),
    button(
      'Execute',
      async () => {
        const { execution_id: executionId } = await api.executeTask(task.id);
        toast(`Started a run of “${task.name}”.`, {
          action: { label: 'Follow it', href: `#/tasks/${task.id}?run=${executionId}` },
        });
        onExecuted(executionId);
      },
      { kind: 'primary' },
    ),
    button('Edit', async () => {
      const updated = await openScheduleModal({ task });
      if (updated && updated !== task) {
        toast(`Saved “${updated.name}”.`);
        onChanged(updated);
      }
    }),
    button('Duplicate', async () => {
      const copy = await openScheduleModal({ copyOf: task });
      if (!copy) return;
      toast(`Created “${copy.name}”, a copy of “${task.name}”.`, {
        action: { label: 'Open', href: `#/tasks/${copy.id}` },
      });
      window.location.hash = `#/tasks/${copy.id}`;
    }),
    button(
      'Delete',
      async () => {
        const sure = await confirmDialog({
          title: 'Delete this task?',
          message: `“${task.name}” will stop running and leave the list. Its history stays in the audit log.`,
          confirmLabel: 'Delete task',
          danger: true,
        });
        if (!sure) return;
        await api.deleteTask(task.id);
        toast(`Deleted “${task.name}”.`);
        onChanged(null);
      },
      { kind: 'danger-ghost' },
    ),
  );
}
