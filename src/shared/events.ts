import { EventEmitter } from 'node:events';

// Domain events: the domains announce changes here; the gateway listens (e.g. to refresh its MAC library
// cache or close a removed device's session). Domains never call the gateway directly.
export interface DomainEventMap {
  'mac-library.added': { macs: string[] };
  'mac-library.removed': { mac: string };
  'device.removed': { mac: string };
}

export class DomainEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(50);
  }

  emit<K extends keyof DomainEventMap>(name: K, payload: DomainEventMap[K]): void {
    this.emitter.emit(name, payload);
  }

  on<K extends keyof DomainEventMap>(name: K, listener: (payload: DomainEventMap[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }
}
