// Times, durations, sizes and labels, in the browser's locale; times in the zone the user
// chose (the browser's by default), always with the zone's name.

// Chromium's Intl names some zones by their old names (CLDR keeps them); the API and the
// tz database take the current ones, so the console shows and sends those.
const CURRENT_NAMES = {
  'Africa/Asmera': 'Africa/Asmara',
  'America/Buenos_Aires': 'America/Argentina/Buenos_Aires',
  'America/Catamarca': 'America/Argentina/Catamarca',
  'America/Coral_Harbour': 'America/Atikokan',
  'America/Cordoba': 'America/Argentina/Cordoba',
  'America/Godthab': 'America/Nuuk',
  'America/Indianapolis': 'America/Indiana/Indianapolis',
  'America/Jujuy': 'America/Argentina/Jujuy',
  'America/Louisville': 'America/Kentucky/Louisville',
  'America/Mendoza': 'America/Argentina/Mendoza',
  'Asia/Calcutta': 'Asia/Kolkata',
  'Asia/Katmandu': 'Asia/Kathmandu',
  'Asia/Rangoon': 'Asia/Yangon',
  'Asia/Saigon': 'Asia/Ho_Chi_Minh',
  'Atlantic/Faeroe': 'Atlantic/Faroe',
  'Europe/Kiev': 'Europe/Kyiv',
  'Pacific/Enderbury': 'Pacific/Kanton',
  'Pacific/Ponape': 'Pacific/Pohnpei',
  'Pacific/Truk': 'Pacific/Chuuk',
};

/** The current IANA name of a zone ("Asia/Calcutta" → "Asia/Kolkata"). */
export const currentZoneName = (zone) => CURRENT_NAMES[zone] ?? zone;

export const browserTimeZone = () =>
  currentZoneName(Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');

/** Every zone the browser knows, by its current name, sorted. */
export function allTimeZones() {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf('timeZone');
  } catch {
    zones = [];
  }
  return [...new Set(['UTC', ...zones.map(currentZoneName)])].sort();
}

function isZone(zone) {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

// --- the user's display zone: "browser" (the default), "UTC" or an IANA name ------------------

const ZONE_KEY = 'deployx.timeZone';

/** What the user chose: "browser", "UTC" or an IANA name. */
export function zoneSetting() {
  let chosen = null;
  try {
    chosen = localStorage.getItem(ZONE_KEY);
  } catch {
    chosen = null;
  }
  return chosen && (chosen === 'browser' || isZone(chosen)) ? chosen : 'browser';
}

/** The zone every time of the console is shown in. */
export function displayZone() {
  const chosen = zoneSetting();
  return chosen === 'browser' ? browserTimeZone() : chosen;
}

/** Remembers the choice and tells the screens (the `deployx:zone` event). */
export function setZoneSetting(value) {
  try {
    if (value === 'browser') localStorage.removeItem(ZONE_KEY);
    else localStorage.setItem(ZONE_KEY, value);
  } catch {
    // Storage refused (private mode): the choice lasts until the page is left.
  }
  window.dispatchEvent(new CustomEvent('deployx:zone', { detail: displayZone() }));
}

const formatters = new Map();
function formatter(timeZone, seconds) {
  const key = `${timeZone}|${seconds}`;
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
        second: seconds ? '2-digit' : undefined,
        hourCycle: 'h23',
        timeZone,
        timeZoneName: 'short',
      }),
    );
  }
  return formatters.get(key);
}

/** "Mon, 30 Nov 2026, 08:00 CET": always with its zone; in the display zone unless told
 * another; with seconds when asked. */
export function formatInstant(iso, { zone = displayZone(), seconds = false } = {}) {
  if (!iso) return '—';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  try {
    return formatter(zone, seconds).format(date);
  } catch {
    return formatter('UTC', seconds).format(date);
  }
}

/** The wall clock of an instant in another zone, for beside a time in the display zone:
 * "08:15 America/New_York", or "Mon 08:15 America/New_York" when the day differs. */
export function wallClockIn(iso, zone, shownZone = displayZone()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return '';
  try {
    const day = (timeZone) => date.toLocaleDateString('en-CA', { timeZone });
    const clock = date.toLocaleTimeString(undefined, {
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
      timeZone: zone,
    });
    const weekday = date.toLocaleDateString(undefined, { weekday: 'short', timeZone: zone });
    return `${day(zone) === day(shownZone) ? '' : `${weekday} `}${clock} ${zone}`;
  } catch {
    return '';
  }
}

/** Whether two zones show the same wall clock at this instant (then one label is enough). */
export function sameWallClock(iso, zoneA, zoneB) {
  if (currentZoneName(zoneA) === currentZoneName(zoneB)) return true;
  const date = new Date(iso);
  const read = (timeZone) => date.toLocaleString('en-CA', { timeZone, hourCycle: 'h23' });
  try {
    return read(zoneA) === read(zoneB);
  } catch {
    return false;
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
