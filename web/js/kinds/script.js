// The script kind in the console: the uploaded script, its interpreter, arguments, environment
// and timeout, and how a task shows it.

import { restrictOptions } from '../capabilities.js';
import { field, h, setFieldError } from '../dom.js';
import {
  envOf,
  environmentFields,
  linesField,
  select,
  storedFileName,
  timeoutField,
  toNumber,
  uploadPart,
  withoutName,
} from './fields.js';

const INTERPRETERS = [
  ['', 'Its own #! line'],
  ['bash', 'bash'],
  ['sh', 'sh'],
  ['zsh', 'zsh'],
  ['python3', 'python3'],
];

function fields(initial, { upload, prefix }) {
  const script = uploadPart(initial, upload, {
    label: 'Script',
    missing: 'Choose the script to run.',
  });
  const interpreter = field({
    label: 'Run with',
    input: select(INTERPRETERS, initial.interpreter ?? ''),
  });
  const interpreterNote = h('p', { class: 'capability-note', role: 'status', hidden: true });
  const timeout = timeoutField(initial, 300);
  const args = linesField({
    label: 'Arguments',
    hint: 'One a line, passed as they are',
    placeholder: '--verbose',
    lines: initial.args ?? [],
  });
  const { env, workingDir } = environmentFields(initial);
  return {
    element: h(
      'div',
      { class: 'payload' },
      script.elements,
      h('div', { class: 'row' }, interpreter.wrapper, timeout.wrapper),
      interpreterNote,
      args.wrapper,
      env.wrapper,
      workingDir.wrapper,
    ),
    errors: [
      [`${prefix}.file_id`, script.target],
      [`${prefix}.interpreter`, interpreter],
      [`${prefix}.timeout_seconds`, timeout],
      [`${prefix}.args`, args],
      [`${prefix}.env`, env],
      [`${prefix}.working_dir`, workingDir],
      [prefix, args],
      ['task_payload', args],
    ],
    value: () => ({
      script_payload: {
        ...withoutName(initial),
        file_id: script.fileId(),
        args: args.lines(),
        env: envOf(env) ?? {},
        interpreter: interpreter.input.value || null,
        working_dir: workingDir.input.value.trim() || null,
        timeout_seconds: toNumber(timeout.input.value),
      },
    }),
    validate() {
      setFieldError(env.error, env.input, '');
      const ok = script.validate();
      return envOf(env) !== null && ok;
    },
    prepare: script.prepare,
    setTargets: (devices) =>
      restrictOptions(interpreter.input, interpreterNote, devices, 'shells', 'interpreter'),
    summary: () => [script.fileName() || 'script', ...args.lines()].join(' '),
    fileName: script.fileName,
  };
}

function describe({ file_id: fileId, args, interpreter, timeout_seconds: timeout }) {
  return h(
    'span',
    {},
    interpreter ? `${interpreter} ` : '',
    'script ',
    storedFileName(fileId),
    args.length ? h('code', { class: 'inline-code', text: ` ${args.join(' ')}` }) : null,
    h('span', { class: 'muted', text: ` (timeout ${timeout} s)` }),
  );
}

export default {
  type: 'script',
  label: 'Script',
  blurb: 'Upload a script and run it with arguments.',
  payloadKey: 'script_payload',
  icon: '<path d="M8 3h8l4 4v14H8z"/><path d="M4 14l3-2.5L4 9M10 15h6"/>',
  upload: true,
  fields,
  describe,
};
