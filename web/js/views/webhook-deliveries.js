// A webhook's deliveries, newest first, each with every attempt, and re-sending one.

import { request } from '../api.js';
import { h, keepingFocus, replaceChildren } from '../dom.js';
import { plural } from '../format.js';
import { toast, toastError } from '../toast.js';
import { errorPanel, instant, loading, statusBadge } from './common.js';

const hook = (id, rest) => `/api/webhooks/${encodeURIComponent(id)}${rest}`;

/** The panel of one webhook: {element, refresh}. */
export function deliveriesPanel(item) {
  const status = h(
    'select',
    { class: 'input', 'aria-label': 'Delivery status' },
    ['', 'pending', 'delivered', 'failed'].map((value) =>
      h('option', { value, text: value || 'All deliveries' }),
    ),
  );
  const body = h('div', { class: 'table-wrap' }, loading('Loading deliveries…'));
  const element = h('section', { class: 'deliveries', 'aria-label': 'Deliveries' }, status, body);
  async function refresh() {
    try {
      const page = await request('GET', hook(item.id, '/deliveries'), {
        query: { status: status.value, limit: 50 },
      });
      keepingFocus(() => replaceChildren(body, deliveriesTable(item, page, refresh)));
    } catch (error) {
      replaceChildren(body, errorPanel(error, refresh, 'The deliveries could not be loaded'));
    }
  }
  status.addEventListener('change', refresh);
  refresh();
  return { element, refresh };
}

function deliveriesTable(item, { items, total }, refresh) {
  if (!items.length) return h('p', { class: 'muted', text: 'No delivery yet.' });
  const resend = (delivery) =>
    h('button', {
      type: 'button',
      class: 'button small',
      text: 'Re-send',
      disabled: delivery.status === 'pending',
      'aria-label': `Re-send ${delivery.event_type} ${delivery.event_id}`,
      dataset: { focusKey: `resend-${delivery.event_id}` },
      onclick: async () => {
        try {
          await request('POST', hook(item.id, `/deliveries/${delivery.event_id}/resend`));
          toast(`Sending ${delivery.event_type} again.`);
          refresh();
        } catch (error) {
          toastError(error);
        }
      },
    });
  return h(
    'table',
    { class: 'table deliveries-table' },
    h('caption', { class: 'muted', text: `${plural(total, 'delivery')}, newest first` }),
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        ['Event', 'Task', 'Status', 'Attempts', 'Next try', ''].map((name) =>
          h('th', { scope: 'col', text: name }),
        ),
      ),
    ),
    h(
      'tbody',
      {},
      items.map((delivery) =>
        h(
          'tr',
          { dataset: { delivery: delivery.event_id } },
          h(
            'th',
            { scope: 'row' },
            delivery.event_type,
            h('br'),
            h('code', { text: delivery.event_id }),
          ),
          h(
            'td',
            {},
            delivery.task_id
              ? h('a', { href: `#/tasks/${delivery.task_id}`, text: delivery.task_id.slice(0, 8) })
              : '—',
          ),
          h('td', {}, statusBadge(delivery.status)),
          h('td', {}, h('ol', { class: 'attempts' }, delivery.attempts.map(attemptItem))),
          h('td', {}, instant(delivery.next_attempt_at)),
          h('td', {}, resend(delivery)),
        ),
      ),
    ),
  );
}

function attemptItem(attempt) {
  const outcome = attempt.error ?? `HTTP ${attempt.status_code}`;
  return h(
    'li',
    { class: attempt.error ? 'attempt-failed' : 'attempt-ok' },
    instant(attempt.attempted_at),
    ` · ${outcome} · ${Math.round(attempt.duration_ms)} ms`,
  );
}
