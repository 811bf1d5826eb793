// What a node reports of the entries it applies (KvRaftStateMachine.setChangeSink): every key
// change and every published message, with the log index of the entry, on every member, live and
// while replaying its log at start. The server turns them into pub/sub deliveries, keyspace
// notifications and KV.WATCH records.

export interface ValueSource {
  valueOf(key: string): string | undefined;
}

export interface ChangeSink {
  /**
   * `key` changed at `index` (cls and event as Redis's notifyKeyspaceEvent; see src/kv/events.ts).
   * `values.valueOf(key)`: the key's value after the change (undefined: removed); ask only during
   * this call, and only if needed (it may copy a value out of a mapped file).
   */
  keyEvent(index: number, cls: number, event: string, key: string, values: ValueSource): void;
  /** Wants `new` events (class n): reported only then, as they cost a lookup per key per write. */
  readonly newKeys: boolean;
  /** A PUBLISH (sharded: SPUBLISH) applied at `index`: deliver to local subscribers; returns how many got it. */
  publish(index: number, channel: string, message: string, sharded: boolean): number;
  /** The keyspace was replaced by a snapshot's at `index`: changes up to it are not reported. */
  restored(index: number): void;
}
