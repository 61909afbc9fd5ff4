// What an edit of a task changed, in words: "Schedule: Every day at 02:00 UTC → Every Monday
// at 03:00 UTC", from the history's `changes` ({field, old, new} per changed field).

import { deliveryWords } from './delivery-words.js';
import { formatInstant, plural } from './format.js';
import { describePayload } from './kinds/index.js';
import { describeSchedule } from './schedule-words.js';

const LABELS = {
  name: 'Name',
  description: 'Description',
  schedule: 'Schedule',
  device_ids: 'Devices',
  group_ids: 'Groups',
  task_payload: 'What it runs',
  misfire_grace_seconds: 'Misfire grace',
  jitter_seconds: 'Jitter',
  overlap_policy: 'Overlap',
  delivery: 'Delivery',
  end_at: 'Ends',
  max_runs: 'Run limit',
  pause_on_failure: 'On failure',
};
const OVERLAP = { skip: 'skip a run while one runs', allow: 'let runs overlap' };
const UNITS = [
  [86400, 'day'],
  [3600, 'hour'],
  [60, 'minute'],
  [1, 'second'],
];

/** 3600 → "1 hour", 90 → "90 seconds", 0 → "none". */
export function secondsWords(seconds) {
  const n = Number(seconds);
  if (!Number.isFinite(n) || n <= 0) return 'none';
  const [size, unit] = UNITS.find(([unitSize]) => n % unitSize === 0);
  return plural(n / size, unit);
}

function valueWords(field, value, { taskType, groupName }) {
  if (value === null || value === undefined) {
    return { end_at: 'no end', max_runs: 'no limit' }[field] ?? 'none';
  }
  switch (field) {
    case 'name':
      return `“${value}”`;
    case 'description':
      return value ? `“${value}”` : 'none';
    case 'device_ids':
      return value.length ? value.join(', ') : 'none';
    case 'group_ids':
      return value.length ? value.map(groupName).join(', ') : 'none';
    case 'task_payload': {
      const words = describePayload(taskType, value);
      return typeof words === 'string' ? words : words.textContent;
    }
    case 'misfire_grace_seconds':
    case 'jitter_seconds':
      return secondsWords(value);
    case 'overlap_policy':
      return OVERLAP[value] ?? value;
    case 'delivery':
      return deliveryWords(value);
    case 'end_at':
      return formatInstant(value, { seconds: true });
    case 'max_runs':
      return `after ${plural(value, 'run')}`;
    case 'pause_on_failure':
      return value ? 'pause the task' : 'keep to the schedule';
    default:
      return JSON.stringify(value);
  }
}

/**
 * The lines of one edit: [{field, label, old, new}] in words. `before` is the task as it was
 * before this edit ({task_type, recurrence_type, recurrence_config}): a schedule is only
 * words with its type and its config together, and one edit may change only one of them.
 */
export function changeLines(changes, before, { groupName = (id) => `group #${id}` } = {}) {
  const byField = Object.fromEntries(changes.map((change) => [change.field, change]));
  const context = { taskType: before.task_type, groupName };
  const lines = [];
  if (byField.recurrence_type || byField.recurrence_config) {
    const oldType = byField.recurrence_type?.old ?? before.recurrence_type;
    const newType = byField.recurrence_type?.new ?? before.recurrence_type;
    const oldConfig = byField.recurrence_config?.old ?? before.recurrence_config;
    const newConfig = byField.recurrence_config?.new ?? before.recurrence_config;
    lines.push({
      field: 'schedule',
      label: LABELS.schedule,
      old: describeSchedule(oldType, oldConfig ?? {}),
      new: describeSchedule(newType, newConfig ?? {}),
    });
  }
  for (const change of changes) {
    if (change.field === 'recurrence_type' || change.field === 'recurrence_config') continue;
    lines.push({
      field: change.field,
      label: LABELS[change.field] ?? change.field,
      old: valueWords(change.field, change.old, context),
      new: valueWords(change.field, change.new, context),
    });
  }
  return lines;
}

/** The task after an edit, for the next edit's `before`. */
export function afterEdit(before, changes) {
  const after = { ...before };
  for (const change of changes) after[change.field] = change.new;
  return after;
}
