// What a task runs, per type: the fields of command_payload, software_payload or file_payload.
// Used by the dashboard panels and by the scheduling modal.

import { api } from './api.js';
import { field, h, setFieldError, uid } from './dom.js';
import { fileSize } from './format.js';

const SHELLS = ['bash', 'sh', 'zsh', 'python3', 'pwsh', 'powershell', 'cmd'];
const ACTIONS = ['install', 'upgrade', 'uninstall'];
const MANAGERS = [
  ['', 'Automatic'],
  ['apt', 'apt'],
  ['dnf', 'dnf'],
  ['pip', 'pip'],
];

export const PAYLOAD_KEY = {
  command: 'command_payload',
  software_deployment: 'software_payload',
  file_deployment: 'file_payload',
};

function select(options, value) {
  return h(
    'select',
    { class: 'input' },
    options.map(([optionValue, label]) =>
      h('option', { value: optionValue, selected: optionValue === (value ?? ''), text: label }),
    ),
  );
}

const pairs = (values) => values.map((value) => [value, value]);

/**
 * payloadFields('command', {command: 'uptime'}) → {element, value(), validate(), errors, ...}.
 * `upload: true` gives the file type a file chooser that uploads (with a progress bar) on
 * prepare(); without it the file already stored is shown by name.
 */
export function payloadFields(taskType, initial = {}, { upload = false } = {}) {
  const builders = {
    command: commandFields,
    software_deployment: softwareFields,
    file_deployment: fileFields,
  };
  return builders[taskType](initial, upload, `task_payload.${PAYLOAD_KEY[taskType]}`);
}

function commandFields(initial, _upload, prefix) {
  const command = field({
    label: 'Command',
    input: h('textarea', {
      class: 'input mono',
      rows: 3,
      spellcheck: 'false',
      placeholder: 'uptime && df -h /',
    }),
  });
  command.input.value = initial.command ?? '';
  const shell = field({ label: 'Shell', input: select(pairs(SHELLS), initial.shell ?? 'bash') });
  const timeout = field({
    label: 'Timeout (seconds)',
    input: h('input', { class: 'input', type: 'number', min: 1, max: 86400, inputmode: 'numeric' }),
  });
  timeout.input.value = initial.timeout_seconds ?? 300;
  return {
    element: h(
      'div',
      { class: 'payload' },
      command.wrapper,
      h('div', { class: 'row' }, shell.wrapper, timeout.wrapper),
    ),
    errors: [
      [`${prefix}.command`, command],
      [`${prefix}.shell`, shell],
      [`${prefix}.timeout_seconds`, timeout],
      [prefix, command],
      ['task_payload', command],
    ],
    value: () => ({
      command_payload: {
        ...initial,
        command: command.input.value,
        shell: shell.input.value,
        timeout_seconds: toNumber(timeout.input.value),
      },
    }),
    validate() {
      const missing = !command.input.value.trim();
      setFieldError(command.error, command.input, missing ? 'Enter a command to run.' : '');
      return !missing;
    },
    prepare: async () => true,
    summary: () => command.input.value.trim().split('\n')[0],
  };
}

function softwareFields(initial, _upload, prefix) {
  const pkg = field({
    label: 'Package',
    input: h('input', { class: 'input', type: 'text', placeholder: 'nginx', autocomplete: 'off' }),
  });
  pkg.input.value = initial.package ?? '';
  const version = field({
    label: 'Version',
    hint: 'Empty for the latest',
    input: h('input', { class: 'input', type: 'text', placeholder: 'latest', autocomplete: 'off' }),
  });
  version.input.value = initial.version ?? '';
  const action = field({
    label: 'Action',
    input: select(pairs(ACTIONS), initial.action ?? 'install'),
  });
  const manager = field({
    label: 'Package manager',
    input: select(MANAGERS, initial.manager ?? ''),
  });
  return {
    element: h(
      'div',
      { class: 'payload' },
      h('div', { class: 'row' }, pkg.wrapper, version.wrapper),
      h('div', { class: 'row' }, action.wrapper, manager.wrapper),
    ),
    errors: [
      [`${prefix}.package`, pkg],
      [`${prefix}.version`, version],
      [`${prefix}.action`, action],
      [`${prefix}.manager`, manager],
      [`${prefix}.timeout_seconds`, pkg],
      [prefix, pkg],
      ['task_payload', pkg],
    ],
    value: () => ({
      software_payload: {
        ...initial,
        package: pkg.input.value.trim(),
        version: version.input.value.trim() || null,
        action: action.input.value,
        manager: manager.input.value || null,
      },
    }),
    validate() {
      const missing = !pkg.input.value.trim();
      setFieldError(pkg.error, pkg.input, missing ? 'Enter the package to deploy.' : '');
      return !missing;
    },
    prepare: async () => true,
    summary: () => `${action.input.value} ${pkg.input.value.trim()}`,
  };
}

function fileFields(initial, upload, prefix) {
  let stored = initial.file_id ? { file_id: initial.file_id, name: initial.name ?? '' } : null;
  let storedFor = null; // the File object that `stored` was uploaded from
  const chooser = upload
    ? field({ label: 'File', input: h('input', { class: 'input', type: 'file' }) })
    : null;
  const progressId = uid('progress');
  const progress = h('progress', { max: 100, value: 0, id: progressId, hidden: true });
  const progressText = h('p', { class: 'upload-status', 'aria-live': 'polite' });
  const storedInfo = upload
    ? null
    : h(
        'p',
        { class: 'stored-file' },
        'File: ',
        h('code', { text: initial.name || initial.file_id || '—' }),
      );
  const destination = field({
    label: 'Destination path',
    input: h('input', {
      class: 'input mono',
      type: 'text',
      placeholder: '/etc/app.conf',
      autocomplete: 'off',
    }),
  });
  destination.input.value = initial.destination ?? '';
  const mode = field({
    label: 'Mode',
    input: h('input', {
      class: 'input mono',
      type: 'text',
      placeholder: '0644',
      autocomplete: 'off',
    }),
  });
  mode.input.value = initial.mode ?? '0644';
  chooser?.input.addEventListener('change', () => {
    setFieldError(chooser.error, chooser.input, '');
    const file = chooser.input.files[0];
    progress.hidden = true;
    progressText.textContent = file
      ? `${file.name}, ${fileSize(file.size)}: uploaded when you execute or schedule it.`
      : '';
  });
  const fileError = chooser?.error ?? h('p', { class: 'field-error', hidden: true });

  return {
    element: h(
      'div',
      { class: 'payload' },
      chooser?.wrapper ?? storedInfo,
      upload
        ? h(
            'div',
            { class: 'upload' },
            h('label', { class: 'visually-hidden', for: progressId, text: 'Upload progress' }),
            progress,
            progressText,
          )
        : fileError,
      h('div', { class: 'row' }, destination.wrapper, mode.wrapper),
    ),
    errors: [
      [`${prefix}.destination`, destination],
      [`${prefix}.mode`, mode],
      [`${prefix}.owner`, destination],
      [`${prefix}.file_id`, chooser ?? { input: null, error: fileError }],
      [prefix, destination],
      ['task_payload', destination],
    ],
    value: () => ({
      file_payload: {
        ...withoutName(initial),
        file_id: stored?.file_id ?? '',
        destination: destination.input.value.trim(),
        mode: mode.input.value.trim(),
      },
    }),
    validate() {
      let ok = true;
      if (chooser && !chooser.input.files[0] && !stored) {
        setFieldError(chooser.error, chooser.input, 'Choose a file to deploy.');
        ok = false;
      }
      const path = destination.input.value.trim();
      const bad = !path.startsWith('/');
      setFieldError(
        destination.error,
        destination.input,
        bad ? 'Enter an absolute path, like /etc/app.conf.' : '',
      );
      return ok && !bad;
    },
    /** Uploads the chosen file once (again only if another file is chosen). */
    async prepare() {
      const file = chooser?.input.files[0];
      if (!file || file === storedFor) return true;
      progress.hidden = false;
      progress.value = 0;
      progressText.textContent = `Uploading ${file.name}…`;
      try {
        const result = await api.upload(file, (fraction) => {
          progress.value = Math.round(fraction * 100);
          progressText.textContent = `Uploading ${file.name}… ${Math.round(fraction * 100)}%`;
        });
        stored = { ...result, name: result.name || file.name };
        storedFor = file;
        progressText.textContent = `Uploaded ${file.name} (${fileSize(result.size)}, sha256 ${result.sha256.slice(0, 12)}…)`;
        return true;
      } catch (error) {
        progress.hidden = true;
        progressText.textContent = '';
        setFieldError(chooser.error, chooser.input, error.message);
        return false;
      }
    },
    summary: () =>
      `${stored?.name || chooser?.input.files[0]?.name || 'file'} → ${destination.input.value.trim()}`,
    fileName: () => stored?.name ?? chooser?.input.files[0]?.name ?? '',
  };
}

function withoutName(payload) {
  const { name: _name, ...rest } = payload;
  return rest;
}

function toNumber(text) {
  const value = Number(text);
  return text === '' || Number.isNaN(value) ? undefined : value;
}
