// Webhooks (admin): subscriptions, a test delivery, each one's deliveries with every attempt,
// and re-sending one.

import { request } from '../api.js';
import { confirmDialog } from '../dialog.js';
import { h, keepingFocus, replaceChildren } from '../dom.js';
import { toast, toastError } from '../toast.js';
import { errorPanel, instant, loading } from './common.js';
import { deliveriesPanel } from './webhook-deliveries.js';
import { createDialog } from './webhook-dialog.js';

const HOOKS = '/api/webhooks';
const hook = (id, rest = '') => `${HOOKS}/${encodeURIComponent(id)}${rest}`;
const REFRESH_MS = 3000; // open deliveries panels refresh this often

export function webhooksView(container, { me }) {
  if (me.role !== 'admin') {
    replaceChildren(container, adminOnly('Webhooks'));
    return { destroy() {} };
  }
  const list = h('div', { class: 'webhook-list' }, loading('Loading webhooks…'));
  const open = new Map(); // webhook id -> its deliveries panel, while shown
  replaceChildren(
    container,
    h(
      'div',
      { class: 'page-head' },
      h('h1', { text: 'Webhooks' }),
      h('button', {
        type: 'button',
        class: 'button primary',
        text: 'New webhook',
        onclick: async () => {
          if (await createDialog()) load();
        },
      }),
    ),
    h('p', {
      class: 'muted',
      text: 'Each matching event is POSTed as JSON, signed with the secret (X-DeployX-Signature), retried for a day, in order per task.',
    }),
    list,
  );

  async function load() {
    try {
      const { items } = await request('GET', HOOKS, { query: { limit: 1000 } });
      keepingFocus(() =>
        replaceChildren(
          list,
          items.length
            ? items.map((item) => webhookCard(item, open, load))
            : h('p', { class: 'empty', text: 'No webhook yet.' }),
        ),
      );
    } catch (error) {
      replaceChildren(list, errorPanel(error, load, 'The webhooks could not be loaded'));
    }
  }
  load();
  const timer = setInterval(() => open.forEach((panel) => panel.refresh()), REFRESH_MS);
  return { destroy: () => clearInterval(timer) };
}

export function adminOnly(what) {
  return h(
    'div',
    { class: 'panel-error', role: 'alert' },
    h('p', { text: `${what} are for admins only: sign in with an admin token.` }),
  );
}

function webhookCard(item, open, reload) {
  const panel = open.get(item.id) ?? deliveriesPanel(item);
  const toggle = h('button', {
    type: 'button',
    class: 'button small',
    text: open.has(item.id) ? 'Hide deliveries' : 'Deliveries',
    'aria-expanded': String(open.has(item.id)),
    dataset: { focusKey: `hook-${item.id}-deliveries` },
    onclick: () => {
      if (open.has(item.id)) open.delete(item.id);
      else open.set(item.id, panel);
      reload();
    },
  });
  const act = (label, run, kind = '') =>
    h('button', {
      type: 'button',
      class: `button small ${kind}`,
      text: label,
      'aria-label': `${label}: ${item.url}`,
      onclick: () => run().catch(toastError),
    });
  const sendTest = async () => {
    await request('POST', hook(item.id, '/test'));
    toast('A WebhookTest delivery is on its way.');
    if (!open.has(item.id)) open.set(item.id, panel);
    reload();
  };
  const remove = async () => {
    const sure = await confirmDialog({
      title: 'Delete this webhook?',
      message: `${item.url} gets no more events; its deliveries are forgotten.`,
      confirmLabel: 'Delete webhook',
      danger: true,
    });
    if (!sure) return;
    await request('DELETE', hook(item.id));
    open.delete(item.id);
    toast('Deleted the webhook.');
    reload();
  };
  return h(
    'article',
    { class: 'card webhook-card', dataset: { webhookId: item.id } },
    h('h2', { class: 'webhook-url', text: item.url }),
    h(
      'ul',
      { class: 'chips', 'aria-label': 'Event types' },
      item.event_types.map((type) => h('li', { class: 'chip chip-plain', text: type })),
    ),
    h(
      'p',
      { class: 'muted' },
      item.task_id
        ? ['Only task ', h('a', { href: `#/tasks/${item.task_id}`, text: item.task_id }), '. ']
        : 'Every task. ',
      `Created by ${item.created_by}, `,
      instant(item.created_at),
      '.',
    ),
    h(
      'div',
      { class: 'task-actions' },
      toggle,
      act('Send test', sendTest, 'primary'),
      act('Delete', remove, 'danger-ghost'),
    ),
    open.has(item.id) ? panel.element : null,
  );
}
