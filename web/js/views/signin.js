// Sign-in with an API token, checked against GET /api/me and kept for the browser session.

import { api, session } from '../api.js';
import { field, h, replaceChildren, setFieldError } from '../dom.js';

export function signInView(container, { message = '', onSignedIn }) {
  const token = field({
    label: 'API token',
    hint: 'deployx up prints the admin token (also in <data-dir>/admin-token); deployx token create makes others.',
    input: h('input', {
      class: 'input mono',
      type: 'password',
      autocomplete: 'off',
      spellcheck: 'false',
      placeholder: 'dx_…',
    }),
  });
  const notice = h('p', { class: 'notice', role: 'status', text: message, hidden: !message });
  const submit = h('button', { type: 'submit', class: 'button primary wide', text: 'Sign in' });
  const form = h('form', { class: 'signin-form', novalidate: true }, token.wrapper, submit);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = token.input.value.trim();
    if (!value) {
      setFieldError(token.error, token.input, 'Paste your API token.');
      token.input.focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const me = await api.me(value);
      session.signIn(value);
      onSignedIn(me);
    } catch (error) {
      const text =
        error.status === 401
          ? 'This token is not valid. Check that it was copied whole.'
          : error.message;
      setFieldError(token.error, token.input, text);
      token.input.focus();
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  replaceChildren(
    container,
    h(
      'div',
      { class: 'signin' },
      h(
        'section',
        { class: 'card signin-card', 'aria-labelledby': 'signin-heading' },
        h(
          'p',
          { class: 'brand big' },
          h('span', { class: 'brand-mark', 'aria-hidden': 'true', text: '✕' }),
          'DeployX',
        ),
        h('h1', { id: 'signin-heading', text: 'Sign in to the scheduler' }),
        notice,
        form,
      ),
    ),
  );
  token.input.focus();
  return { destroy() {} };
}
