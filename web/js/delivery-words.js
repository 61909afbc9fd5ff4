// A delivery policy in words, for the run page and the scheduling modal's live sentence.

import { plural } from './format.js';

/** The delivery policy in words: "1 device first, then 10 % at a time, stop after 2 failures,
 * wait up to 1 h for offline devices". */
export function deliveryWords(delivery = {}) {
  const parts = [];
  const size = (value) =>
    typeof value === 'string' && value.endsWith('%')
      ? `${value.slice(0, -1)} %`
      : plural(Number(value), 'device');
  const waves = delivery.waves ?? [];
  if (waves.length) {
    const [first, ...rest] = waves;
    if (String(first) === '100%') parts.push('all devices at once');
    else parts.push(`${size(first)} first`);
    if (rest.length) {
      const last = rest[rest.length - 1];
      const between = rest.slice(0, -1).map(size);
      parts.push(
        `${between.length ? `then ${between.join(', then ')}, ` : ''}then ${String(last) === '100%' ? 'the rest' : `${size(last)} at a time`}`,
      );
    } else if (String(first) !== '100%') {
      parts.push(`then ${size(first)} at a time`);
    }
  }
  if (delivery.max_concurrency !== undefined && delivery.max_concurrency !== null) {
    parts.push(`at most ${size(delivery.max_concurrency)} running at once`);
  }
  if (delivery.wave_pause_seconds) {
    parts.push(`pause ${seconds(delivery.wave_pause_seconds)} between waves`);
  }
  if (delivery.max_errors !== undefined && delivery.max_errors !== null) {
    const errors = delivery.max_errors;
    parts.push(
      typeof errors === 'string' && errors.endsWith('%')
        ? `stop when more than ${errors.slice(0, -1)} % fail`
        : Number(errors) === 0
          ? 'stop at the first failure'
          : `stop after ${plural(Number(errors) + 1, 'failure')}`,
    );
  }
  if (delivery.offline_wait_seconds) {
    parts.push(`wait up to ${seconds(delivery.offline_wait_seconds)} for offline devices`);
  } else {
    parts.push('offline devices are unreachable at once');
  }
  if (!waves.length && delivery.max_concurrency == null) parts.unshift('all devices at once');
  const text = parts.join(', ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** 90 → "1 min 30 s", 3600 → "1 h". */
export function seconds(total) {
  const units = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'min'],
    [1, 's'],
  ];
  const out = [];
  let rest = Math.round(Number(total));
  for (const [size, name] of units) {
    if (rest >= size) {
      out.push(`${Math.floor(rest / size)} ${name}`);
      rest %= size;
    }
  }
  return out.join(' ') || '0 s';
}
