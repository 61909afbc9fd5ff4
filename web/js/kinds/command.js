// The command kind in the console: its form (command, shell, timeout) and how a task shows it.

import { restrictOptions } from '../capabilities.js';
import { field, h, setFieldError } from '../dom.js';
import { envOf, environmentFields, pairs, select, timeoutField, toNumber } from './fields.js';

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
  const shellNote = h('p', { class: 'capability-note', role: 'status', hidden: true });
  const timeout = timeoutField(initial, 300);
  const { env, workingDir } = environmentFields(initial);
  const more = h(
    'details',
    { class: 'more-fields', open: Boolean(initial.working_dir || Object.keys(initial.env ?? {}).length) },
    h('summary', { text: 'Environment and working directory' }),
    env.wrapper,
    workingDir.wrapper,
  );
  return {
    element: h(
      'div',
      { class: 'payload' },
      command.wrapper,
      h('div', { class: 'row' }, shell.wrapper, timeout.wrapper),
      shellNote,
      more,
    ),
    errors: [
      [`${prefix}.command`, command],
      [`${prefix}.shell`, shell],
      [`${prefix}.timeout_seconds`, timeout],
      [`${prefix}.env`, env],
      [`${prefix}.working_dir`, workingDir],
      [prefix, command],
      ['task_payload', command],
    ],
    value: () => {
      const payload = {
        ...initial,
        command: command.input.value,
        shell: shell.input.value,
        timeout_seconds: toNumber(timeout.input.value),
      };
      // Left out when empty and never set, so an edit that touched neither changes nothing.
      const variables = envOf(env) ?? {};
      if (Object.keys(variables).length || 'env' in initial) payload.env = variables;
      const directory = workingDir.input.value.trim() || null;
      if (directory || initial.working_dir) payload.working_dir = directory;
      return { command_payload: payload };
    },
    validate() {
      const missing = !command.input.value.trim();
      setFieldError(command.error, command.input, missing ? 'Enter a command to run.' : '');
      setFieldError(env.error, env.input, '');
      const envOk = envOf(env) !== null;
      if (!envOk) more.open = true;
      return !missing && envOk;
    },
    prepare: async () => true,
    /** Offers only the shells every one of these devices has (those that said). */
    setTargets: (devices) => restrictOptions(shell.input, shellNote, devices, 'shells'),
    summary: () => command.input.value.trim().split('\n')[0],
  };
}

function describe({ command, shell, timeout_seconds: timeout, env = {}, working_dir: dir }) {
  const names = Object.keys(env ?? {});
  const extra = [
    dir ? `in ${dir}` : '',
    names.length ? `with ${names.join(', ')} set` : '',
  ].filter(Boolean);
  return h(
    'span',
    {},
    h('code', { class: 'inline-code', text: command }),
    h('span', {
      class: 'muted',
      text: ` (${[shell, `timeout ${timeout} s`, ...extra].join(', ')})`,
    }),
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
