// Modal dialogs on <dialog>: showModal() makes the page behind inert (focus stays inside) and
// Escape closes it; the dialog is removed from the page once closed.

import { h } from './dom.js';

/**
 * Opens a dialog whose content is built by build(close); resolves with close(value)'s value
 * (undefined when Escape or the close button dismissed it).
 */
export function openDialog({ title, className = '', build, initialFocus = null }) {
  return new Promise((resolve) => {
    let result;
    const close = (value) => {
      result = value;
      dialog.close();
    };
    const titleId = `dialog-title-${Math.random().toString(36).slice(2, 8)}`;
    const dialog = h(
      'dialog',
      { class: `dialog ${className}`, 'aria-labelledby': titleId },
      h(
        'header',
        { class: 'dialog-header' },
        h('h2', { id: titleId, text: title }),
        h('button', {
          type: 'button',
          class: 'icon-button',
          'aria-label': 'Close',
          text: '×',
          onclick: () => close(undefined),
        }),
      ),
    );
    dialog.append(build(close, dialog));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    const focus = initialFocus ? dialog.querySelector(initialFocus) : null;
    focus?.focus();
  });
}

/** A dialog's row of buttons: Cancel (closing it with `cancelValue`), then `buttons`. */
export function dialogActions(close, cancelValue, ...buttons) {
  return h(
    'div',
    { class: 'dialog-actions' },
    h('button', {
      type: 'button',
      class: 'button ghost',
      text: 'Cancel',
      'data-cancel': true,
      onclick: () => close(cancelValue),
    }),
    ...buttons,
  );
}

/** Resolves true when the user confirms; `extra` (nodes) goes below the message. */
export function confirmDialog({
  title,
  message,
  confirmLabel = 'Confirm',
  danger = false,
  extra = null,
}) {
  return openDialog({
    title,
    className: 'dialog-confirm',
    initialFocus: '[data-cancel]',
    build: (close) =>
      h(
        'div',
        { class: 'dialog-body' },
        h('p', { text: message }),
        extra,
        dialogActions(
          close,
          false,
          h('button', {
            type: 'button',
            class: `button ${danger ? 'danger' : 'primary'}`,
            text: confirmLabel,
            onclick: () => close(true),
          }),
        ),
      ),
  }).then((value) => value === true);
}
