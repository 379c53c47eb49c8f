// The live event stream, with seed 001 §3's discipline: streaming while the tab is visible;
// when it is hidden the stream closes, and on return it resumes from the last sequence seen
// (`after_sequence`), so nothing is missed and nothing is repeated. When the server cannot be
// reached it backs off 5, 10, then every 30 s, and says so.
import { Code } from '@connectrpc/connect';
import { describeError, isCancelled, type CallError, type SessionClient } from './api.js';
import type { Session, SessionEvent } from './gen/wasentinel/session/v1/session_pb.js';

export const BACKOFF_MS = [5000, 10000, 30000];

/// 'error': the service answered, but refused the watch (a scope, a limit); 'unreachable': it
/// did not answer.
export type LinkState = 'connecting' | 'live' | 'paused' | 'unreachable' | 'error';

export interface LiveOptions {
  sessionId?: string;
  onEvent: (e: SessionEvent) => void;
  onState: (state: LinkState, error?: CallError, retryInMs?: number) => void;
  /// Called when a stream that does not resume from an earlier one is in place at the service
  /// (its response header), before any of its events: reload what is shown then, and no event
  /// after the reload is missed.
  onResync?: () => void;
  backoffMs?: number[];
}

/// `session` as the event leaves it (the stored row catches up on the next load).
export function applyEvent(session: Session, e: SessionEvent): Session {
  return { ...session, state: e.toState, reason: e.reason, lastError: e.error || session.lastError };
}

export class LiveEvents {
  private lastSequence: bigint | null = null;
  private abort: AbortController | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private stopped = false;
  private readonly onVisibility = () => this.visibilityChanged();

  constructor(private readonly sessions: SessionClient, private readonly options: LiveOptions) {}

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

  private visibilityChanged() {
    if (this.stopped) return;
    if (document.visibilityState === 'hidden') {
      this.close();
      this.options.onState('paused');
    } else if (!this.abort && !this.timer) {
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
    this.timer = null;
    if (this.stopped) return;
    const abort = new AbortController();
    this.abort = abort;
    this.options.onState('connecting');
    const resume = this.lastSequence;
    let inPlace = false;
    try {
      const stream = this.sessions.watchSessionEvents(
        { afterSequence: resume ?? undefined, sessionId: this.options.sessionId ?? '' },
        {
          signal: abort.signal,
          // The service answers the header once the watch is registered; a live watch's names
          // the last sequence stored then (x-watch-after), where a later resume starts even if
          // no event came before it (docs/api.md, WatchSessionEvents).
          onHeader: (headers) => {
            inPlace = true;
            this.failures = 0;
            this.options.onState('live');
            if (resume === null) {
              const after = headers.get('x-watch-after');
              if (after && /^\d+$/.test(after)) this.lastSequence = BigInt(after);
              this.options.onResync?.();
            }
          },
        });
      for await (const event of stream) {
        if (this.lastSequence !== null && event.sequence <= this.lastSequence) continue;
        this.lastSequence = event.sequence;
        this.options.onEvent(event);
      }
      // The server ended a stream that was in place (a restart, a drain): open again at once
      // from where we are. One that ended before it was in place waits like a failure.
      if (!abort.signal.aborted) this.retry(null, inPlace ? 0 : undefined);
    } catch (e) {
      if (abort.signal.aborted || isCancelled(e)) return;
      const error = describeError('session-service', e);
      if (error.code === Code.OutOfRange) {
        // Older than what the service keeps: start afresh (and reload).
        this.lastSequence = null;
        this.retry(null, 0);
        return;
      }
      this.retry(error);
    }
  }

  private retry(error: CallError | null, delayMs?: number) {
    this.abort = null;
    if (this.stopped || document.visibilityState !== 'visible') return;
    const backoff = this.options.backoffMs ?? BACKOFF_MS;
    const wait = delayMs ?? backoff[Math.min(this.failures, backoff.length - 1)];
    this.failures += delayMs === 0 ? 0 : 1;
    // Armed before anyone is told: a listener that stops this stream clears it.
    this.timer = setTimeout(() => this.open(), wait);
    if (error) this.options.onState(error.unreachable ? 'unreachable' : 'error', error, wait);
  }
}
