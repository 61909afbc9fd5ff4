// Creating a webhook: URL, secret, the events it gets and, optionally, one task.

import { request } from '../api.js';
import { dialogActions, openDialog } from '../dialog.js';
import { field, h } from '../dom.js';
import { FieldErrors } from '../field-errors.js';
import { toast } from '../toast.js';

/** The create dialog; resolves with the new webhook, or undefined. */
export async function createDialog() {
  const { items: types } = await request('GET', '/api/event-types');
  return openDialog({
    title: 'New webhook',
    className: 'webhook-dialog',
    initialFocus: 'input[type="url"]',
    build: (close) => {
      const url = field({
        label: 'URL',
        hint: 'http:// or https://; it gets a POST for every matching event.',
        input: h('input', { class: 'input', type: 'url', maxlength: 2048, autocomplete: 'off' }),
      });
      const secret = field({
        label: 'Secret',
        hint: '16 to 256 characters; the receiver checks each body’s signature with it.',
        input: h('input', {
          class: 'input',
          type: 'password',
          maxlength: 256,
          autocomplete: 'off',
        }),
      });
      const task = field({
        label: 'Only this task (optional)',
        hint: 'A task id; empty for every task.',
        input: h('input', { class: 'input', type: 'text', autocomplete: 'off' }),
      });
      const boxes = types.map((type) => h('input', { type: 'checkbox', value: type }));
      const typesError = h('p', { class: 'field-error', hidden: true });
      const typeSet = h(
        'fieldset',
        { class: 'field event-types' },
        h('legend', { text: 'Events' }),
        h(
          'div',
          { class: 'event-type-grid' },
          types.map((type, index) => h('label', {}, boxes[index], ` ${type}`)),
        ),
        typesError,
      );
      const showTypes = (message) => {
        typesError.textContent = message ?? '';
        typesError.hidden = !message;
      };
      const formError = h('p', { class: 'form-error', role: 'alert', hidden: true });
      const errors = new FieldErrors()
        .add('url', url)
        .add('secret', secret)
        .add('task_id', task)
        .add('event_types', { show: showTypes, focus: () => boxes[0]?.focus() });
      const submit = h('button', {
        type: 'submit',
        class: 'button primary',
        text: 'Create webhook',
      });
      const form = h(
        'form',
        { class: 'dialog-body', novalidate: true },
        formError,
        url.wrapper,
        secret.wrapper,
        typeSet,
        task.wrapper,
        dialogActions(close, undefined, submit),
      );
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        errors.clear();
        formError.hidden = true;
        const body = {
          url: url.input.value.trim(),
          secret: secret.input.value,
          event_types: boxes.filter((box) => box.checked).map((box) => box.value),
          task_id: task.input.value.trim() || null,
        };
        submit.disabled = true;
        try {
          const created = await request('POST', '/api/webhooks', { body });
          toast(`Created the webhook for ${created.url}.`);
          close(created);
        } catch (error) {
          submit.disabled = false;
          const name = (error.field ?? '').startsWith('event_types') ? 'event_types' : error.field;
          if (!errors.show(name, error.reason, { focus: true })) {
            formError.textContent = error.message;
            formError.hidden = false;
          }
        }
      });
      return form;
    },
  });
}
