// The software deployment kind in the console: package, version, action, package manager.

import { restrictOptions } from '../capabilities.js';
import { field, h, setFieldError } from '../dom.js';
import { pairs, select } from './fields.js';

const ACTIONS = ['install', 'upgrade', 'uninstall'];
const MANAGERS = [
  ['', 'Automatic'],
  ['apt', 'apt'],
  ['dnf', 'dnf'],
  ['pip', 'pip'],
];

function fields(initial, { prefix }) {
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
  const managerNote = h('p', { class: 'capability-note', role: 'status', hidden: true });
  return {
    element: h(
      'div',
      { class: 'payload' },
      h('div', { class: 'row' }, pkg.wrapper, version.wrapper),
      h('div', { class: 'row' }, action.wrapper, manager.wrapper),
      managerNote,
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
    setTargets: (devices) =>
      restrictOptions(manager.input, managerNote, devices, 'package_managers', 'package manager'),
    validate() {
      const missing = !pkg.input.value.trim();
      setFieldError(pkg.error, pkg.input, missing ? 'Enter the package to deploy.' : '');
      return !missing;
    },
    prepare: async () => true,
    summary: () => `${action.input.value} ${pkg.input.value.trim()}`,
  };
}

function describe({ action, package: name, version, manager }) {
  return `${action} ${name}${version ? ` ${version}` : ''}${manager ? ` with ${manager}` : ''}`;
}

export default {
  type: 'software_deployment',
  label: 'Software',
  blurb: 'Install, upgrade or remove a package.',
  payloadKey: 'software_payload',
  icon: '<path d="M12 3v12m0 0l-4-4m4 4l4-4M4 17v2a2 2 0 002 2h12a2 2 0 002-2v-2"/>',
  upload: false,
  fields,
  describe,
};
