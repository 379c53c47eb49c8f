// The live event stream, with seed 001 §3's discipline: streaming while the tab is visible;
// when it is hidden the stream closes, and on return it resumes from the last sequence seen
// (`after_sequence`), so nothing is missed and nothing is repeated. When the server cannot be
// reached it backs off 5, 10, then every 30 s, and says so.
import type { Api } from './api.js';
import { describeError, isCancelled, type CallError } from './api.js';
import type { SessionEvent } from './gen/wasentinel/session/v1/session_pb.js';

export const BACKOFF_MS = [5000, 10000, 30000];

export type LinkState = 'connecting' | 'live' | 'paused' | 'unreachable';

export interface LiveOptions {
  sessionId?: string;
  onEvent: (e: SessionEvent) => void;
  onState: (state: LinkState, error?: CallError, retryInMs?: number) => void;
  /// Called when the stream (re)starts, before any event of it: what was loaded before may be
  /// stale (the stream could not resume), so reload it.
  onResync?: () => void;
  backoffMs?: number[];
}

export class LiveEvents {
  private lastSequence: bigint | null = null;
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = false;
  private readonly onVisibility = () => this.visibilityChanged();

  constructor(private readonly api: Api, private readonly options: LiveOptions) {}

  start() {
    document.addEventListener('visibilitychange', this.onVisibility);
    if (document.visibilityState === 'visible') this.open();
    else this.options.onState('paused');
  }

  stop() {
    this.stopped = true;
    document.removeEventListener('visibilitychange', this.onVisibility);
    this.close();
  }

  /// The last sequence delivered (null before the first event).
  get sequence(): bigint | null { return this.lastSequence; }

  private visibilityChanged() {
    if (this.stopped) return;
    if (document.visibilityState === 'hidden') {
      this.close();
      this.options.onState('paused');
    } else if (!this.abort) {
      this.failures = 0;
      this.open();
    }
  }

  private close() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    this.abort = null;
  }

  private async open() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const abort = new AbortController();
    this.abort = abort;
    this.options.onState('connecting');
    const resume = this.lastSequence;
    try {
      const stream = this.api.sessions.watchSessionEvents(
        { afterSequence: resume ?? undefined, sessionId: this.options.sessionId ?? '' },
        { signal: abort.signal });
      if (resume === null) this.options.onResync?.();
      let announced = false;
      for await (const event of stream) {
        if (!announced) {
          announced = true;
          this.failures = 0;
          this.options.onState('live');
        }
        if (this.lastSequence !== null && event.sequence <= this.lastSequence) continue;
        this.lastSequence = event.sequence;
        this.options.onEvent(event);
      }
      // The server ended the stream (a restart): open again at once, from where we are.
      if (!abort.signal.aborted) this.retry(null, 0);
    } catch (e) {
      if (abort.signal.aborted || isCancelled(e)) return;
      const error = describeError('session-service', e);
      if (error.code === 'OutOfRange') {
        // Older than what the service keeps: start afresh and reload.
        this.lastSequence = null;
        this.retry(null, 0);
        return;
      }
      this.retry(error);
    }
  }

  private retry(error: CallError | null, delayMs?: number) {
    if (this.stopped || document.visibilityState !== 'visible') return;
    const backoff = this.options.backoffMs ?? BACKOFF_MS;
    const wait = delayMs ?? backoff[Math.min(this.failures, backoff.length - 1)];
    if (error) {
      this.failures += 1;
      this.options.onState('unreachable', error, wait);
    }
    this.abort = null;
    this.timer = setTimeout(() => this.open(), wait);
  }
}
