// Times, durations, sizes and labels, in the browser's locale.

export const browserTimeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const formatters = new Map();
function formatter(timeZone, withZone) {
  const key = `${timeZone ?? ''}|${withZone}`;
  if (!formatters.has(key)) {
    formatters.set(
      key,
      new Intl.DateTimeFormat(undefined, {
        weekday: 'short',
        day: 'numeric',
        month: 'short',
        year: 'numeric',
        hour: '2-digit',
        minute: '2-digit',
        hourCycle: 'h23',
        timeZone: timeZone || undefined,
        timeZoneName: withZone ? 'short' : undefined,
      }),
    );
  }
  return formatters.get(key);
}

/** "Mon, 30 Nov 2026, 08:00" in the browser's zone (or the one given, with its name). */
export function formatInstant(iso, timeZone = null) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  try {
    return formatter(timeZone, Boolean(timeZone)).format(date);
  } catch {
    return formatter(null, false).format(date);
  }
}

/** "in 3 h", "5 min ago", "just now". */
export function relativeTime(iso, now = Date.now()) {
  if (!iso) return '';
  const seconds = Math.round((new Date(iso).getTime() - now) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 5) return 'just now';
  const units = [
    [86400 * 365, 'year'],
    [86400 * 30, 'month'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  const [size, unit] = units.find(([unitSize]) => abs >= unitSize);
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });
  return rtf.format(Math.trunc(seconds / size), unit);
}

/** "1.2 s", "3 min 4 s". */
export function duration(fromIso, toIso) {
  if (!fromIso || !toIso) return '';
  const ms = new Date(toIso) - new Date(fromIso);
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds % 60)} s`;
}

export function fileSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes;
  let unit = 'B';
  for (const next of units) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(1)} ${unit}`;
}

export const STATUSES = ['pending', 'running', 'paused', 'completed', 'failed'];

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}
