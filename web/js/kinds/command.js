// The command kind in the console: its form (command, shell, timeout) and how a task shows it.

import { field, h, setFieldError } from '../dom.js';
import { pairs, select, timeoutField, toNumber } from './fields.js';

const SHELLS = ['bash', 'sh', 'zsh', 'python3', 'pwsh', 'powershell', 'cmd'];

function fields(initial, { prefix }) {
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
  const timeout = timeoutField(initial, 300);
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

function describe({ command, shell, timeout_seconds: timeout }) {
  return h(
    'span',
    {},
    h('code', { class: 'inline-code', text: command }),
    h('span', { class: 'muted', text: ` (${shell}, timeout ${timeout} s)` }),
  );
}

export default {
  type: 'command',
  label: 'Command',
  blurb: 'Run a shell command on the targets.',
  payloadKey: 'command_payload',
  icon: '<path d="M4 17l6-5-6-5M12 19h8"/>',
  upload: false,
  fields,
  describe,
};
