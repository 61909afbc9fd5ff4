// A few line icons (constant markup, never data), 24×24, drawn in currentColor.

/** An icon of constant path markup, such as a task kind's `icon` (web/js/kinds/). */
export function icon(paths) {
  const span = document.createElement('span');
  span.className = 'icon';
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = `<svg viewBox="0 0 24 24" width="22" height="22" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${paths}</svg>`;
  return span;
}
