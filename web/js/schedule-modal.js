// The scheduling modal, one component for every kind's panel and for editing a task: name,
// description, what to run, targets, recurrence, time zone, and a live preview of the next five
// runs from POST /api/schedule/preview, with every error beside the field it concerns.

import { api } from './api.js';
import { resolveTargets } from './capabilities.js';
import { dialogActions, openDialog } from './dialog.js';
import { debounce, field, h, replaceChildren, setFieldError, uid } from './dom.js';
import { FieldErrors } from './field-errors.js';
import {
  browserTimeZone,
  displayZone,
  formatInstant,
  sameWallClock,
  wallClockIn,
} from './format.js';
import { payloadFields, typeLabel } from './kinds/index.js';
import { deliveryWords } from './delivery-words.js';
import { describeSchedule } from './schedule-words.js';
import { targetPicker } from './targets.js';
import { timingFields } from './timing-fields.js';
import { zonePicker } from './zone-picker.js';

const RECURRENCES = [
  ['once', 'Once'],
  ['daily', 'Daily'],
  ['weekly', 'Weekly'],
  ['monthly', 'Monthly'],
  ['custom', 'Cron'],
  ['interval', 'Interval'],
];
const DAYS = [
  [1, 'Mon', 'Monday'],
  [2, 'Tue', 'Tuesday'],
  [3, 'Wed', 'Wednesday'],
  [4, 'Thu', 'Thursday'],
  [5, 'Fri', 'Friday'],
  [6, 'Sat', 'Saturday'],
  [0, 'Sun', 'Sunday'],
];
const UNITS = [
  [1, 'seconds'],
  [60, 'minutes'],
  [3600, 'hours'],
  [86400, 'days'],
];
const PREVIEW_COUNT = 5;

/**
 * Opens the modal. Create: {taskType, payload, targets, fileName}; edit: {task}; duplicate:
 * {copyOf: task}, a new task filled in from that one. Resolves with the created or updated
 * Task, or undefined when dismissed.
 */
export function openScheduleModal({
  taskType,
  task = null,
  copyOf = null,
  payload = {},
  targets = {},
}) {
  const type = task?.task_type ?? copyOf?.task_type ?? taskType;
  const title = task
    ? `Edit “${task.name}”`
    : copyOf
      ? `Duplicate “${copyOf.name}”`
      : `Schedule a ${typeLabel(type).toLowerCase()} task`;
  let cleanup = () => {};
  const done = openDialog({
    title,
    className: 'schedule-modal',
    initialFocus: '[data-autofocus]',
    build: (close) => {
      const form = scheduleForm({ type, task, copyOf, payload, targets, close });
      cleanup = form.destroy;
      return form.element;
    },
  });
  return done.finally(() => cleanup());
}

function scheduleForm({ type, task, copyOf, payload, targets, close }) {
  const errors = new FieldErrors();
  // What the form starts from: the task edited, or the one duplicated.
  const source = task ?? copyOf;
  const name = field({
    label: 'Task name',
    input: h('input', {
      class: 'input',
      type: 'text',
      maxlength: 200,
      autocomplete: 'off',
      'data-autofocus': true,
    }),
  });
  name.input.value = task?.name ?? (copyOf ? `Copy of ${copyOf.name}`.slice(0, 200) : '');
  const description = field({
    label: 'Description',
    hint: 'Optional',
    input: h('textarea', { class: 'input', rows: 2, maxlength: 5000 }),
  });
  description.input.value = source?.description ?? '';

  const initialPayload = source ? (Object.values(source.task_payload)[0] ?? {}) : payload;
  const what = payloadFields(type, initialPayload, { upload: false });
  const picker = targetPicker({
    deviceIds: source?.device_ids ?? targets.device_ids ?? [],
    groupIds: source?.group_ids ?? targets.group_ids ?? [],
  });
  const when = recurrenceFields(source);
  const rollout = deliveryFields(source?.delivery ?? {});
  const timing = timingFields(source ?? {});
  // The payload offers only what every chosen target can run.
  const unfollow = picker.subscribe((value) => what.setTargets?.(resolveTargets(value)));
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', {
    type: 'submit',
    class: 'button primary',
    text: task ? 'Save changes' : 'Schedule task',
  });

  errors
    .add('name', name)
    .add('description', description)
    .addAll(what.errors)
    .add('device_ids', { show: picker.setError, focus: picker.focus })
    .add('group_ids', { show: picker.setError, focus: picker.focus })
    .addAll(when.errors)
    .addAll(rollout.errors)
    .addAll(timing.errors);

  const preview = previewBox(when, errors);
  rollout.element.addEventListener('input', () => errors.clear('delivery'));

  const form = h(
    'form',
    { class: 'dialog-body schedule-form', novalidate: true },
    formError,
    h(
      'div',
      { class: 'form-columns' },
      h(
        'div',
        { class: 'form-column' },
        name.wrapper,
        description.wrapper,
        h('fieldset', { class: 'group' }, h('legend', { text: 'What to run' }), what.element),
        picker.element,
      ),
      h(
        'div',
        { class: 'form-column' },
        when.element,
        preview.element,
        rollout.element,
        timing.element,
      ),
    ),
    dialogActions(close, undefined, submit),
  );

  function showError(error) {
    if (!errors.show(error.field, error.reason, { focus: true })) {
      formError.textContent = error.message;
      formError.hidden = false;
    }
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    formError.hidden = true;
    errors.clear();
    let ok = what.validate();
    if (!name.input.value.trim()) {
      setFieldError(name.error, name.input, 'Give the task a name.');
      ok = false;
    }
    const chosen = picker.value();
    if (chosen.device_ids.length + chosen.group_ids.length === 0) {
      picker.setError('Choose at least one device or group.');
      ok = false;
    }
    if (!ok) {
      form.querySelector('[aria-invalid="true"], .targets .field-error:not([hidden])')?.focus?.();
      return;
    }
    const body = {
      name: name.input.value.trim(),
      description: description.input.value.trim(),
      ...when.value(),
      ...chosen,
      task_payload: what.value(),
      delivery: rollout.value(),
      ...timing.value(),
    };
    if (copyOf && !task) {
      // A duplicate keeps what this form does not show.
      for (const key of ['end_at', 'max_runs', 'pause_on_failure']) {
        if (copyOf[key] !== null && copyOf[key] !== undefined) body[key] = copyOf[key];
      }
    }
    submit.disabled = true;
    submit.textContent = task ? 'Saving…' : 'Scheduling…';
    try {
      if (task) {
        const patch = changes(task, body);
        close(Object.keys(patch).length ? await api.updateTask(task.id, patch) : task);
      } else {
        close(await api.createTask({ ...body, task_type: type }));
      }
    } catch (error) {
      showError(error);
      submit.disabled = false;
      submit.textContent = task ? 'Save changes' : 'Schedule task';
    }
  });

  return {
    element: form,
    destroy: () => {
      unfollow();
      picker.destroy();
    },
  };
}

/** The writable fields whose value differs from the task's (schedule fields go together). */
function changes(task, body) {
  const patch = {};
  const keys = ['name', 'description', 'device_ids', 'group_ids', 'task_payload'];
  keys.push('overlap_policy', 'jitter_seconds', 'misfire_grace_seconds');
  for (const key of keys) {
    if (canonical(body[key]) !== canonical(task[key])) patch[key] = body[key];
  }
  if (canonical(body.delivery) !== canonical(task.delivery ?? {})) patch.delivery = body.delivery;
  const schedule = ['recurrence_type', 'recurrence_config'];
  if (schedule.some((key) => canonical(body[key]) !== canonical(task[key]))) {
    for (const key of schedule) patch[key] = body[key];
  }
  return patch;
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    const keys = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

// --- rollout and delivery ----------------------------------------------------------------------

/** "10%" stays a percentage, "3" becomes 3; anything else goes as typed, for the API to name. */
function sizeValue(text) {
  const trimmed = text.trim().replace(/\s+%$/, '%');
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  return trimmed;
}

function sizeText(value) {
  return value === undefined || value === null ? '' : String(value);
}

/** Waves, concurrency, error threshold, offline wait and wave pause, with the sentence saying
 * what a run will do. value() is the task's `delivery` (only the fields given). */
export function deliveryFields(delivery = {}) {
  const text = (label, hint, value) => {
    const made = field({
      label,
      hint,
      input: h('input', { class: 'input', type: 'text', autocomplete: 'off', spellcheck: 'false' }),
    });
    made.input.value = value;
    return made;
  };
  const waves = text(
    'Waves',
    'Batch sizes in order, e.g. 1, 10%, 100%; the last repeats. Empty: all at once',
    (delivery.waves ?? []).map(sizeText).join(', '),
  );
  const concurrency = text(
    'Max concurrency',
    'At most this many (or %) running at once',
    sizeText(delivery.max_concurrency),
  );
  const errorsAllowed = text(
    'Error threshold',
    'Stop once more than this many (or %) fail',
    sizeText(delivery.max_errors),
  );
  const duration = (label, hint, total) => {
    const [amount, size] = total ? splitSeconds(total) : ['', 60];
    const made = field({
      label,
      hint,
      input: h('input', { class: 'input', type: 'number', min: 0, inputmode: 'numeric' }),
    });
    made.input.value = amount;
    made.unit = h(
      'select',
      { class: 'input', 'aria-label': `${label} unit` },
      UNITS.map(([seconds, name]) =>
        h('option', { value: seconds, selected: seconds === size, text: name }),
      ),
    );
    made.input.after(made.unit);
    made.seconds = () =>
      made.input.value === ''
        ? null
        : Math.round(Number(made.input.value) * Number(made.unit.value));
    return made;
  };
  const offline = duration(
    'Offline wait',
    'How long to wait for a device that is offline',
    delivery.offline_wait_seconds,
  );
  const pause = duration(
    'Wave pause',
    'Between one wave and the next',
    delivery.wave_pause_seconds,
  );
  const sentence = h('p', { class: 'delivery-sentence', 'aria-live': 'polite' });
  const generalError = h('p', { class: 'field-error', hidden: true });

  function value() {
    const out = {};
    const list = waves.input.value
      .split(',')
      .map((item) => item.trim())
      .filter(Boolean)
      .map(sizeValue);
    if (list.length) out.waves = list;
    if (concurrency.input.value.trim()) out.max_concurrency = sizeValue(concurrency.input.value);
    if (errorsAllowed.input.value.trim()) out.max_errors = sizeValue(errorsAllowed.input.value);
    const wait = offline.seconds();
    if (wait) out.offline_wait_seconds = wait;
    const between = pause.seconds();
    if (between) out.wave_pause_seconds = between;
    return out;
  }

  const element = h(
    'fieldset',
    { class: 'group delivery' },
    h('legend', { text: 'Rollout and delivery' }),
    sentence,
    generalError,
    h(
      'div',
      { class: 'delivery-fields' },
      waves.wrapper,
      concurrency.wrapper,
      errorsAllowed.wrapper,
      offline.wrapper,
      pause.wrapper,
    ),
  );
  const say = () => {
    sentence.textContent = `${deliveryWords(value())}.`;
  };
  element.addEventListener('input', say);
  element.addEventListener('change', say);
  say();
  return {
    element,
    value,
    errors: [
      ['delivery', { show: (message) => setFieldError(generalError, null, message) }],
      ['delivery.waves', waves],
      ['delivery.max_concurrency', concurrency],
      ['delivery.max_errors', errorsAllowed],
      ['delivery.offline_wait_seconds', offline],
      ['delivery.wave_pause_seconds', pause],
    ],
  };
}

// --- recurrence ----------------------------------------------------------------------------------

function recurrenceFields(task) {
  const config = task?.recurrence_config ?? {};
  let kind = task?.recurrence_type ?? 'weekly';
  const listeners = new Set();
  const changed = () => listeners.forEach((listener) => listener());
  const groupName = uid('recurrence');

  const kindError = h('p', { class: 'field-error', hidden: true });
  const kinds = h(
    'div',
    { class: 'segmented', role: 'radiogroup', 'aria-label': 'Repeats' },
    RECURRENCES.map(([value, label]) =>
      h(
        'label',
        { class: 'segment' },
        h('input', { type: 'radio', name: groupName, value, checked: value === kind }),
        h('span', { text: label }),
      ),
    ),
  );

  // once
  const [onceDate, onceTime] = splitRunAt(config.run_at, config.timezone ?? 'UTC');
  const date = h('input', { class: 'input', type: 'date' });
  date.value = onceDate;
  const dateField = field({ label: 'Date', input: date });
  const onceClock = field({ label: 'Time', input: h('input', { class: 'input', type: 'time' }) });
  onceClock.input.value = onceTime;
  const onceError = h('p', { class: 'field-error', hidden: true });
  const oncePanel = h(
    'div',
    { class: 'when-panel', dataset: { kind: 'once' } },
    h('div', { class: 'row' }, dateField.wrapper, onceClock.wrapper),
    onceError,
  );

  // daily, weekly, monthly share the time of day
  const time = field({ label: 'Time of day', input: h('input', { class: 'input', type: 'time' }) });
  time.input.value = config.time ? config.time.slice(0, 5) : '09:00';
  const days = new Set((config.days ?? [1, 2, 3, 4, 5]).map((day) => Number(day) % 7));
  const daysError = h('p', { class: 'field-error', hidden: true, id: uid('days-error') });
  const dayButtons = DAYS.map(([value, short, long]) =>
    h('button', {
      type: 'button',
      class: 'day-toggle',
      'aria-pressed': String(days.has(value)),
      'aria-label': long,
      text: short,
      onclick: (event) => {
        if (days.has(value)) days.delete(value);
        else days.add(value);
        event.currentTarget.setAttribute('aria-pressed', String(days.has(value)));
        changed();
      },
    }),
  );
  const daysPanel = h(
    'div',
    { class: 'when-panel', dataset: { kind: 'weekly' } },
    h(
      'div',
      { class: 'field' },
      h('span', { class: 'label', id: `${daysError.id}-label`, text: 'Days' }),
      h(
        'div',
        {
          class: 'day-toggles',
          role: 'group',
          'aria-labelledby': `${daysError.id}-label`,
          'aria-describedby': daysError.id,
        },
        dayButtons,
      ),
      daysError,
    ),
  );
  const dom = field({
    label: 'Day of month',
    hint: 'Past the month’s end it runs on its last day',
    input: h('input', { class: 'input', type: 'number', min: 1, max: 31, inputmode: 'numeric' }),
  });
  dom.input.value = config.day_of_month ?? 1;
  const domPanel = h('div', { class: 'when-panel', dataset: { kind: 'monthly' } }, dom.wrapper);
  const timePanel = h(
    'div',
    { class: 'when-panel', dataset: { kind: 'daily weekly monthly' } },
    time.wrapper,
  );

  // custom
  const cron = field({
    label: 'Cron expression',
    hint: 'minute hour day-of-month month day-of-week, e.g. 0 8,12,18 * * 1-5',
    input: h('input', {
      class: 'input mono',
      type: 'text',
      autocomplete: 'off',
      spellcheck: 'false',
    }),
  });
  cron.input.value = config.cron ?? '0 8,12,18 * * 1-5';
  const cronPanel = h('div', { class: 'when-panel', dataset: { kind: 'custom' } }, cron.wrapper);

  // interval
  const [everyValue, everyUnit] = splitSeconds(config.every_seconds ?? 3600);
  const every = field({
    label: 'Every',
    input: h('input', { class: 'input', type: 'number', min: 1, inputmode: 'numeric' }),
  });
  every.input.value = everyValue;
  const unit = h(
    'select',
    { class: 'input', 'aria-label': 'Unit' },
    UNITS.map(([seconds, label]) =>
      h('option', { value: seconds, selected: seconds === everyUnit, text: label }),
    ),
  );
  const intervalPanel = h(
    'div',
    { class: 'when-panel', dataset: { kind: 'interval' } },
    h(
      'div',
      { class: 'row' },
      every.wrapper,
      h('div', { class: 'field' }, h('span', { class: 'label', text: 'Unit' }), unit),
    ),
  );

  // time zone: a task keeps its own (the API's default is UTC); a new one starts in the
  // browser's
  const zones = zonePicker({ selected: task ? (config.timezone ?? 'UTC') : browserTimeZone() });
  const zone = field({ label: 'Time zone', input: zones.select, id: zones.select.id });
  zone.input.before(zones.search, zones.status);

  const panels = [oncePanel, daysPanel, domPanel, timePanel, cronPanel, intervalPanel];
  const showPanels = () => {
    for (const panel of panels) panel.hidden = !panel.dataset.kind.split(' ').includes(kind);
  };
  kinds.addEventListener('change', (event) => {
    kind = event.target.value;
    showPanels();
    changed();
  });
  showPanels();

  const element = h(
    'fieldset',
    { class: 'group when' },
    h('legend', { text: 'When' }),
    kinds,
    kindError,
    ...panels,
    zone.wrapper,
  );
  for (const input of element.querySelectorAll('input, select')) {
    input.addEventListener('input', changed);
  }

  function value() {
    const recurrence = { timezone: zone.input.value };
    if (kind === 'once') {
      const untouched =
        config.run_at && date.value === onceDate && onceClock.input.value === onceTime;
      const wall =
        date.value && onceClock.input.value ? `${date.value}T${onceClock.input.value}` : date.value;
      recurrence.run_at = untouched ? config.run_at : wall;
    } else if (kind === 'custom') {
      recurrence.cron = cron.input.value.trim();
    } else if (kind === 'interval') {
      const count = every.input.value === '' ? NaN : Number(every.input.value);
      if (!Number.isNaN(count)) recurrence.every_seconds = Math.round(count * Number(unit.value));
      if (config.start_at) recurrence.start_at = config.start_at;
    } else {
      recurrence.time = time.input.value;
      if (kind === 'weekly')
        recurrence.days = DAYS.map(([day]) => day).filter((day) => days.has(day));
      if (kind === 'monthly' && dom.input.value !== '')
        recurrence.day_of_month = Number(dom.input.value);
    }
    return { recurrence_type: kind, recurrence_config: recurrence };
  }

  const showOnce = (message) => setFieldError(onceError, date, message);
  const showDays = (message) => setFieldError(daysError, null, message);
  return {
    element,
    value,
    onChange: (listener) => listeners.add(listener),
    errors: [
      ['recurrence_type', { show: (message) => setFieldError(kindError, null, message) }],
      ['recurrence_config', { show: (message) => setFieldError(kindError, null, message) }],
      ['recurrence_config.run_at', { show: showOnce, focus: () => date.focus() }],
      ['recurrence_config.time', time],
      ['recurrence_config.days', { show: showDays, focus: () => dayButtons[0].focus() }],
      ['recurrence_config.day_of_month', dom],
      ['recurrence_config.cron', cron],
      ['recurrence_config.every_seconds', every],
      ['recurrence_config.start_at', every],
      ['recurrence_config.timezone', zone],
    ],
  };
}

/** A run_at ("2026-12-01T14:00:00+01:00" or wall time) as the date and time inputs' values:
 * an instant (with an offset) as the wall clock of the task's zone. */
function splitRunAt(runAt, zone) {
  if (!runAt) {
    const soon = new Date(Date.now() + 3600_000);
    const pad = (n) => String(n).padStart(2, '0');
    return [
      `${soon.getFullYear()}-${pad(soon.getMonth() + 1)}-${pad(soon.getDate())}`,
      `${pad(soon.getHours())}:00`,
    ];
  }
  if (/(Z|[+-]\d\d:?\d\d)$/i.test(runAt) && !Number.isNaN(new Date(runAt).getTime())) {
    try {
      const parts = new Intl.DateTimeFormat('en-CA', {
        year: 'numeric',
        month: '2-digit',
        day: '2-digit',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
        timeZone: zone,
      }).formatToParts(new Date(runAt));
      const get = (type) => parts.find((part) => part.type === type)?.value;
      return [`${get('year')}-${get('month')}-${get('day')}`, `${get('hour')}:${get('minute')}`];
    } catch {
      // An unknown zone: read the digits as written.
    }
  }
  const match = /^(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d)/.exec(runAt);
  return match ? [match[1], match[2]] : ['', ''];
}

function splitSeconds(seconds) {
  const [size] = [...UNITS].reverse().find(([unitSize]) => seconds % unitSize === 0);
  return [seconds / size, size];
}

// --- preview -------------------------------------------------------------------------------------

function previewBox(when, errors) {
  const words = h('p', { class: 'preview-words' });
  const list = h('ol', { class: 'preview-list' });
  const status = h('p', { class: 'preview-status' });
  const element = h(
    'section',
    { class: 'preview', 'aria-live': 'polite', 'aria-label': 'Next runs' },
    h('h3', { text: `Next ${PREVIEW_COUNT} runs` }),
    words,
    status,
    list,
  );
  let sequence = 0;

  async function refresh() {
    const recurrence = when.value();
    const asked = ++sequence;
    words.textContent = describeSchedule(recurrence.recurrence_type, recurrence.recurrence_config);
    status.textContent = 'Working out the next runs…';
    try {
      const { times } = await api.preview({ ...recurrence, count: PREVIEW_COUNT });
      if (asked !== sequence) return;
      errors.clear('recurrence_');
      status.textContent = times.length ? '' : 'This schedule never runs again.';
      const zone = recurrence.recurrence_config.timezone;
      replaceChildren(
        list,
        times.map((time) =>
          h(
            'li',
            {},
            h('time', { datetime: time, text: formatInstant(time, { zone }) }),
            sameWallClock(time, zone, displayZone())
              ? null
              : h('span', {
                  class: 'muted',
                  text: ` · ${wallClockIn(time, displayZone(), zone)}`,
                }),
          ),
        ),
      );
    } catch (error) {
      if (asked !== sequence) return;
      errors.clear('recurrence_');
      replaceChildren(list);
      status.textContent = 'No preview: fix the schedule first.';
      if (!errors.show(error.field, error.reason)) status.textContent = error.message;
    }
  }

  const debounced = debounce(refresh, 250);
  when.onChange(debounced);
  refresh();
  return { element };
}
