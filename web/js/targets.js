// The device and group picker (dashboard, scheduling modal, group editor): search, online and
// offline shown, selections kept while the registry refreshes underneath.

import { offlineAmong, offlineWords, resolveTargets, someIds } from './capabilities.js';
import { h, keepingFocus, replaceChildren, setFieldError, uid } from './dom.js';
import { fleet } from './fleet.js';
import { plural } from './format.js';

export function targetPicker({
  deviceIds = [],
  groupIds = [],
  withGroups = true,
  legend = 'Targets',
  onChange = () => {},
} = {}) {
  const devices = new Set(deviceIds);
  const groups = new Set(groupIds.map(Number));
  const prefix = uid('targets');
  let snapshot = fleet.snapshot();

  const search = h('input', {
    type: 'search',
    class: 'input',
    id: `${prefix}-search`,
    placeholder: withGroups ? 'Search devices and groups' : 'Search devices',
    autocomplete: 'off',
  });
  const summary = h('p', { class: 'pick-summary', 'aria-live': 'polite' });
  // Chosen devices that are offline (by themselves or in a chosen group), said in words.
  const offlineNote = h('p', { class: 'offline-warning', role: 'status', hidden: true });
  const listeners = new Set([onChange]);
  const deviceList = h('ul', { class: 'pick-list', 'aria-label': 'Devices' });
  const groupList = h('ul', { class: 'pick-list', 'aria-label': 'Groups' });
  const error = h('p', { class: 'field-error', hidden: true, role: 'alert' });
  const loadError = h('p', { class: 'field-error', hidden: true });
  const allOnline = h('button', {
    type: 'button',
    class: 'button ghost small',
    text: 'All online',
    onclick: () => {
      for (const device of snapshot.devices) if (device.online) devices.add(device.id);
      changed();
    },
  });
  const clear = h('button', {
    type: 'button',
    class: 'button ghost small',
    text: 'Clear',
    onclick: () => {
      devices.clear();
      groups.clear();
      changed();
    },
  });

  const element = h(
    'fieldset',
    { class: 'targets' },
    h('legend', { text: legend }),
    h(
      'div',
      { class: 'targets-toolbar' },
      h('label', { class: 'visually-hidden', for: search.id, text: 'Search targets' }),
      search,
      allOnline,
      clear,
    ),
    summary,
    offlineNote,
    loadError,
    h(
      'div',
      { class: withGroups ? 'pick-columns' : 'pick-columns single' },
      h(
        'div',
        { class: 'pick-block' },
        h('h3', { class: 'pick-heading', text: 'Devices' }),
        deviceList,
      ),
      withGroups
        ? h(
            'div',
            { class: 'pick-block' },
            h('h3', { class: 'pick-heading', text: 'Groups' }),
            groupList,
          )
        : null,
    ),
    error,
  );

  function matches(...texts) {
    const needle = search.value.trim().toLowerCase();
    return (
      !needle ||
      texts.some((text) =>
        String(text ?? '')
          .toLowerCase()
          .includes(needle),
      )
    );
  }

  function checkbox(set, value, key) {
    return h('input', {
      type: 'checkbox',
      checked: set.has(value),
      dataset: { focusKey: `${prefix}-${key}` },
      onchange: (event) => {
        if (event.target.checked) set.add(value);
        else set.delete(value);
        changed();
      },
    });
  }

  function deviceRows() {
    const known = new Map(snapshot.devices.map((device) => [device.id, device]));
    const unknown = [...devices]
      .filter((id) => !known.has(id))
      .map((id) => ({ id, unknown: true }));
    const rows = [...snapshot.devices, ...unknown]
      .filter((device) =>
        matches(device.id, device.hostname, ...Object.values(device.labels ?? {})),
      )
      .map((device) =>
        h(
          'li',
          {},
          h(
            'label',
            { class: 'pick-item' },
            checkbox(devices, device.id, `device-${device.id}`),
            h('span', { class: 'pick-name', text: device.id }),
            h('span', {
              class: 'pick-sub',
              text: device.unknown ? 'not registered yet' : device.hostname,
            }),
            stateBadge(device),
          ),
        ),
      );
    const empty =
      snapshot.devices.length === 0 ? 'No device has registered yet.' : 'No device matches.';
    return rows.length ? rows : [h('li', { class: 'pick-empty', text: empty })];
  }

  function groupRows() {
    const rows = snapshot.groups
      .filter((group) => matches(group.name, ...group.device_ids))
      .map((group) => {
        const online = group.device_ids.filter((id) => fleet.device(id)?.online).length;
        return h(
          'li',
          {},
          h(
            'label',
            { class: 'pick-item' },
            checkbox(groups, group.id, `group-${group.id}`),
            h('span', { class: 'pick-name', text: group.name }),
            h('span', {
              class: 'pick-sub',
              text: `${plural(group.device_ids.length, 'device')}, ${online} online`,
            }),
          ),
        );
      });
    const empty = snapshot.groups.length === 0 ? 'No group yet.' : 'No group matches.';
    return rows.length ? rows : [h('li', { class: 'pick-empty', text: empty })];
  }

  function resolvedCount() {
    const all = new Set(devices);
    for (const id of groups)
      for (const member of fleet.group(id)?.device_ids ?? []) all.add(member);
    return all.size;
  }

  function render() {
    keepingFocus(() => {
      replaceChildren(deviceList, deviceRows());
      if (withGroups) replaceChildren(groupList, groupRows());
    });
    const parts = [plural(devices.size, 'device')];
    if (withGroups) parts.push(plural(groups.size, 'group'));
    const total = withGroups && groups.size ? ` (${plural(resolvedCount(), 'device')} in all)` : '';
    summary.textContent = `${parts.join(' and ')} selected${total}`;
    const offline = offlineAmong(resolveTargets(value()));
    offlineNote.hidden = offline.length === 0;
    offlineNote.textContent = offlineWarning(offline);
    loadError.hidden = !snapshot.error;
    loadError.textContent = snapshot.error
      ? `Devices could not be loaded: ${snapshot.error.message}`
      : '';
  }

  function changed() {
    setFieldError(error, null, '');
    render();
    for (const listener of listeners) listener(value());
  }

  function value() {
    return { device_ids: [...devices], group_ids: [...groups] };
  }

  search.addEventListener('input', render);
  const unwatch = fleet.watch((next) => {
    snapshot = next;
    render();
    // Devices' state and capabilities changed under the same choice.
    for (const listener of listeners) listener(value());
  });
  render();

  return {
    element,
    value,
    setError: (message) => setFieldError(error, null, message),
    focus: () => search.focus(),
    /** listener(value) on every change of the choice, and of the devices under it. */
    subscribe: (listener) => {
      listeners.add(listener);
      listener(value());
      return () => listeners.delete(listener);
    },
    destroy: unwatch,
  };
}

/** "local-3 is offline for 3 min: it gets the job only if it comes back within …". */
export function offlineWarning(offline) {
  if (offline.length === 0) return '';
  const then = ' back within the run’s offline wait; with none,';
  if (offline.length === 1) {
    const [device] = offline;
    return `${device.id} is ${offlineWords(device)}: it gets the job only if it comes${then} it is unreachable at once.`;
  }
  const ids = someIds(offline.map((device) => device.id));
  return `${ids} are offline: they get the job only if they come${then} they are unreachable at once.`;
}

/** "online" / "offline for 3 min" with a dot; the words are there for those who cannot see
 * colours. */
export function stateBadge(device) {
  if (device.unknown) return h('span', { class: 'state state-unknown', text: 'unknown' });
  const state = device.online ? 'online' : 'offline';
  return h('span', {
    class: `state state-${state}`,
    text: device.online ? state : offlineWords(device),
    title: device.last_seen ? `last heartbeat ${new Date(device.last_seen).toString()}` : '',
  });
}
