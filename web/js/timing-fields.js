// A task's timing beyond its schedule (the scheduling modal's "Timing" group): what happens
// when a run is still going at the next occurrence, a spread of start times, and how late a
// run may still start after an outage.

import { field, h } from './dom.js';

const OVERLAP = [
  ['skip', 'Skip it (the run still going finishes first)'],
  ['allow', 'Start it anyway, beside the one still running'],
];

function secondsField(label, hint, value, name) {
  const made = field({
    label,
    hint,
    input: h('input', {
      class: 'input',
      type: 'number',
      min: 0,
      max: 366 * 86400,
      step: 1,
      inputmode: 'numeric',
      name,
    }),
  });
  made.input.value = value;
  return made;
}

/** value() is {overlap_policy, jitter_seconds, misfire_grace_seconds} as the API takes them. */
export function timingFields(task = {}) {
  const overlap = field({
    label: 'When the previous run is still going',
    input: h(
      'select',
      { class: 'input', name: 'overlap_policy' },
      OVERLAP.map(([value, label]) =>
        h('option', {
          value,
          text: label,
          selected: value === (task.overlap_policy ?? 'skip'),
        }),
      ),
    ),
  });
  const jitter = secondsField(
    'Jitter (seconds)',
    'Each run starts up to this much later, the same offset every time; 0: on time',
    task.jitter_seconds ?? 0,
    'jitter_seconds',
  );
  const grace = secondsField(
    'Misfire grace (seconds)',
    'A run missed (server down) still starts if this late at most; later it is recorded missed',
    task.misfire_grace_seconds ?? 3600,
    'misfire_grace_seconds',
  );
  const number = (part) => {
    const text = part.input.value.trim();
    const value = Number(text);
    return text === '' || Number.isNaN(value) ? text : value;
  };
  return {
    element: h(
      'fieldset',
      { class: 'group timing' },
      h('legend', { text: 'Timing' }),
      overlap.wrapper,
      h('div', { class: 'row' }, jitter.wrapper, grace.wrapper),
    ),
    value: () => ({
      overlap_policy: overlap.input.value,
      jitter_seconds: number(jitter),
      misfire_grace_seconds: number(grace),
    }),
    errors: [
      ['overlap_policy', overlap],
      ['jitter_seconds', jitter],
      ['misfire_grace_seconds', grace],
    ],
  };
}
