// What the chosen targets can run (each agent announces its shells, package managers, OS and
// architecture), and how long a device has been offline, in words.

import { fleet } from './fleet.js';

/** The devices a choice of targets comes to: its devices, then its groups' members, once each
 * (a device the registry does not know is {id, unknown: true}). */
export function resolveTargets({ device_ids: deviceIds = [], group_ids: groupIds = [] }) {
  const ids = new Set(deviceIds);
  for (const id of groupIds) for (const member of fleet.group(id)?.device_ids ?? []) ids.add(member);
  return [...ids].map((id) => fleet.device(id) ?? { id, unknown: true });
}

/** Whether the device said what it can run (agents older than capabilities did not). */
export const announced = (device) => Boolean(device.capabilities?.shells);

/** The ids of the devices that announced their shells without this one. */
export function lacking(devices, key, value) {
  return devices
    .filter((device) => announced(device) && !(device.capabilities[key] ?? []).includes(value))
    .map((device) => device.id);
}

/** "local-1, local-2 and 3 more". */
export function someIds(ids, shown = 3) {
  if (ids.length <= shown) return ids.join(', ');
  return `${ids.slice(0, shown).join(', ')} and ${ids.length - shown} more`;
}

/**
 * Offers in `select` only what every target has: an option some target lacks is disabled and
 * says which ("zsh — not on local-2"); `note` says it in a sentence. A choice that became
 * unavailable moves to the first available one, and the note says so.
 */
export function restrictOptions(select, note, devices, key, what = 'shell') {
  const missing = new Map();
  for (const option of select.options) {
    option.dataset.label ??= option.textContent;
    // An empty value ("its own #! line") needs nothing of the device.
    const ids = option.value ? lacking(devices, key, option.value) : [];
    option.disabled = ids.length > 0;
    option.textContent = ids.length
      ? `${option.dataset.label} — not on ${someIds(ids, 2)}`
      : option.dataset.label;
    if (ids.length) missing.set(option.value, ids);
  }
  let moved = '';
  if (select.selectedOptions[0]?.disabled) {
    moved = select.value;
    const first = [...select.options].find((option) => !option.disabled);
    if (first) select.value = first.value;
  }
  if (missing.size === 0) {
    note.hidden = true;
    note.textContent = '';
    return;
  }
  const lines = [...missing].map(([value, ids]) => `${value} (not on ${someIds(ids)})`);
  note.hidden = false;
  note.textContent =
    `${moved ? `${moved} is not on every target, so ${select.value} is chosen. ` : ''}` +
    `Only the ${what}s every target has are offered; not on every target: ${lines.join('; ')}.`;
}

/** "bash, sh, python3 · apt, pip · linux x86_64", or null if the agent announced nothing. */
export function capabilityWords(device) {
  if (!announced(device)) return null;
  const { shells = [], package_managers: managers = [], os = '', arch = '' } = device.capabilities;
  return {
    shells: shells.join(', ') || 'no shell',
    managers: managers.join(', ') || 'no package manager',
    platform: [os, arch].filter(Boolean).join(' '),
  };
}

/** "3 min", "40 s", "2 h 5 min", "4 days": how long since `iso`. */
export function sinceWords(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.floor((now - new Date(iso).getTime()) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) {
    const hours = Math.floor(seconds / 3600);
    const minutes = Math.floor((seconds % 3600) / 60);
    return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  }
  const days = Math.floor(seconds / 86400);
  return `${days} ${days === 1 ? 'day' : 'days'}`;
}

/** "offline for 3 min" (never heard: "offline"). */
export function offlineWords(device) {
  return device.last_seen ? `offline for ${sinceWords(device.last_seen)}` : 'offline';
}

/** The offline devices among these. */
export const offlineAmong = (devices) => devices.filter((device) => !device.unknown && !device.online);
