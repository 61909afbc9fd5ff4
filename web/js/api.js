// The HTTP API: fetch with the session's token, and errors as ApiError with the API's message.

const TOKEN_KEY = 'deployx.token';

export class ApiError extends Error {
  constructor(status, code, message, details = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** The field a 422 names (`recurrence_config.time`), if any. */
  get field() {
    return this.details && typeof this.details === 'object' ? (this.details.field ?? null) : null;
  }

  /** The reason alone, for showing beside the field (the message repeats the field's name). */
  get reason() {
    return this.details?.reason ?? this.message;
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

function authHeaders(token = session.token) {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Tells the app that the token stopped working (it signs out and says why). */
function unauthorized(error) {
  window.dispatchEvent(new CustomEvent('deployx:unauthorized', { detail: error }));
}

function toQuery(params = {}) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON: a proxy's page, or nothing
  }
  const error = body?.error;
  return new ApiError(
    response.status,
    error?.code ?? `http_${response.status}`,
    error?.message ?? `The server answered ${response.status} ${response.statusText}`.trim(),
    error?.details ?? null,
  );
}

export async function request(method, path, { body, query, token, signal } = {}) {
  const headers = { ...authHeaders(token) };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path + toQuery(query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (cause) {
    if (cause.name === 'AbortError') throw cause;
    throw new ApiError(
      0,
      'network',
      'The DeployX server cannot be reached. Check that it is running.',
    );
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && token === undefined) unauthorized(error);
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}

const TASKS = '/api/schedule/tasks';
const task = (id, action = '') => `${TASKS}/${encodeURIComponent(id)}${action ? `/${action}` : ''}`;

export const api = {
  me: (token) => request('GET', '/api/me', { token }),
  listTasks: (query) => request('GET', TASKS, { query }),
  getTask: (id) => request('GET', task(id)),
  createTask: (body) => request('POST', TASKS, { body }),
  updateTask: (id, body) => request('PUT', task(id), { body }),
  deleteTask: (id) => request('DELETE', task(id)),
  pauseTask: (id) => request('POST', task(id, 'pause')),
  resumeTask: (id) => request('POST', task(id, 'resume')),
  executeTask: (id) => request('POST', task(id, 'execute')),
  executions: (id, query) => request('GET', task(id, 'executions'), { query }),
  taskEvents: (id) => request('GET', task(id, 'events')),
  listExecutions: (query) => request('GET', '/api/executions', { query }),
  getExecution: (id) => request('GET', `/api/executions/${encodeURIComponent(id)}`),
  cancelExecution: (id) =>
    request('POST', `/api/executions/${encodeURIComponent(id)}/cancel`, { body: {} }),
  rerunExecution: (id, devices = 'failed') =>
    request('POST', `/api/executions/${encodeURIComponent(id)}/rerun`, { body: { devices } }),
  runNow: (body) => request('POST', '/api/executions', { body }),
  preview: (body) => request('POST', '/api/schedule/preview', { body }),
  stats: () => request('GET', '/api/schedule/stats'),
  devices: () => request('GET', '/api/devices'),
  groups: () => request('GET', '/api/groups'),
  createGroup: (body) => request('POST', '/api/groups', { body }),
  updateGroup: (id, body) => request('PUT', `/api/groups/${id}`, { body }),
  deleteGroup: (id, { force = false } = {}) =>
    request('DELETE', `/api/groups/${id}`, { query: force ? { force: 'true' } : {} }),
  fileInfo: (id) => request('GET', `/api/files/${encodeURIComponent(id)}`),
  upload,
};

/**
 * POST /api/files with the file as the raw body. XMLHttpRequest, because fetch() cannot report
 * upload progress: onProgress gets a fraction from 0 to 1.
 */
function upload(file, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/files${toQuery({ name: file.name })}`);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener('load', () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // handled below
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) {
        onProgress(1);
        resolve(body);
        return;
      }
      const error = new ApiError(
        xhr.status,
        body?.error?.code ?? `http_${xhr.status}`,
        body?.error?.message ?? `The upload failed: the server answered ${xhr.status}`,
        body?.error?.details ?? null,
      );
      if (xhr.status === 401) unauthorized(error);
      reject(error);
    });
    xhr.addEventListener('error', () =>
      reject(
        new ApiError(0, 'network', 'The upload failed: the DeployX server cannot be reached.'),
      ),
    );
    xhr.send(file);
  });
}
