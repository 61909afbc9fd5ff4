// Devices (online state and last seen, refreshed every 10 s and by live events) and device
// groups: create, rename, change members, delete.

import { api } from '../api.js';
import { capabilityWords } from '../capabilities.js';
import { confirmDialog, dialogActions, openDialog } from '../dialog.js';
import { field, h, keepingFocus, replaceChildren } from '../dom.js';
import { FieldErrors } from '../field-errors.js';
import { fleet } from '../fleet.js';
import { formatInstant, plural, relativeTime } from '../format.js';
import { stateBadge, targetPicker } from '../targets.js';
import { toast, toastError } from '../toast.js';
import { errorPanel, loading } from './common.js';

export function devicesView(container, { me }) {
  const isAdmin = me.role === 'admin';
  const deviceBox = h('div', { class: 'table-wrap' }, loading('Loading devices…'));
  const groupBox = h('div', { class: 'groups' }, loading('Loading groups…'));
  const deviceCount = h('span', { class: 'muted' });
  const newGroup = h('button', {
    type: 'button',
    class: 'button primary small',
    text: 'New group',
    disabled: !isAdmin,
    onclick: () => editGroup(null),
  });

  replaceChildren(
    container,
    h('div', { class: 'page-head' }, h('h1', { text: 'Devices and groups' })),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'devices-heading' },
      h('h2', { id: 'devices-heading' }, 'Devices ', deviceCount),
      h('p', {
        class: 'muted',
        text: 'Agents report every few seconds (5 s by default); a device that missed three reports is offline, shown here within a second or so. Each agent also says what it can run.',
      }),
      deviceBox,
    ),
    h(
      'section',
      { class: 'card', 'aria-labelledby': 'groups-heading' },
      h(
        'div',
        { class: 'section-head' },
        h('h2', { id: 'groups-heading', text: 'Groups' }),
        newGroup,
      ),
      isAdmin
        ? null
        : h('p', {
            class: 'muted',
            text: 'Only an admin may change groups, since every user shares them.',
          }),
      groupBox,
    ),
  );

  const unwatch = fleet.watch(({ devices, groups, error }) => {
    if (error && devices.length === 0) {
      replaceChildren(
        deviceBox,
        errorPanel(error, () => fleet.refresh(), 'The devices could not be loaded'),
      );
      replaceChildren(
        groupBox,
        errorPanel(error, () => fleet.refresh(), 'The groups could not be loaded'),
      );
      return;
    }
    const online = devices.filter((device) => device.online).length;
    deviceCount.textContent = `(${online} of ${devices.length} online)`;
    keepingFocus(() => {
      replaceChildren(deviceBox, devicesTable(devices));
      replaceChildren(
        groupBox,
        groups.length
          ? groups.map((group) => groupCard(group, isAdmin))
          : h('p', { class: 'muted', text: 'No group yet.' }),
      );
    });
  });

  return { destroy: unwatch };
}

function devicesTable(devices) {
  if (devices.length === 0) {
    return h('p', {
      class: 'muted',
      text: 'No device has registered yet. Start an agent: deployx agent --device-id ID.',
    });
  }
  const labels = (device) =>
    Object.entries(device.labels ?? {})
      .map(([key, value]) => `${key}=${value}`)
      .join(', ');
  return h(
    'table',
    { class: 'table devices-table' },
    h('caption', { class: 'visually-hidden', text: 'Devices' }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Device', 'State', 'Last seen', 'Hostname', 'OS', 'Agent', 'Can run', 'Labels'].map(
          (name) =>
          h('th', { scope: 'col', text: name }),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      devices.map((device) =>
        h(
          'tr',
          { dataset: { device: device.id } },
          h('th', { scope: 'row', text: device.id }),
          h('td', {}, stateBadge(device)),
          h(
            'td',
            {},
            h('time', {
              datetime: device.last_seen,
              title: formatInstant(device.last_seen),
              text: relativeTime(device.last_seen),
            }),
          ),
          h('td', { text: device.hostname }),
          h('td', { text: device.os }),
          h('td', { text: device.agent_version }),
          h('td', { class: 'can-run' }, canRun(device)),
          h('td', { class: 'muted', text: labels(device) }),
        ),
      ),
    ),
  );
}

/** Shells, package managers, OS and architecture, as the device's agent announced them. */
function canRun(device) {
  const words = capabilityWords(device);
  if (!words) return h('span', { class: 'muted', text: 'not announced (older agent)' });
  return [
    h('span', { class: 'shells', text: words.shells }),
    h('span', { class: 'muted managers', text: words.managers }),
    h('span', { class: 'muted platform', text: words.platform }),
  ];
}

function groupCard(group, isAdmin) {
  const headingId = `group-${group.id}-name`;
  return h(
    'article',
    { class: 'group-card', 'aria-labelledby': headingId, dataset: { groupId: group.id } },
    h(
      'header',
      { class: 'group-card-head' },
      h('h3', { id: headingId, text: group.name }),
      h('span', { class: 'muted', text: plural(group.device_ids.length, 'device') }),
    ),
    group.device_ids.length
      ? h(
          'ul',
          { class: 'members' },
          group.device_ids.map((id) => {
            const device = fleet.device(id) ?? { id, unknown: true };
            return h('li', { class: 'member' }, h('span', { text: id }), stateBadge(device));
          }),
        )
      : h('p', { class: 'muted', text: 'No members.' }),
    h(
      'div',
      { class: 'task-actions' },
      h('button', {
        type: 'button',
        class: 'button small',
        text: 'Edit',
        disabled: !isAdmin,
        'aria-label': `Edit group ${group.name}`,
        dataset: { focusKey: `group-${group.id}-edit` },
        onclick: () => editGroup(group),
      }),
      h('button', {
        type: 'button',
        class: 'button small danger-ghost',
        text: 'Delete',
        disabled: !isAdmin,
        'aria-label': `Delete group ${group.name}`,
        onclick: () => deleteGroup(group),
      }),
    ),
  );
}

async function deleteGroup(group) {
  // The tasks that target it, listed before anything is asked: the API refuses (409) to
  // delete a group in use unless told to (force).
  let users;
  try {
    users = (await api.listTasks({ group_id: group.id, limit: 1000 })).items;
  } catch (error) {
    toastError(error);
    return;
  }
  const inUse = users.length > 0;
  const sure = await confirmDialog({
    title: 'Delete this group?',
    message: inUse
      ? `“${group.name}” is a target of ${plural(users.length, 'task')}. Deleted, it leaves them targeting a group that no longer exists: their runs find no devices in it and fail with “no target devices”. Change those tasks first, or delete it anyway.`
      : `“${group.name}” will be deleted. No task targets it.`,
    extra: inUse
      ? h(
          'ul',
          { class: 'group-users', 'aria-label': `Tasks that target ${group.name}` },
          users.map((task) =>
            h(
              'li',
              {},
              h('a', {
                href: `#/tasks/${task.id}`,
                text: task.name,
                // Opening a task leaves the dialog: nothing is deleted.
                onclick: (event) => event.currentTarget.closest('dialog')?.close(),
              }),
            ),
          ),
        )
      : null,
    confirmLabel: inUse ? 'Delete anyway' : 'Delete group',
    danger: true,
  });
  if (!sure) return;
  try {
    await api.deleteGroup(group.id, { force: inUse });
    toast(`Deleted the group “${group.name}”.`);
    fleet.refresh();
  } catch (error) {
    toastError(error);
  }
}

/** The create/edit dialog of a group: its name and members. */
async function editGroup(group) {
  let picker = null;
  const saved = await openDialog({
    title: group ? `Edit group “${group.name}”` : 'New group',
    className: 'group-dialog',
    initialFocus: 'input[type="text"]',
    build: (close) => {
      const name = field({
        label: 'Group name',
        input: h('input', { class: 'input', type: 'text', maxlength: 200, autocomplete: 'off' }),
      });
      name.input.value = group?.name ?? '';
      picker = targetPicker({
        deviceIds: group?.device_ids ?? [],
        withGroups: false,
        legend: 'Members',
      });
      const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
      const errors = new FieldErrors()
        .add('name', name)
        .add('device_ids', { show: picker.setError, focus: picker.focus });
      const submit = h('button', {
        type: 'submit',
        class: 'button primary',
        text: group ? 'Save group' : 'Create group',
      });
      const form = h(
        'form',
        { class: 'dialog-body', novalidate: true },
        formError,
        name.wrapper,
        picker.element,
        dialogActions(close, undefined, submit),
      );
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        errors.clear();
        formError.hidden = true;
        if (!name.input.value.trim()) {
          errors.show('name', 'Give the group a name.', { focus: true });
          return;
        }
        const body = { name: name.input.value.trim(), device_ids: picker.value().device_ids };
        submit.disabled = true;
        try {
          close(group ? await api.updateGroup(group.id, body) : await api.createGroup(body));
        } catch (error) {
          submit.disabled = false;
          if (!errors.show(error.field, error.reason, { focus: true })) {
            formError.textContent = error.message;
            formError.hidden = false;
          }
        }
      });
      return form;
    },
  });
  picker?.destroy();
  if (saved) {
    toast(group ? `Saved the group “${saved.name}”.` : `Created the group “${saved.name}”.`);
    fleet.refresh();
  }
}
