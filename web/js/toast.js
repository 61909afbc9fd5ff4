// Short messages in an aria-live region: successes fade, errors stay until dismissed.

import { h } from './dom.js';

const SUCCESS_MS = 6000;

/** toast('Task paused') / toast(error.message, {kind: 'error'}) / {action: {label, href}}. */
export function toast(message, { kind = 'success', action = null } = {}) {
  const region = document.getElementById('toasts');
  if (!region) return;
  const dismiss = () => item.remove();
  const item = h(
    'div',
    { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text', text: message }),
    action
      ? h('a', { href: action.href, class: 'toast-action', text: action.label, onclick: dismiss })
      : null,
    h(
      'button',
      { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss', onclick: dismiss },
      '×',
    ),
  );
  region.append(item);
  if (kind !== 'error') setTimeout(dismiss, SUCCESS_MS);
}

export const toastError = (error) => toast(error?.message ?? String(error), { kind: 'error' });
