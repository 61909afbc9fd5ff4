// Devices and groups, shared by every screen: loaded once, refreshed by live device and group
// events and, since heartbeats are not events, by polling GET /api/devices every 10 s while
// anyone is watching.

import { api } from './api.js';
import { DEVICE_EVENTS } from './live.js';

const POLL_MS = 10_000;

class Fleet {
  constructor() {
    this.devices = [];
    this.groups = [];
    this.error = null;
    this.loaded = false;
    this.watchers = new Set();
    this.timer = null;
    this.loading = null;
  }

  /** Attaches the live feed: device and group events reload the registry. */
  attach(live) {
    live.on((envelope) => {
      if (DEVICE_EVENTS.has(envelope.type)) this.refresh();
    });
    live.onResync(() => this.refresh());
  }

  /** watcher({devices, groups, error}) now and on every change; returns the unsubscribe. */
  watch(watcher) {
    this.watchers.add(watcher);
    if (this.loaded || this.error) watcher(this.snapshot());
    if (!this.loaded) this.refresh();
    if (!this.timer) this.timer = setInterval(() => this.refresh(), POLL_MS);
    return () => {
      this.watchers.delete(watcher);
      if (this.watchers.size === 0) {
        clearInterval(this.timer);
        this.timer = null;
      }
    };
  }

  snapshot() {
    return { devices: this.devices, groups: this.groups, error: this.error };
  }

  refresh() {
    this.loading ??= Promise.all([api.devices(), api.groups()])
      .then(([devices, groups]) => {
        this.devices = devices.items;
        this.groups = groups.items;
        this.error = null;
        this.loaded = true;
      })
      .catch((error) => {
        this.error = error;
      })
      .finally(() => {
        this.loading = null;
        for (const watcher of this.watchers) watcher(this.snapshot());
      });
    return this.loading;
  }

  device(id) {
    return this.devices.find((device) => device.id === id) ?? null;
  }

  group(id) {
    return this.groups.find((group) => group.id === id) ?? null;
  }

  reset() {
    this.devices = [];
    this.groups = [];
    this.loaded = false;
    this.error = null;
  }
}

export const fleet = new Fleet();
