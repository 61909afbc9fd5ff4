// The console's registry of task kinds, one module each (as services/domain/kinds/ is the
// server's): the dashboard's panels, the forms, labels, icons and how a task shows what it runs.

import command from './command.js';
import file from './file.js';
import script from './script.js';
import software from './software.js';

export const KINDS = [command, software, file, script];

const BY_TYPE = new Map(KINDS.map((kind) => [kind.type, kind]));

/** The kind of a task_type, or undefined for one this console does not know. */
export const kindOf = (type) => BY_TYPE.get(type);

export const typeLabel = (type) => kindOf(type)?.label ?? type;

/**
 * payloadFields('command', {command: 'uptime'}) → {element, value(), validate(), errors, ...}.
 * `upload: true` gives a kind with a file a chooser that uploads (with a progress bar) on
 * prepare(); without it the file already stored is shown by name.
 */
export function payloadFields(type, initial = {}, { upload = false } = {}) {
  const kind = kindOf(type);
  return kind.fields(initial, { upload, prefix: `task_payload.${kind.payloadKey}` });
}

/** What a task runs, in words (or nodes), from its task_payload. */
export function describePayload(type, taskPayload) {
  const kind = kindOf(type);
  const payload = kind ? taskPayload[kind.payloadKey] : undefined;
  return payload ? kind.describe(payload) : '—';
}
