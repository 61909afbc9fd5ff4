// The console: sign-in, the live feed, and hash routes (#/dashboard, #/tasks, #/tasks/<id>,
// #/devices) to the screens.

import { api, session } from './api.js';
import { h, replaceChildren } from './dom.js';
import { fleet } from './fleet.js';
import { LiveFeed } from './live.js';
import { zoneButton } from './zone-setting.js';
import { auditView } from './views/audit.js';
import { errorPanel } from './views/common.js';
import { dashboardView } from './views/dashboard.js';
import { devicesView } from './views/devices.js';
import { executionsView } from './views/executions.js';
import { runView } from './views/run.js';
import { signInView } from './views/signin.js';
import { taskDetailView } from './views/task-detail.js';
import { tasksView } from './views/tasks.js';
import { webhooksView } from './views/webhooks.js';

const ROUTES = [
  { pattern: /^\/dashboard$/, view: dashboardView, nav: 'dashboard', title: 'Dashboard' },
  { pattern: /^\/tasks$/, view: tasksView, nav: 'tasks', title: 'Scheduled tasks' },
  {
    pattern: /^\/tasks\/([0-9a-f-]{36})$/i,
    view: taskDetailView,
    nav: 'tasks',
    title: 'Task',
    params: ['id'],
  },
  { pattern: /^\/executions$/, view: executionsView, nav: 'executions', title: 'Executions' },
  {
    pattern: /^\/executions\/([0-9a-f-]{36})$/i,
    view: runView,
    nav: 'executions',
    title: 'Run',
    params: ['id'],
  },
  { pattern: /^\/devices$/, view: devicesView, nav: 'devices', title: 'Devices' },
  { pattern: /^\/webhooks$/, view: webhooksView, nav: 'webhooks', title: 'Webhooks' },
  { pattern: /^\/audit$/, view: auditView, nav: 'audit', title: 'Audit log' },
];
const LIVE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

const main = document.getElementById('view');
const topbar = document.getElementById('topbar');
let context = null; // {me, live} while signed in
let current = null; // the screen shown: {destroy}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/dashboard';
  const [path, search = ''] = raw.split('?');
  return { path, query: new URLSearchParams(search) };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

/** On a phone the nav is a strip that scrolls sideways: the current screen's link in view. */
function showCurrentLink() {
  const link = document.querySelector('.nav a[aria-current]');
  const nav = link?.parentElement;
  if (!nav || nav.scrollWidth <= nav.clientWidth) return;
  const [box, item] = [nav.getBoundingClientRect(), link.getBoundingClientRect()];
  nav.scrollLeft += item.left - box.left - (box.width - item.width) / 2;
}

function route() {
  if (!context) return;
  // Back or a link while a dialog is open: the dialog belonged to the screen being left.
  for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
  current?.destroy();
  current = null;
  const { path, query } = parseHash();
  const found = ROUTES.map((entry) => ({ entry, match: entry.pattern.exec(path) })).find(
    ({ match }) => match,
  );
  for (const link of document.querySelectorAll('.nav a')) {
    if (found && link.dataset.route === found.entry.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showCurrentLink();
  window.scrollTo(0, 0);
  if (!found) {
    document.title = 'Not found · DeployX';
    replaceChildren(
      main,
      h(
        'div',
        { class: 'panel-error', role: 'alert' },
        h('p', { text: `There is no page at ${path}.` }),
        h('a', { href: '#/dashboard', text: 'Go to the dashboard' }),
      ),
    );
    return;
  }
  const params = Object.fromEntries(
    (found.entry.params ?? []).map((name, index) => [name, found.match[index + 1]]),
  );
  document.title = `${found.entry.title} · DeployX`;
  try {
    current = found.entry.view(main, { ...context, params, query, navigate });
  } catch (error) {
    console.error(error);
    replaceChildren(main, errorPanel(error, route, 'This screen failed'));
  }
  if (document.activeElement === document.body || !main.contains(document.activeElement)) {
    main.focus({ preventScroll: true });
  }
}

function showSignIn(message = '') {
  topbar.hidden = true;
  document.title = 'Sign in · DeployX';
  current = signInView(main, { message, onSignedIn: start });
}

function start(me) {
  const live = new LiveFeed(session.token).start();
  context = { me, live };
  fleet.reset();
  fleet.attach(live);
  topbar.hidden = false;
  for (const link of document.querySelectorAll('.nav [data-admin]')) {
    link.hidden = me.role !== 'admin';
  }
  replaceChildren(
    document.getElementById('who'),
    h('span', { class: 'who-user', text: me.user }),
    ' ',
    h('span', { class: `role role-${me.role}`, text: me.role }),
  );
  const pill = document.getElementById('live-status');
  live.onStatus((status) => {
    pill.dataset.state = status;
    pill.textContent = LIVE_TEXT[status] ?? status;
  });
  route();
}

function signOut(message = '') {
  context?.live.stop();
  context = null;
  current?.destroy();
  current = null;
  session.signOut();
  fleet.reset();
  showSignIn(message);
}

async function boot() {
  document.getElementById('sign-out').addEventListener('click', () => signOut('You signed out.'));
  // The skip link moves the focus without touching the hash, which holds the route.
  document.querySelector('.skip-link').addEventListener('click', (event) => {
    event.preventDefault();
    main.focus();
  });
  window.addEventListener('hashchange', route);
  // A new display zone: the screen is drawn again, every time in it in that zone.
  zoneButton(document.getElementById('zone-setting'));
  window.addEventListener('deployx:zone', route);
  window.addEventListener('deployx:unauthorized', () => {
    if (context) signOut('Your session ended: the token is no longer valid. Sign in again.');
  });
  if (!session.token) {
    showSignIn();
    return;
  }
  try {
    start(await api.me());
  } catch (error) {
    if (error.status === 401) {
      session.signOut();
      showSignIn('Your session ended: the token is no longer valid. Sign in again.');
      return;
    }
    replaceChildren(
      main,
      errorPanel(error, () => location.reload(), 'The console could not start'),
    );
  }
}

boot();
