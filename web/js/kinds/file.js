// The file deployment kind in the console: the upload, its destination path and mode.

import { field, h, setFieldError } from '../dom.js';
import { storedFileName, uploadPart, withoutName } from './fields.js';

// What the API takes as a file's mode (services/domain/field_reasons.py FILE_MODE_PATTERN).
const OCTAL_MODE = /^0?[0-7]{3,4}$/;

function fields(initial, { upload, prefix }) {
  const file = uploadPart(initial, upload, { label: 'File', missing: 'Choose a file to deploy.' });
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

  return {
    element: h(
      'div',
      { class: 'payload' },
      file.elements,
      h('div', { class: 'row' }, destination.wrapper, mode.wrapper),
    ),
    errors: [
      [`${prefix}.destination`, destination],
      [`${prefix}.mode`, mode],
      [`${prefix}.owner`, destination],
      [`${prefix}.file_id`, file.target],
      [prefix, destination],
      ['task_payload', destination],
    ],
    value: () => ({
      file_payload: {
        ...withoutName(initial),
        file_id: file.fileId(),
        destination: destination.input.value.trim(),
        mode: mode.input.value.trim(),
      },
    }),
    // Checked before the upload, so a wrong mode costs no transfer (the API checks it too).
    validate() {
      const ok = file.validate();
      const bad = !destination.input.value.trim().startsWith('/');
      setFieldError(
        destination.error,
        destination.input,
        bad ? 'Enter an absolute path, like /etc/app.conf.' : '',
      );
      const badMode = !OCTAL_MODE.test(mode.input.value.trim());
      setFieldError(
        mode.error,
        mode.input,
        badMode ? 'Must be an octal mode like 0644 or 755.' : '',
      );
      return ok && !bad && !badMode;
    },
    prepare: file.prepare,
    summary: () => `${file.fileName() || 'file'} → ${destination.input.value.trim()}`,
    fileName: file.fileName,
  };
}

function describe({ file_id: fileId, destination, mode }) {
  return h(
    'span',
    {},
    'file ',
    storedFileName(fileId),
    ' → ',
    h('code', { class: 'inline-code', text: destination }),
    ` (mode ${mode})`,
  );
}

export default {
  type: 'file_deployment',
  label: 'File',
  blurb: 'Upload a file and write it to a path.',
  payloadKey: 'file_payload',
  icon: '<path d="M14 3H7a2 2 0 00-2 2v14a2 2 0 002 2h10a2 2 0 002-2V8z"/><path d="M14 3v5h5M9 13h6M9 17h6"/>',
  upload: true,
  fields,
  describe,
};
