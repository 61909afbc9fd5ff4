// A task's schedule in words: "Weekdays at 08:00, 12:00, 18:00 Europe/Berlin".

import { formatInstant } from './format.js';

const DAY_SHORT = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const DAY_LONG = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const MONDAY_FIRST = [1, 2, 3, 4, 5, 6, 0];

export function describeSchedule(type, config = {}) {
  const zone = config.timezone || 'UTC';
  switch (type) {
    case 'once':
      return `Once, on ${onceWords(config.run_at, zone)} ${zone}`;
    case 'daily':
      return `Every day at ${clock(config.time)} ${zone}`;
    case 'weekly':
      return `${daysWords(config.days ?? [])} at ${clock(config.time)} ${zone}`;
    case 'monthly':
      return `${monthlyWords(config.day_of_month)} at ${clock(config.time)} ${zone}`;
    case 'custom':
      return `${cronWords(config.cron ?? '')} ${zone}`;
    case 'interval':
      return intervalWords(config.every_seconds, config.start_at);
    default:
      return type;
  }
}

/** "08:00" from "08:00" or "08:00:00"; seconds only when they matter. */
export function clock(time) {
  if (!time) return '?';
  const [hours, minutes = '00', seconds = '00'] = String(time).split(':');
  const base = `${hours.padStart(2, '0')}:${minutes.padStart(2, '0')}`;
  return seconds === '00' ? base : `${base}:${seconds}`;
}

export function ordinal(n) {
  const rest = n % 100;
  if (rest >= 11 && rest <= 13) return `${n}th`;
  return `${n}${{ 1: 'st', 2: 'nd', 3: 'rd' }[n % 10] ?? 'th'}`;
}

/** days 0..7 (0 and 7 are Sunday) → "Weekdays", "Weekends", "Every day", "Mon–Thu", ... */
export function daysWords(days) {
  const set = new Set(days.map((day) => Number(day) % 7));
  const ordered = MONDAY_FIRST.filter((day) => set.has(day));
  if (ordered.length === 0) return 'On no day';
  if (ordered.length === 7) return 'Every day';
  if (ordered.length === 5 && !set.has(0) && !set.has(6)) return 'Weekdays';
  if (ordered.length === 2 && set.has(0) && set.has(6)) return 'Weekends';
  if (ordered.length === 1) return `Every ${DAY_LONG[ordered[0]]}`;
  const positions = ordered.map((day) => MONDAY_FIRST.indexOf(day));
  const consecutive = positions.every(
    (pos, index) => index === 0 || pos === positions[index - 1] + 1,
  );
  if (consecutive && ordered.length >= 3) {
    return `${DAY_SHORT[ordered[0]]}–${DAY_SHORT[ordered.at(-1)]}`;
  }
  return `Every ${ordered.map((day) => DAY_SHORT[day]).join(', ')}`;
}

function monthlyWords(day) {
  const n = Number(day);
  if (!Number.isInteger(n)) return 'Monthly';
  const suffix = n >= 29 ? ' (or the month’s last day)' : '';
  return `Monthly on the ${ordinal(n)}${suffix}`;
}

/** Every N seconds in the largest whole unit: "Every 5 minutes", "Every day". */
export function intervalWords(seconds, startAt = null) {
  const n = Number(seconds);
  if (!Number.isFinite(n) || n <= 0) return 'At an interval';
  const units = [
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  const [size, unit] = units.find(([unitSize]) => n % unitSize === 0);
  const count = n / size;
  const words = count === 1 ? `Every ${unit}` : `Every ${count} ${unit}s`;
  return startAt ? `${words}, from ${formatInstant(startAt)}` : words;
}

/** run_at with an offset is an instant (shown in zone); without one it is wall time in zone. */
function onceWords(runAt, zone) {
  if (!runAt) return '?';
  const hasOffset = /(Z|[+-]\d\d:?\d\d)$/i.test(runAt);
  let date;
  let shownZone = zone;
  if (hasOffset) {
    date = new Date(runAt);
  } else {
    const match = /^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d))?/.exec(runAt);
    if (!match) return runAt;
    const [, y, mo, d, hh, mm, ss = '0'] = match.map((part) => part ?? '0');
    date = new Date(Date.UTC(+y, +mo - 1, +d, +hh, +mm, +ss));
    shownZone = 'UTC'; // the numbers already are the zone's wall clock
  }
  if (Number.isNaN(date.getTime())) return runAt;
  try {
    const parts = new Intl.DateTimeFormat('en-GB', {
      weekday: 'short',
      day: 'numeric',
      month: 'short',
      year: 'numeric',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
      timeZone: shownZone,
    }).formatToParts(date);
    const get = (type) => parts.find((part) => part.type === type)?.value ?? '';
    return `${get('weekday')} ${get('day')} ${get('month')} ${get('year')} at ${get('hour')}:${get('minute')}`;
  } catch {
    return runAt;
  }
}

// --- cron ----------------------------------------------------------------------------------------

const NAMES = {
  sun: 0,
  mon: 1,
  tue: 2,
  wed: 3,
  thu: 4,
  fri: 5,
  sat: 6,
  jan: 1,
  feb: 2,
  mar: 3,
  apr: 4,
  may: 5,
  jun: 6,
  jul: 7,
  aug: 8,
  sep: 9,
  oct: 10,
  nov: 11,
  dec: 12,
};

/** The values of one cron field, sorted, or null when it uses syntax this does not read. */
export function expandField(text, min, max) {
  const values = new Set();
  for (const part of text.split(',')) {
    const match = /^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:\/(\d+))?$/i.exec(part);
    if (!match) return null;
    const [, range, stepText] = match;
    const step = stepText ? Number(stepText) : 1;
    let [from, to] = [min, max];
    if (range !== '*') {
      const [a, b] = range.split('-').map((token) => NAMES[token.toLowerCase()] ?? Number(token));
      if (!Number.isInteger(a) || (b !== undefined && !Number.isInteger(b))) return null;
      from = a;
      to = b ?? (stepText ? max : a);
    }
    if (step < 1 || from < min || to > max || from > to) return null;
    for (let value = from; value <= to; value += step) values.add(value);
  }
  return [...values].sort((a, b) => a - b);
}

const stepOf = (text) => /^\*\/(\d+)$/.exec(text)?.[1];

function cronTimes(minute, hour) {
  const minuteStep = stepOf(minute);
  const hourStep = stepOf(hour);
  const minutes = expandField(minute, 0, 59);
  const hours = expandField(hour, 0, 23);
  if (!minutes || !hours) return null;
  const pad = (n) => String(n).padStart(2, '0');
  if (minute === '*' && hour === '*') return { frequent: 'every minute' };
  if (minuteStep && hour === '*') return { frequent: `every ${minuteStep} minutes` };
  if (minutes.length === 1 && hour === '*') {
    return { frequent: minutes[0] === 0 ? 'every hour' : `every hour at :${pad(minutes[0])}` };
  }
  if (minutes.length === 1 && hourStep) {
    const at = minutes[0] === 0 ? '' : ` at :${pad(minutes[0])}`;
    return { frequent: `every ${hourStep} hours${at}` };
  }
  if (minutes.length * hours.length > 8) return null;
  const times = hours.flatMap((h) => minutes.map((m) => `${pad(h)}:${pad(m)}`));
  return { times };
}

function cronDays(dom, dow) {
  if (dom === '*' && dow === '*') return { every: true, words: 'Every day' };
  if (dom === '*') {
    const days = expandField(dow.replace(/\b7\b/g, '0'), 0, 7);
    return days ? { words: daysWords(days) } : null;
  }
  if (dow === '*') {
    const dates = expandField(dom, 1, 31);
    if (!dates) return null;
    return { words: `Monthly on the ${dates.map(ordinal).join(', ')}` };
  }
  return null;
}

export function cronWords(expression) {
  const fields = expression.trim().split(/\s+/);
  const fallback = `Cron “${expression.trim()}”`;
  if (fields.length !== 5) return fallback;
  const [minute, hour, dom, month, dow] = fields;
  const times = cronTimes(minute, hour);
  const days = cronDays(dom, dow);
  if (!times || !days) return fallback;
  let words;
  if (times.frequent) {
    const frequent = times.frequent[0].toUpperCase() + times.frequent.slice(1);
    words = days.every ? frequent : `${frequent} (${days.words})`;
  } else {
    words = `${days.words} at ${times.times.join(', ')}`;
  }
  if (month !== '*') {
    const months = expandField(month, 1, 12);
    if (!months) return fallback;
    words += ` in ${months.map((m) => MONTHS[m - 1]).join(', ')}`;
  }
  return words;
}
