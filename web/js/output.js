// A device's output (stdout or stderr) with Copy and Download: what an operator pastes into a
// ticket or keeps, without selecting 64 KiB by hand.

import { h } from './dom.js';
import { toast, toastError } from './toast.js';

/** "local-1-stdout-3f2a9c1e.txt": whose output, which stream, which run. */
export function outputFileName(deviceId, kind, runId = '') {
  const safe = (text) => String(text).replace(/[^A-Za-z0-9_.-]+/g, '_');
  return `${safe(deviceId)}-${kind}${runId ? `-${safe(runId.slice(0, 8))}` : ''}.txt`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // No clipboard permission (or not a secure context): the old way, through a selection.
    const area = h('textarea', { class: 'visually-hidden', readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    const done = document.execCommand('copy');
    area.remove();
    return done;
  }
}

function download(text, name) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/plain;charset=utf-8' }));
  const link = h('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The heading, Copy and Download buttons, and the <pre> of one output stream. */
export function outputBlock({ deviceId, runId, label, kind, text }) {
  if (!text) return [];
  const name = outputFileName(deviceId, kind, runId);
  return [
    h(
      'div',
      { class: 'output-head' },
      h('h4', { class: 'output-label', text: label }),
      h('button', {
        type: 'button',
        class: 'button ghost small output-copy',
        text: 'Copy',
        'aria-label': `Copy ${label} of ${deviceId}`,
        onclick: async () => {
          if (await copyText(text)) toast(`Copied the ${label} of ${deviceId}.`);
          else toastError(new Error('The browser did not let the page copy; select the text.'));
        },
      }),
      h('button', {
        type: 'button',
        class: 'button ghost small output-download',
        text: 'Download',
        'aria-label': `Download ${label} of ${deviceId}`,
        title: name,
        onclick: () => download(text, name),
      }),
    ),
    h('pre', {
      class: `output ${kind}`,
      tabindex: 0,
      'aria-label': `${label} of ${deviceId}`,
      text,
    }),
  ];
}
