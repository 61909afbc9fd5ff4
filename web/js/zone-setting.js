// The user's setting of the zone times are shown in: the browser's (default), UTC or any IANA
// zone, remembered in localStorage; the top bar's button says which and opens the picker.

import { dialogActions, openDialog } from './dialog.js';
import { field, h } from './dom.js';
import { browserTimeZone, displayZone, setZoneSetting, zoneSetting } from './format.js';
import { zonePicker } from './zone-picker.js';

/** Opens the picker; resolves once it is closed (saved or not). */
export function openZoneSetting() {
  return openDialog({
    title: 'Show times in',
    className: 'zone-dialog',
    initialFocus: '.zone-search',
    build: (close) => {
      const zones = zonePicker({
        selected: zoneSetting(),
        first: [['browser', `This browser’s zone (${browserTimeZone()})`]],
      });
      const chosen = field({
        label: 'Time zone',
        hint: 'Every time in the console is shown in this zone, with its name. A task’s own zone is shown beside its times where it reads differently.',
        input: zones.select,
        id: zones.select.id, // the search box's aria-controls names it
      });
      chosen.input.before(zones.search, zones.status);
      const save = h('button', { type: 'submit', class: 'button primary', text: 'Show times' });
      return h(
        'form',
        {
          class: 'dialog-body',
          onsubmit: (event) => {
            event.preventDefault();
            setZoneSetting(zones.value());
            close(true);
          },
        },
        chosen.wrapper,
        dialogActions(close, false, save),
      );
    },
  });
}

/** The top bar's button: its text is the display zone; it opens the picker. */
export function zoneButton(button) {
  const say = () => {
    const zone = displayZone();
    button.textContent = `Times: ${zone}`;
    button.setAttribute('aria-label', `Times shown in ${zone}: change`);
    button.title = 'The zone the console shows times in';
  };
  say();
  button.addEventListener('click', () => openZoneSetting());
  window.addEventListener('deployx:zone', say);
}
