// A searchable time zone picker: a filter box above a list of every zone by its current
// name (Asia/Kolkata, Europe/Kyiv), the browser's zone first.

import { h, uid } from './dom.js';
import { allTimeZones, browserTimeZone, currentZoneName } from './format.js';

/**
 * {element, select, search, status, value()}: `select` is the labelled control (the form's field), the box
 * above it narrows its options. `first` are extra options put before the zones, as
 * [value, label] (the settings' "browser").
 */
export function zonePicker({ selected, first = [] }) {
  const browser = browserTimeZone();
  const chosen = first.some(([value]) => value === selected) ? selected : currentZoneName(selected);
  const zones = [browser, ...allTimeZones().filter((zone) => zone !== browser)];
  // A stored name the browser does not list (an old one) stays choosable as it is.
  if (!first.some(([value]) => value === chosen) && !zones.includes(chosen)) zones.unshift(chosen);
  const options = [
    ...first.map(([value, text]) => h('option', { value, text, selected: value === chosen })),
    ...zones.map((zone) =>
      h('option', {
        value: zone,
        text: zone === browser ? `${zone} (this browser)` : zone,
        selected: zone === chosen,
      }),
    ),
  ];
  const id = uid('zone');
  const select = h('select', { class: 'input zone-select', id }, options);
  const status = h('p', {
    class: 'field-hint zone-count',
    id: `${id}-count`,
    'aria-live': 'polite',
  });
  const search = h('input', {
    class: 'input zone-search',
    type: 'search',
    placeholder: 'Find a zone: Kolkata, New York, UTC…',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-label': 'Search zones',
    'aria-describedby': status.id,
    'aria-controls': id,
  });
  search.addEventListener('input', () => {
    const words = search.value.trim().toLowerCase().replace(/\s+/g, '_');
    let shown = 0;
    let firstShown = null;
    for (const option of options) {
      const match = !words || option.textContent.toLowerCase().includes(words);
      // The chosen option stays, so the select never shows a value it does not list.
      option.hidden = !match && option !== select.selectedOptions[0];
      option.disabled = option.hidden;
      if (match) {
        shown += 1;
        firstShown ??= option;
      }
    }
    status.textContent = words ? `${shown} ${shown === 1 ? 'zone matches' : 'zones match'}` : '';
    search.dataset.first = firstShown?.value ?? '';
    // The list shows what was typed: the first match is chosen unless the choice matches.
    const current = select.selectedOptions[0];
    if (words && firstShown && !current?.textContent.toLowerCase().includes(words)) {
      choose(firstShown.value);
    }
  });
  // Enter picks the first match, as a search box would (and does not submit the form).
  search.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter') return;
    event.preventDefault();
    if (search.dataset.first) choose(search.dataset.first);
  });
  function choose(value) {
    select.value = value;
    select.dispatchEvent(new Event('input', { bubbles: true }));
    select.dispatchEvent(new Event('change', { bubbles: true }));
  }
  const element = h('div', { class: 'zone-picker' }, search, status, select);
  return { element, select, search, status, value: () => select.value };
}
