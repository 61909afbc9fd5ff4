// GET /api/live: Server-Sent Events read with fetch() (EventSource cannot send the bearer
// header), parsed by hand, reconnecting with backoff after a drop.

const MAX_DELAY_MS = 30_000;

/** Splits an SSE byte stream into messages {event, id, data}; feed() returns complete ones. */
export class SseParser {
  constructor() {
    this.buffer = '';
  }

  feed(text) {
    this.buffer += text.replace(/\r\n?/g, '\n');
    const messages = [];
    let end;
    while ((end = this.buffer.indexOf('\n\n')) !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const message = parseBlock(block);
      if (message) messages.push(message);
    }
    return messages;
  }
}

function parseBlock(block) {
  let event = 'message';
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (name === 'event') event = value;
    else if (name === 'id') id = value;
    else if (name === 'data') data.push(value);
  }
  if (data.length === 0) return null;
  return { event, id, data: data.join('\n') };
}

/**
 * One live connection for the signed-in session. Listeners get each event's envelope
 * ({type, stream_id, position, data, metadata}); resync listeners are told after a reconnect,
 * since what happened during the drop was not seen (they reload what they show).
 */
export class LiveFeed {
  constructor(token) {
    this.token = token;
    this.listeners = new Set();
    this.resyncListeners = new Set();
    this.statusListeners = new Set();
    this.status = 'connecting';
    this.attempt = 0;
    this.controller = null;
    this.stopped = false;
  }

  on(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onResync(listener) {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  onStatus(listener) {
    this.statusListeners.add(listener);
    listener(this.status, this.attempt);
    return () => this.statusListeners.delete(listener);
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
  }

  setStatus(status) {
    this.status = status;
    for (const listener of this.statusListeners) listener(status, this.attempt);
  }

  async loop() {
    let connectedBefore = false;
    while (!this.stopped) {
      this.setStatus(connectedBefore ? 'reconnecting' : 'connecting');
      try {
        await this.connect(() => {
          if (connectedBefore) for (const listener of this.resyncListeners) listener();
          connectedBefore = true;
          this.attempt = 0;
          this.setStatus('live');
        });
      } catch (error) {
        if (this.stopped) return;
        if (error.status === 401) {
          this.setStatus('offline');
          window.dispatchEvent(new CustomEvent('deployx:unauthorized', { detail: error }));
          return;
        }
      }
      if (this.stopped) return;
      this.attempt += 1;
      this.setStatus('reconnecting');
      await sleep(backoff(this.attempt));
    }
  }

  async connect(onOpen) {
    this.controller = new AbortController();
    const response = await fetch('/api/live', {
      headers: { Authorization: `Bearer ${this.token}`, Accept: 'text/event-stream' },
      signal: this.controller.signal,
      cache: 'no-store',
    });
    if (!response.ok) {
      const error = new Error(`live feed answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const message of parser.feed(value)) this.dispatch(message);
    }
  }

  dispatch(message) {
    let envelope;
    try {
      envelope = JSON.parse(message.data);
    } catch {
      return;
    }
    for (const listener of this.listeners) {
      try {
        listener(envelope);
      } catch (error) {
        console.error('live listener failed', error);
      }
    }
  }
}

/** 1 s, 2 s, 4 s, ... up to 30 s, with some jitter so a restarted server is not stormed. */
export function backoff(attempt) {
  const base = Math.min(MAX_DELAY_MS, 1000 * 2 ** Math.max(0, attempt - 1));
  return base * (0.8 + Math.random() * 0.4);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The task an event concerns, for task and execution events. */
export function taskIdOf(envelope) {
  return envelope?.data?.task_id ?? null;
}

export const DEVICE_EVENTS = new Set([
  'DeviceRegistered',
  'DeviceWentOffline',
  'GroupCreated',
  'GroupUpdated',
  'GroupDeleted',
]);
