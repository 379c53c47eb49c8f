// The status dot and badge of seed 001 §4, as standard web components:
//
//   <wa-status-dot state="connected"></wa-status-dot>
//   <wa-status-badge session-id="…"></wa-status-badge>
//
// <wa-status-dot> only draws: its `state` is a session state name (connected, connecting,
// qr_pending, disconnected, logged_out, …) or a colour (green, amber, red, grey). <wa-status-badge>
// follows one session live — its own event stream, paused while the tab is hidden — and opens a
// popover with the masked number, when it was last connected, the last error, and "Try Reconnect"
// (disabled when the key may not operate). embed.ts registers both for other sites' pages.
import { LitElement, css, html, nothing } from 'lit';
import { callerOf, can, describeError, sessionClient, type Caller, type CallError, type SessionClient } from './api.js';
import { ago, dotOf, maskPhone, reasonName, stateName, type DotColour } from './format.js';
import { SessionState, type Session } from './gen/wasentinel/session/v1/session_pb.js';
import { applyEvent, LiveEvents, type LinkState } from './live.js';

const COLOURS: readonly string[] = ['green', 'amber', 'red', 'grey'];

export class WaStatusDot extends LitElement {
  static properties = { state: { type: String, reflect: true }, label: { type: String } };
  declare state: string;
  declare label: string;

  constructor() {
    super();
    this.state = 'grey';
    this.label = '';
  }

  static styles = css`
    :host { display: inline-block; width: var(--wa-dot-size, 0.75rem); height: var(--wa-dot-size, 0.75rem); }
    span { display: block; width: 100%; height: 100%; border-radius: 50%; background: var(--c); box-shadow: 0 0 0 2px color-mix(in srgb, var(--c) 30%, transparent); }
    .green { --c: var(--wa-green, #1f9d55); }
    .amber { --c: var(--wa-amber, #d69e2e); animation: pulse 1.2s ease-in-out infinite; }
    .red { --c: var(--wa-red, #e02424); }
    .grey { --c: var(--wa-grey, #8a94a6); }
    @keyframes pulse { 50% { opacity: 0.45; } }
    @media (prefers-reduced-motion: reduce) { .amber { animation: none; } }
  `;

  /// A colour as given, or the colour of a session state's name ("connected", "LOGGED_OUT").
  get colour(): DotColour {
    const s = (this.state ?? '').toLowerCase();
    if (COLOURS.includes(s)) return s as DotColour;
    const state = SessionState[s.toUpperCase() as keyof typeof SessionState];
    return state === undefined ? 'grey' : dotOf(state);
  }

  render() {
    return html`<span class=${this.colour} role="img" aria-label=${this.label || `status: ${this.state}`}
      data-colour=${this.colour}></span>`;
  }
}

/// The badge: a dot and a label, and a popover with what a person needs to act.
export class WaStatusBadge extends LitElement {
  static properties = {
    sessionId: { type: String, attribute: 'session-id' },
    server: { type: String },
    apiKey: { type: String, attribute: 'api-key' },
    session: { state: true },
    open: { state: true },
    busy: { state: true },
    result: { state: true },
    error: { state: true },
    link: { state: true },
    caller: { state: true },
  };
  declare sessionId: string;
  declare server: string;
  declare apiKey: string;
  declare session: Session | null;
  declare open: boolean;
  declare busy: boolean;
  declare result: string;
  declare error: CallError | null;
  declare link: LinkState;
  declare caller: Caller | null;

  /// Set by the console app (its signed-in client); embedded badges make their own.
  sessions: SessionClient | null = null;
  private live: LiveEvents | null = null;
  private readonly closeOnOutside = (e: Event) => {
    if (this.open && !e.composedPath().includes(this)) this.open = false;
  };

  constructor() {
    super();
    this.sessionId = '';
    this.server = '';
    this.apiKey = '';
    this.session = null;
    this.open = false;
    this.busy = false;
    this.result = '';
    this.error = null;
    this.link = 'connecting';
    this.caller = null;
  }

  static styles = css`
    :host { position: relative; display: inline-block; font: inherit; }
    button.badge { display: inline-flex; align-items: center; gap: 0.4rem; padding: 0.25rem 0.6rem; border-radius: 999px;
      border: 1px solid var(--wa-border, #c9d1dc); background: var(--wa-surface, #fff); color: inherit; font: inherit; cursor: pointer; }
    button.badge:focus-visible, button.act:focus-visible { outline: 2px solid var(--wa-focus, #2563eb); outline-offset: 2px; }
    .pop { position: absolute; z-index: 10; top: calc(100% + 0.4rem); right: 0; min-width: 16rem; padding: 0.8rem;
      border-radius: 0.5rem; border: 1px solid var(--wa-border, #c9d1dc); background: var(--wa-surface, #fff);
      box-shadow: 0 8px 24px rgb(0 0 0 / 0.18); }
    dl { display: grid; grid-template-columns: auto 1fr; gap: 0.25rem 0.75rem; margin: 0 0 0.75rem; }
    dt { color: var(--wa-muted, #5b6472); }
    dd { margin: 0; overflow-wrap: anywhere; }
    button.act { padding: 0.35rem 0.8rem; border-radius: 0.35rem; border: 0; background: var(--wa-accent, #1d4ed8); color: #fff; font: inherit; cursor: pointer; }
    button.act[disabled] { background: var(--wa-disabled, #8a94a6); cursor: not-allowed; }
    .spin { display: inline-block; width: 0.8rem; height: 0.8rem; border: 2px solid currentColor; border-right-color: transparent;
      border-radius: 50%; animation: r 0.8s linear infinite; vertical-align: -0.1rem; }
    @keyframes r { to { transform: rotate(1turn); } }
    .note { margin: 0.5rem 0 0; color: var(--wa-muted, #5b6472); }
    .err { color: var(--wa-red-text, #b91c1c); }
  `;

  connectedCallback() {
    super.connectedCallback();
    document.addEventListener('click', this.closeOnOutside);
    this.begin();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    document.removeEventListener('click', this.closeOnOutside);
    this.live?.stop();
    this.live = null;
  }

  private async begin() {
    if (!this.sessionId) return;
    if (!this.sessions) {
      const key = this.apiKey;
      this.sessions = sessionClient(this.server || location.origin, () => key);
    }
    this.sessions.getCaller({}).then((c) => { this.caller = callerOf(c); }, () => { this.caller = null; });
    this.live = new LiveEvents(this.sessions, {
      sessionId: this.sessionId,
      onResync: () => this.load(),
      onEvent: (e) => {
        if (this.session) this.session = applyEvent(this.session, e);
        if (e.toState === SessionState.CONNECTED) this.load();
        if (this.busy || this.result) this.result = e.toState === SessionState.CONNECTED ? 'Connected' : this.result;
      },
      onState: (state, error) => {
        this.link = state;
        if (error) this.error = error;
        else if (state === 'live') this.error = null;
      },
    });
    this.live.start();
  }

  private async load() {
    try {
      this.session = (await this.sessions!.getSession({ id: this.sessionId })).session ?? null;
    } catch (e) {
      this.error = describeError('session-service', e);
    }
  }

  private async reconnect() {
    this.busy = true;
    this.result = '';
    try {
      const r = await this.sessions!.reconnect({ id: this.sessionId });
      if (r.session) this.session = r.session;
      this.result = r.session?.state === SessionState.CONNECTED ? 'Connected' : 'Reconnecting…';
    } catch (e) {
      const err = describeError('session-service', e);
      this.result = `Reconnect failed: ${err.message || err.codeName}`;
    } finally {
      this.busy = false;
    }
  }

  render() {
    const s = this.session;
    const state = this.link === 'unreachable' || !s ? 'grey' : dotOf(s.state);
    const label = this.link === 'unreachable' ? 'server unreachable'
      : s ? `${s.accountName || s.sessionName}: ${stateName(s.state)}` : 'loading';
    const mayReconnect = can(this.caller, 'operate');
    return html`
      <button class="badge" aria-haspopup="dialog" aria-expanded=${this.open ? 'true' : 'false'}
        @click=${() => { this.open = !this.open; }}>
        <wa-status-dot state=${state} label=${label}></wa-status-dot>
        <span>${s ? stateName(s.state) : this.link === 'unreachable' ? 'unreachable' : '…'}</span>
      </button>
      ${this.open ? html`
        <div class="pop" role="dialog" aria-label="Session status">
          ${s ? html`<dl>
            <dt>Account</dt><dd>${s.accountName || s.sessionName}</dd>
            <dt>Number</dt><dd>${s.phoneNumber ? maskPhone(s.phoneNumber) : '—'}</dd>
            <dt>State</dt><dd>${stateName(s.state)} (${reasonName(s.reason)})</dd>
            <dt>Last connected</dt><dd>${ago(s.lastConnectedAt)}</dd>
            ${s.lastError ? html`<dt>Error</dt><dd>${s.lastError}</dd>` : nothing}
          </dl>` : nothing}
          ${this.error ? html`<p class="err" role="alert">${this.error.service}: ${this.error.message || this.error.codeName}</p>` : nothing}
          <button class="act" ?disabled=${this.busy || !mayReconnect} @click=${() => this.reconnect()}
            title=${mayReconnect ? 'Close the socket and connect again now' : 'This API key may not reconnect sessions (needs operate)'}>
            ${this.busy ? html`<span class="spin" aria-hidden="true"></span> Reconnecting…` : 'Try Reconnect'}
          </button>
          ${!mayReconnect && this.caller ? html`<p class="note">Read-only key: reconnecting needs the operate scope.</p>` : nothing}
          <p class="note" role="status" aria-live="polite">${this.result}</p>
        </div>` : nothing}
    `;
  }
}

export function defineStatusElements() {
  if (!customElements.get('wa-status-dot')) customElements.define('wa-status-dot', WaStatusDot);
  if (!customElements.get('wa-status-badge')) customElements.define('wa-status-badge', WaStatusBadge);
}
