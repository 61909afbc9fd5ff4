// Parts the task kinds' forms share: selects, numbers, an upload (file chooser with progress, or
// the stored file by name), and lines of text as a list or as NAME=value pairs.

import { api } from '../api.js';
import { field, h, setFieldError, uid } from '../dom.js';
import { fileSize } from '../format.js';

export function select(options, value) {
  return h(
    'select',
    { class: 'input' },
    options.map(([optionValue, label]) =>
      h('option', { value: optionValue, selected: optionValue === (value ?? ''), text: label }),
    ),
  );
}

export const pairs = (values) => values.map((value) => [value, value]);

export function toNumber(text) {
  const value = Number(text);
  return text === '' || Number.isNaN(value) ? undefined : value;
}

const fileInfos = new Map(); // file id → Promise of {name, size, sha256}

/** A stored file named in words, "app.conf (1.2 KiB)", filled in once GET /api/files/{id}
 * answers; until then (or if it cannot) a short form of its id. */
export function storedFileName(fileId, knownName = '') {
  const node = h('code', {
    class: 'inline-code file-name',
    title: `file ${fileId}`,
    text: knownName || fileId.slice(0, 8),
  });
  if (!fileId) return node;
  if (!fileInfos.has(fileId)) fileInfos.set(fileId, api.fileInfo(fileId).catch(() => null));
  fileInfos.get(fileId).then((info) => {
    if (!info) return;
    node.textContent = `${info.name || knownName || fileId.slice(0, 8)} (${fileSize(info.size)})`;
    node.title = `file ${fileId}, sha256 ${info.sha256}`;
  });
  return node;
}

/** The payload without the console's own `name` of its upload. */
export function withoutName(payload) {
  const { name: _name, ...rest } = payload;
  return rest;
}

export function timeoutField(initial, fallback) {
  const timeout = field({
    label: 'Timeout (seconds)',
    input: h('input', { class: 'input', type: 'number', min: 1, max: 86400, inputmode: 'numeric' }),
  });
  timeout.input.value = initial.timeout_seconds ?? fallback;
  return timeout;
}

/**
 * The upload of a payload's file_id. `upload: true`: a file chooser that uploads (with a
 * progress bar) on prepare(); else the file already stored, shown by name.
 */
export function uploadPart(initial, upload, { label = 'File', missing = 'Choose a file.' } = {}) {
  let stored = initial.file_id ? { file_id: initial.file_id, name: initial.name ?? '' } : null;
  let storedFor = null; // the File object that `stored` was uploaded from
  const chooser = upload
    ? field({ label, input: h('input', { class: 'input', type: 'file' }) })
    : null;
  const progressId = uid('progress');
  const progress = h('progress', { max: 100, value: 0, id: progressId, hidden: true });
  const status = h('p', { class: 'upload-status', 'aria-live': 'polite' });
  const error = chooser?.error ?? h('p', { class: 'field-error', hidden: true });
  chooser?.input.addEventListener('change', () => {
    setFieldError(chooser.error, chooser.input, '');
    const file = chooser.input.files[0];
    progress.hidden = true;
    status.textContent = file
      ? `${file.name}, ${fileSize(file.size)}: uploaded when you execute or schedule it.`
      : '';
  });
  const chosen = () => chooser?.input.files[0];
  return {
    elements: [
      chooser?.wrapper ??
        h(
          'p',
          { class: 'stored-file' },
          `${label}: `,
          initial.file_id ? storedFileName(initial.file_id, initial.name) : h('code', { text: '—' }),
        ),
      upload
        ? h(
            'div',
            { class: 'upload' },
            h('label', { class: 'visually-hidden', for: progressId, text: 'Upload progress' }),
            progress,
            status,
          )
        : error,
    ],
    target: chooser ?? { input: null, error },
    fileId: () => stored?.file_id ?? '',
    fileName: () => stored?.name || chosen()?.name || '',
    validate() {
      const ok = !chooser || Boolean(chosen() || stored);
      if (!ok) setFieldError(chooser.error, chooser.input, missing);
      return ok;
    },
    /** Uploads the chosen file once (again only if another file is chosen). */
    async prepare() {
      const file = chosen();
      if (!file || file === storedFor) return true;
      progress.hidden = false;
      progress.value = 0;
      status.textContent = `Uploading ${file.name}…`;
      try {
        const result = await api.upload(file, (fraction) => {
          progress.value = Math.round(fraction * 100);
          status.textContent = `Uploading ${file.name}… ${Math.round(fraction * 100)}%`;
        });
        stored = { ...result, name: result.name || file.name };
        storedFor = file;
        status.textContent = `Uploaded ${file.name} (${fileSize(result.size)}, sha256 ${result.sha256.slice(0, 12)}…)`;
        return true;
      } catch (failure) {
        progress.hidden = true;
        status.textContent = '';
        setFieldError(chooser.error, chooser.input, failure.message);
        return false;
      }
    },
  };
}

/** A textarea of one item per line: lines() gives them, empty lines left out. */
export function linesField({ label, hint, placeholder, lines = [] }) {
  const part = field({
    label,
    hint,
    input: h('textarea', { class: 'input mono', rows: 3, spellcheck: 'false', placeholder }),
  });
  part.input.value = lines.join('\n');
  part.lines = () => part.input.value.split('\n').filter((line) => line.trim() !== '');
  return part;
}

/** The environment (NAME=value lines) and working directory of a job that runs a process. */
export function environmentFields(initial) {
  const env = linesField({
    label: 'Environment',
    hint: 'NAME=value, one a line',
    placeholder: 'LOG_LEVEL=debug',
    lines: Object.entries(initial.env ?? {}).map(([name, value]) => `${name}=${value}`),
  });
  const workingDir = field({
    label: 'Working directory',
    hint: 'Optional; the agent’s own directory otherwise',
    input: h('input', {
      class: 'input mono',
      type: 'text',
      placeholder: '/srv/app',
      autocomplete: 'off',
      spellcheck: 'false',
    }),
  });
  workingDir.input.value = initial.working_dir ?? '';
  return { env, workingDir };
}

/** NAME=value lines as an object; null (and the error shown) if a line has no name. */
export function envOf(part) {
  const env = {};
  for (const line of part.lines()) {
    const at = line.indexOf('=');
    const name = at < 0 ? '' : line.slice(0, at).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      setFieldError(part.error, part.input, `Write NAME=value, one a line: “${line.slice(0, 40)}”.`);
      return null;
    }
    env[name] = line.slice(at + 1);
  }
  return env;
}
