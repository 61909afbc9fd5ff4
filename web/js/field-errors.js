// Puts a 422's message beside the field it names: details.field `recurrence_config.time` goes to
// the most specific registered key (`recurrence_config.time`, else `recurrence_config`).

import { setFieldError } from './dom.js';

export class FieldErrors {
  constructor() {
    this.targets = new Map();
  }

  /** key: a field path of the API; target: {input, error} from field(), or {show, focus}. */
  add(key, target) {
    this.targets.set(key, target);
    return this;
  }

  addAll(entries) {
    for (const [key, target] of entries) this.add(key, target);
    return this;
  }

  find(fieldPath) {
    let best = null;
    for (const key of this.targets.keys()) {
      const hit = fieldPath === key || fieldPath.startsWith(`${key}.`);
      if (hit && (best === null || key.length > best.length)) best = key;
    }
    return best === null ? null : this.targets.get(best);
  }

  /** Shows message beside the field; false when no registered field matches. */
  show(fieldPath, message, { focus = false } = {}) {
    const target = fieldPath ? this.find(fieldPath) : null;
    if (!target) return false;
    if (target.show) target.show(message);
    else setFieldError(target.error, target.input, message);
    if (focus) (target.focus ?? (() => target.input?.focus()))();
    return true;
  }

  /** Clears every field error whose key starts with prefix ('' clears all). */
  clear(prefix = '') {
    for (const [key, target] of this.targets) {
      if (!key.startsWith(prefix)) continue;
      if (target.show) target.show('');
      else setFieldError(target.error, target.input, '');
    }
  }
}
