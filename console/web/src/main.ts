// The console app: sign in with an API key, then the sessions, a session's page, and pairing.
// Routes (History API; the console process answers every one with index.html):
//   /                  sessions
//   /sessions/<id>     one session (alert e-mails link here: --reconnect_url)
//   /pair              link a new device
//   /alerts            alerts, deliveries, silences, webhook endpoints (alerts.ts)
//   /analytics         the fleet over time, with CSV and JSON export (analytics.ts)
import { LitElement, html, nothing } from 'lit';
import { keyed } from 'lit/directives/keyed.js';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import qrcode from 'qrcode-generator';
import { callerOf, can, describeError, keyStore, makeApi, type Api, type CallError, type Caller, type ServiceName } from './api.js';
import { ago, dotOf, levelName, qualityName, reasonName, stateName, when } from './format.js';
import { HealthLevel, type SessionHealth, type ListTransitionsResponse } from './gen/wasentinel/monitor/v1/monitor_pb.js';
import { SessionState, type Session } from './gen/wasentinel/session/v1/session_pb.js';
import { applyEvent, LiveEvents, type LinkState } from './live.js';
import { defineStatusElements } from './status.js';
import { actionButton, navigate, onLink, renderErrors, runAction } from './ui.js';
import { renderUptime } from './timeline.js';
import { channelName, deliveryStatusName } from './alerts.js';
import { Alert_Status, type Alert } from './gen/wasentinel/alert/v1/alert_pb.js';
import './alerts.js';
import './analytics.js';

defineStatusElements();

interface Row {
  session: Session;
  health?: SessionHealth;
}

const ROW_HEIGHT = 44;
const PAGE = 500;

class WaConsole extends LitElement {
  static properties = {
    caller: { state: true }, route: { state: true }, signInError: { state: true }, rows: { state: true },
    link: { state: true }, linkError: { state: true }, retryIn: { state: true }, toasts: { state: true },
    panelErrors: { state: true }, filter: { state: true }, scrollTop: { state: true }, loading: { state: true },
    signingIn: { state: true }, events: { state: true }, rowsVersion: { state: true },
  };
  declare caller: Caller | null;
  declare route: string;
  declare signInError: string;
  /// Every session shown, by id; changed in place, with rowsVersion bumped (touched()).
  declare rows: Map<string, Row>;
  declare rowsVersion: number;
  declare link: LinkState;
  declare linkError: CallError | null;
  declare retryIn: number;
  declare toasts: { id: number; text: string; level: string; more?: number }[];
  declare panelErrors: Partial<Record<ServiceName, CallError>>;
  declare signingIn: boolean;
  declare filter: { text: string; level: string; state: string; tenant: string };
  declare scrollTop: number;
  declare loading: boolean;
  /// Events applied since sign-in, and the last one's sequence (the header's live indicator).
  declare events: { count: number; last: bigint };

  api: Api = makeApi();
  private live: LiveEvents | null = null;
  private toastId = 0;
  private viewportHeight = 1200;
  private healthWanted = new Set<string>();
  private healthTimer: ReturnType<typeof setTimeout> | undefined;
  private healthAgain = new Set<ReturnType<typeof setTimeout>>();
  private unknown = new Set<string>();
  private unknownTimer: ReturnType<typeof setTimeout> | undefined;
  private epoch = 0;  // one per sign-in: work a sign-out overtook is dropped
  private filterCache: { version: number; filter: WaConsole['filter']; rows: Row[] } | null = null;
  private pollTimer: ReturnType<typeof setInterval> | null = null;
  private loadGeneration = 0;  // a later load supersedes one still paging
  private readonly onPopState = () => { this.route = location.pathname; };

  constructor() {
    super();
    this.caller = null;
    this.route = location.pathname;
    this.signInError = '';
    this.rows = new Map();
    this.rowsVersion = 0;
    this.link = 'connecting';
    this.linkError = null;
    this.retryIn = 0;
    this.toasts = [];
    this.panelErrors = {};
    this.filter = { text: '', level: '', state: '', tenant: '' };
    this.scrollTop = 0;
    this.loading = false;
    this.signingIn = true;
    this.events = { count: 0, last: 0n };
  }

  createRenderRoot() { return this; }  // light DOM: the page's stylesheet applies

  connectedCallback() {
    super.connectedCallback();
    window.addEventListener('popstate', this.onPopState);
    if (keyStore.get()) this.signIn(keyStore.get());
    else this.tryAnonymous();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    window.removeEventListener('popstate', this.onPopState);
    this.leave();
  }

  // A console in front of services without keys (the demo) needs no sign-in.
  private async tryAnonymous() {
    try {
      const c = await this.api.sessions.getCaller({});
      if (!c.authenticationEnabled) this.enter(callerOf(c));
    } catch { /* the sign-in form stays */ } finally {
      this.signingIn = false;
    }
  }

  private async signIn(key: string) {
    keyStore.set(key);
    this.signingIn = true;
    try {
      const c = await this.api.sessions.getCaller({});
      this.signInError = '';
      this.enter(callerOf(c));
    } catch (e) {
      const err = describeError('session-service', e);
      // Only a refused key is forgotten: an outage keeps it for the next try.
      if (err.unauthenticated) keyStore.clear();
      this.signInError = err.unauthenticated ? 'This API key is not valid.'
        : err.unreachable ? 'session-service cannot be reached; try again shortly.' : `${err.codeName}: ${err.message}`;
    } finally {
      this.signingIn = false;
    }
  }

  private enter(caller: Caller) {
    this.caller = caller;
    this.live = new LiveEvents(this.api.sessions, {
      onResync: () => this.loadAll(),
      onEvent: (e) => {
        this.events = { count: this.events.count + 1, last: e.sequence };
        const row = this.rows.get(e.sessionId);
        if (e.toState === SessionState.DELETED) {
          this.rows.delete(e.sessionId);
        } else if (row) {
          row.session = applyEvent(row.session, e);
        } else {
          this.fetchSession(e.sessionId);
        }
        this.touched();
        this.scheduleHealth(e.sessionId);
      },
      onState: (state, error, retryInMs) => {
        this.link = state;
        this.linkError = error ?? null;
        this.retryIn = retryInMs ?? 0;
        if (error?.unauthenticated) this.signOut();
      },
    });
    this.live.start();
    // The monitor's levels and scores between events (time alone moves a session to critical).
    this.pollTimer = setInterval(() => { if (document.visibilityState === 'visible') this.loadHealth(); }, 15000);
  }

  private signOut() {
    keyStore.clear();
    this.leave();
    this.caller = null;
    this.rows = new Map();
    this.touched();
    this.panelErrors = {};
    this.filter = { text: '', level: '', state: '', tenant: '' };
    this.events = { count: 0, last: 0n };
  }

  // Stops everything a signed-in console runs: the stream, the poll, the pending health asks.
  private leave() {
    this.live?.stop();
    this.live = null;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    clearTimeout(this.healthTimer);
    this.healthTimer = undefined;
    this.healthWanted.clear();
    for (const t of this.healthAgain) clearTimeout(t);
    this.healthAgain.clear();
    clearTimeout(this.unknownTimer);
    this.unknownTimer = undefined;
    this.unknown.clear();
    this.epoch += 1;
    this.loadGeneration += 1;
  }

  // Sessions events name that are not shown yet (created since the load), fetched together a
  // moment later: a burst of thousands of creations is a few BulkGetSessions, not thousands of
  // calls.
  private fetchSession(id: string, delayMs = 100) {
    this.unknown.add(id);
    if (this.unknownTimer) return;
    this.unknownTimer = setTimeout(async () => {
      const epoch = this.epoch;
      const ids = [...this.unknown];
      this.unknown.clear();
      const failed: string[] = [];
      for (let i = 0; i < ids.length; i += PAGE) {
        const chunk = ids.slice(i, i + PAGE);
        try {
          const { sessions } = await this.api.sessions.bulkGetSessions({ ids: chunk });
          if (epoch !== this.epoch) return;  // signed out meanwhile (leave() reset the rest)
          for (const session of sessions) this.rows.set(session.id, { ...this.rows.get(session.id), session });
          this.touched();
        } catch {
          failed.push(...chunk);  // busy or unreachable: asked again in a second
        }
      }
      if (epoch !== this.epoch) return;
      this.unknownTimer = undefined;
      for (const failedId of failed) this.fetchSession(failedId, 1000);
      if (this.unknown.size && !this.unknownTimer) this.fetchSession([...this.unknown][0]);
    }, delayMs);
  }

  /// The rows changed in place: render again (and filter again).
  private touched() { this.rowsVersion += 1; }

  // Every session, page by page (the first rows show as soon as the first page is in), then the
  // monitor's view of them. Rows are updated in place, so what events brought meanwhile stays;
  // sessions gone since the last load are dropped once the last page is in.
  async loadAll() {
    const generation = ++this.loadGeneration;
    this.loading = true;
    const seen = new Set<string>();
    try {
      let token = '';
      do {
        const page = await this.api.sessions.listSessions({ pageSize: PAGE, pageToken: token });
        if (generation !== this.loadGeneration) return;
        for (const s of page.sessions) {
          seen.add(s.id);
          this.rows.set(s.id, { session: s, health: this.rows.get(s.id)?.health });
        }
        this.touched();
        token = page.nextPageToken;
      } while (token);
      for (const id of this.rows.keys()) if (!seen.has(id)) this.rows.delete(id);
      this.touched();
      this.panelErrors = { ...this.panelErrors, 'session-service': undefined };
    } catch (e) {
      if (generation !== this.loadGeneration) return;
      this.panelErrors = { ...this.panelErrors, 'session-service': describeError('session-service', e) };
    } finally {
      if (generation === this.loadGeneration) this.loading = false;
    }
    await this.loadHealth();
  }

  private async loadHealth() {
    try {
      let token = '';
      do {
        const page = await this.api.monitor.listSessionHealth({ pageSize: PAGE, pageToken: token });
        for (const h of page.sessions) this.noteHealth(h);
        token = page.nextPageToken;
      } while (token);
      this.touched();
      this.panelErrors = { ...this.panelErrors, 'health-monitor': undefined };
    } catch (e) {
      this.panelErrors = { ...this.panelErrors, 'health-monitor': describeError('health-monitor', e) };
    }
  }

  private noteHealth(h: SessionHealth) {
    const row = this.rows.get(h.sessionId);
    if (!row) return;
    if (row.health && row.health.level !== h.level) {
      this.toast(`${row.session.accountName || row.session.sessionName}: ${levelName(row.health.level)} → ${levelName(h.level)}`,
        levelName(h.level));
    }
    row.health = h;
  }

  // The monitor assesses a session as its events arrive: ask it shortly after, and once more a
  // moment later, for every session an event named meanwhile; a burst of more than a few is
  // one paged list instead of a call per session.
  private scheduleHealth(id: string) {
    this.healthWanted.add(id);
    if (this.healthTimer) return;
    this.healthTimer = setTimeout(() => {
      this.healthTimer = undefined;
      const ids = [...this.healthWanted];
      this.healthWanted.clear();
      this.askHealth(ids);
      const again: ReturnType<typeof setTimeout> = setTimeout(() => { this.healthAgain.delete(again); this.askHealth(ids); }, 1500);
      this.healthAgain.add(again);
    }, 250);
  }

  private async askHealth(ids: string[]) {
    if (ids.length > 20) return this.loadHealth();
    await Promise.all(ids.map(async (sessionId) => {
      try {
        const { health } = await this.api.monitor.getSessionHealth({ sessionId });
        if (health) this.noteHealth(health);
      } catch { /* the monitor may not know it yet */ }
    }));
    this.touched();
  }

  // A few toasts at a time; beyond, one line counts the rest (an outage of hundreds of
  // sessions is one message, not hundreds).
  private toast(text: string, level: string) {
    const id = ++this.toastId;
    if (this.toasts.length >= 4) {
      const more = this.toasts.find((t) => t.more);
      const n = (more?.more ?? 0) + 1;
      const line = { id: more?.id ?? id, text: `and ${n} more level change${n === 1 ? '' : 's'}`, level: 'warning', more: n };
      this.toasts = [...this.toasts.filter((t) => !t.more), line];
      if (more) return;
      setTimeout(() => { this.toasts = this.toasts.filter((t) => t.id !== line.id); }, 6000);
      return;
    }
    this.toasts = [...this.toasts, { id, text, level }];
    setTimeout(() => { this.toasts = this.toasts.filter((t) => t.id !== id); }, 6000);
  }

  // What the header and the filters need of every row, once per change of the rows.
  private summaryCache: { version: number; critical: number; overall: 'green' | 'red' | 'grey'; tenants: string[] } | null = null;
  private get summary() {
    if (this.summaryCache?.version === this.rowsVersion) return this.summaryCache;
    let critical = 0;
    let allUp = true;
    const tenants = new Set<string>();
    for (const r of this.rows.values()) {
      if (r.health?.level === HealthLevel.CRITICAL) critical += 1;
      if (r.session.state !== SessionState.CONNECTED && r.health?.level !== HealthLevel.INACTIVE) allUp = false;
      tenants.add(r.session.tenantId);
    }
    const overall: 'green' | 'red' | 'grey' = this.rows.size === 0 ? 'grey' : allUp ? 'green' : 'red';
    this.summaryCache = { version: this.rowsVersion, critical, overall, tenants: [...tenants].sort() };
    return this.summaryCache;
  }

  updated() {
    // Row positions through the CSSOM: the Content-Security-Policy forbids style attributes.
    const spacer = this.querySelector<HTMLElement>('.spacer');
    if (spacer) spacer.style.height = `${spacer.dataset.height}px`;
    for (const row of this.querySelectorAll<HTMLElement>('.spacer .row')) {
      row.style.transform = `translateY(${row.dataset.offset}px)`;
    }
    // The tab tells a critical session from afar: title and favicon.
    const critical = this.caller ? this.summary.critical : 0;
    document.title = critical ? `(${critical} critical) WA Sentinel` : 'WA Sentinel';
    const icon = document.getElementById('favicon') as HTMLLinkElement | null;
    const colour = critical ? '%23e02424' : '%231f9d55';
    const href = `data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><circle cx='16' cy='16' r='13' fill='${colour}'/></svg>`;
    if (icon && icon.href !== href) icon.href = href;
  }

  render() {
    if (!this.caller && this.signingIn) return html`<main class="signin"><p role="status">Signing in…</p></main>`;
    if (!this.caller) return this.renderSignIn();
    const overall = this.summary.overall;
    return html`
      <header class="top">
        <a class="brand" href="/" @click=${onLink}><wa-status-dot state=${this.link === 'unreachable' ? 'grey' : overall}
          label=${this.link === 'unreachable' ? 'server unreachable' : overall === 'green' ? 'all sessions connected' : 'some sessions are not connected'}></wa-status-dot>
          WA Sentinel</a>
        <nav aria-label="Main">
          <a href="/" @click=${onLink} aria-current=${this.route === '/' ? 'page' : nothing}>Sessions</a>
          <a href="/pair" @click=${onLink} aria-current=${this.route === '/pair' ? 'page' : nothing}>Link a device</a>
          <a href="/alerts" @click=${onLink} aria-current=${this.route === '/alerts' ? 'page' : nothing}>Alerts</a>
          <a href="/analytics" @click=${onLink} aria-current=${this.route === '/analytics' ? 'page' : nothing}>Analytics</a>
        </nav>
        <span class="live ${this.link}" data-testid="live" data-link=${this.link} data-events=${this.events.count}
          data-sequence=${String(this.events.last)} title=${`${this.events.count} events since sign-in${this.events.count ? `, the last #${this.events.last}` : ''}`}>
          ${this.link === 'live' ? 'Live' : this.link === 'paused' ? 'Paused while hidden' : this.link === 'connecting' ? 'Connecting…' : this.link === 'unreachable' ? 'Unreachable' : 'Refused'}</span>
        <span class="who">${this.caller.keyName} · ${this.caller.scope}${this.caller.tenantId ? ` · ${this.caller.tenantId}` : ''}</span>
        <button class="plain" @click=${() => this.signOut()}>Sign out</button>
      </header>
      ${this.link === 'unreachable' || this.link === 'error' ? html`<div class="banner" role="alert" data-testid="link-${this.link}">
          ${this.link === 'unreachable' ? 'Server unreachable' : 'Live updates refused'}
          (${this.linkError?.service}: ${this.linkError?.message || this.linkError?.codeName}); retrying in ${Math.round(this.retryIn / 1000)} s.</div>` : nothing}
      <main>${this.renderRoute()}</main>
      <div class="toasts" role="status" aria-live="polite">
        ${this.toasts.map((t) => html`<div class="toast ${t.level}">${t.text}</div>`)}
      </div>`;
  }

  private renderRoute() {
    const m = /^\/sessions\/([0-9a-f-]{36})$/.exec(this.route);
    // Keyed: another session's page is a new element, with its own stream.
    if (m) return keyed(m[1], html`<wa-session-page .api=${this.api} .caller=${this.caller} session-id=${m[1]}></wa-session-page>`);
    if (this.route === '/pair') return html`<wa-pairing .api=${this.api} .caller=${this.caller}></wa-pairing>`;
    if (this.route === '/alerts') return html`<wa-alerts .api=${this.api} .caller=${this.caller}></wa-alerts>`;
    if (this.route === '/analytics') return html`<wa-analytics .api=${this.api} .caller=${this.caller}></wa-analytics>`;
    return this.renderSessions();
  }

  private renderSignIn() {
    return html`<main class="signin">
      <form @submit=${(e: Event) => { e.preventDefault(); const f = new FormData(e.target as HTMLFormElement); this.signIn(String(f.get('key') ?? '')); }}>
        <h1>WA Sentinel</h1>
        <label for="key">API key</label>
        <input id="key" name="key" type="password" autocomplete="off" required>
        <button type="submit">Sign in</button>
        ${this.signInError ? html`<p class="err" role="alert">${this.signInError}</p>` : nothing}
        <p class="hint">The key stays in this tab only (session storage).</p>
      </form></main>`;
  }

  // The rows the filter lets through, critical first; computed again only when the rows or the
  // filter changed (not on every scroll).
  private filtered(): Row[] {
    const c = this.filterCache;
    if (c && c.version === this.rowsVersion && c.filter === this.filter) return c.rows;
    const rows = this.computeFiltered();
    this.filterCache = { version: this.rowsVersion, filter: this.filter, rows };
    return rows;
  }

  private computeFiltered(): Row[] {
    const f = this.filter;
    const text = f.text.trim().toLowerCase();
    const digits = text.replace(/\D/g, '');
    const rank = (r: Row) => {
      const l = r.health?.level;
      return l === HealthLevel.CRITICAL ? 0 : l === HealthLevel.WARNING ? 1 : r.session.state !== SessionState.CONNECTED ? 2 : 3;
    };
    return [...this.rows.values()].filter((r) => {
      if (f.level && String(r.health?.level ?? '') !== f.level) return false;
      if (f.state && String(r.session.state) !== f.state) return false;
      if (f.tenant && r.session.tenantId !== f.tenant) return false;
      if (text) {
        const hay = `${r.session.accountName} ${r.session.sessionName} ${r.session.tenantId}`.toLowerCase();
        if (!hay.includes(text) && !(digits.length >= 3 && r.session.phoneNumber.includes(digits))) return false;
      }
      return true;
    }).sort((a, b) => rank(a) - rank(b) || (a.session.accountName || a.session.sessionName).localeCompare(b.session.accountName || b.session.sessionName));
  }

  private renderSessions() {
    const rows = this.filtered();
    const viewport = this.viewportHeight;
    const first = Math.max(0, Math.floor(this.scrollTop / ROW_HEIGHT) - 10);
    const last = Math.min(rows.length, Math.ceil((this.scrollTop + viewport) / ROW_HEIGHT) + 10);
    const tenants = this.summary.tenants;
    const setFilter = (k: keyof WaConsole['filter']) => (e: Event) => {
      this.filter = { ...this.filter, [k]: (e.target as HTMLInputElement).value };
    };
    return html`
      <h1>Sessions <span class="count">${rows.length} of ${this.rows.size}</span></h1>
      ${renderErrors(this.panelErrors)}
      <div class="filters">
        <label>Search <input type="search" placeholder="name or number" .value=${this.filter.text} @input=${setFilter('text')}></label>
        <label>Level <select @change=${setFilter('level')}><option value="">any</option>
          ${[HealthLevel.CRITICAL, HealthLevel.WARNING, HealthLevel.HEALTHY, HealthLevel.INACTIVE].map((l) => html`<option value=${String(l)}>${levelName(l)}</option>`)}</select></label>
        <label>State <select @change=${setFilter('state')}><option value="">any</option>
          ${[SessionState.CONNECTED, SessionState.CONNECTING, SessionState.DISCONNECTED, SessionState.QR_PENDING, SessionState.LOGGED_OUT, SessionState.REPLACED, SessionState.BANNED].map((s) => html`<option value=${String(s)}>${stateName(s)}</option>`)}</select></label>
        ${this.caller?.tenantId ? nothing : html`<label>Tenant <select @change=${setFilter('tenant')}><option value="">any</option>${tenants.map((t) => html`<option>${t}</option>`)}</select></label>`}
      </div>
      <div class="table" role="table" aria-label="Sessions" aria-rowcount=${rows.length + 1}>
        <div class="row head" role="row" aria-rowindex="1">
          <span role="columnheader">Session</span><span role="columnheader">State</span><span role="columnheader">Level</span>
          <span role="columnheader">Score</span><span role="columnheader">Offline since</span><span role="columnheader">Last connected</span>
          <span role="columnheader">Phone last seen</span>
        </div>
        <div class="scroller" data-testid="sessions-scroller" @scroll=${(e: Event) => { const el = e.target as HTMLElement; this.viewportHeight = el.clientHeight; this.scrollTop = el.scrollTop; }}>
          <div class="spacer" data-height=${rows.length * ROW_HEIGHT}>
            ${rows.slice(first, last).map((r, i) => this.renderRow(r, first + i))}
          </div>
        </div>
      </div>
      ${this.loading ? html`<p class="hint" role="status">Loading sessions…</p>` : nothing}`;
  }

  private renderRow(r: Row, index: number) {
    const s = r.session;
    const h = r.health;
    const open = () => navigate(`/sessions/${s.id}`);
    return html`<div class="row" role="row" aria-rowindex=${index + 2} tabindex="0" data-session=${s.id}
        data-offset=${index * ROW_HEIGHT}
        @click=${open} @keydown=${(e: KeyboardEvent) => { if (e.key === 'Enter') open(); }}>
      <span role="cell" class="name"><wa-status-dot state=${dotOf(s.state, h?.level)} label=${`${stateName(s.state)}`}></wa-status-dot>
        ${s.accountName || s.sessionName}<small>${s.tenantId}</small></span>
      <span role="cell">${stateName(s.state)}</span>
      <span role="cell"><span class="level ${h ? levelName(h.level) : ''}">${h ? levelName(h.level) : '—'}</span></span>
      <span role="cell">${h ? html`${h.score} <small>${qualityName(h.quality)}</small>` : '—'}</span>
      <span role="cell">${h?.offlineSince ? ago(h.offlineSince) : '—'}</span>
      <span role="cell">${ago(s.lastConnectedAt)}</span>
      <span role="cell">${ago(s.phoneLastSeenAt)}</span>
    </div>`;
  }
}

/// One session: its state, level and score factors, the actions, and its history.
class WaSessionPage extends LitElement {
  static properties = {
    sessionId: { type: String, attribute: 'session-id' }, session: { state: true }, health: { state: true },
    history: { state: true }, range: { state: true }, busy: { state: true }, result: { state: true },
    errors: { state: true }, alerts: { state: true },
  };
  declare sessionId: string;
  declare session: Session | null;
  declare health: SessionHealth | null;
  declare history: ListTransitionsResponse | null;
  declare range: number;
  declare busy: string;
  declare result: string;
  declare errors: Partial<Record<ServiceName, CallError>>;
  declare alerts: Alert[] | null;
  api!: Api;
  caller!: Caller | null;
  private historyRange = { since: 0, until: 0 };
  private live: LiveEvents | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private loadGeneration = 0;  // answers of a superseded load are dropped
  private historyGeneration = 0;

  constructor() {
    super();
    this.sessionId = '';
    this.session = null;
    this.health = null;
    this.history = null;
    this.range = 1;
    this.busy = '';
    this.result = '';
    this.errors = {};
    this.alerts = null;
  }

  createRenderRoot() { return this; }

  connectedCallback() {
    super.connectedCallback();
    this.live = new LiveEvents(this.api.sessions, {
      sessionId: this.sessionId,
      onResync: () => this.load(),
      // The event is the news (the dot follows it at once); the rest (health, history) a moment
      // later, once for a burst of events.
      onEvent: (e) => {
        if (this.session) this.session = applyEvent(this.session, e);
        clearTimeout(this.refreshTimer);
        this.refreshTimer = setTimeout(() => this.load(), 300);
      },
      onState: () => {},
    });
    this.live.start();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    this.live?.stop();
    clearTimeout(this.refreshTimer);
    this.loadGeneration += 1;
    this.historyGeneration += 1;
  }

  private async load() {
    const generation = ++this.loadGeneration;
    const errors: Partial<Record<ServiceName, CallError>> = {};
    const [session, health, historyError, alerts] = await Promise.all([
      this.api.sessions.getSession({ id: this.sessionId }).then((r) => r.session ?? null,
        (e) => { errors['session-service'] = describeError('session-service', e); return this.session; }),
      this.api.monitor.getSessionHealth({ sessionId: this.sessionId }).then((r) => r.health ?? null,
        (e) => { errors['health-monitor'] = describeError('health-monitor', e); return this.health; }),
      this.loadHistory(),
      this.api.alerts.listAlerts({ sessionId: this.sessionId, statuses: [Alert_Status.OPEN], pageSize: 20 }).then((r) => r.alerts,
        (e) => { errors['alert-service'] = describeError('alert-service', e); return this.alerts; }),
    ]);
    if (generation !== this.loadGeneration) return;
    this.session = session;
    this.health = health;
    this.alerts = alerts;
    errors['health-monitor'] ??= historyError ?? undefined;
    this.errors = errors;
  }

  // The monitor's transitions over the chosen range (its default end: now); the error, if any.
  private async loadHistory(): Promise<CallError | null> {
    const generation = ++this.historyGeneration;
    try {
      const until = Date.now();
      const since = until - this.range * 86400_000;
      const history = await this.api.monitor.listTransitions({
        sessionId: this.sessionId, since: timestampFromMs(since), until: timestampFromMs(until), pageSize: 1000,
      });
      if (generation === this.historyGeneration) {
        this.historyRange = { since, until };
        this.history = history;
      }
      return null;
    } catch (e) {
      return describeError('health-monitor', e);
    }
  }

  private async showRange(days: number) {
    this.range = days;
    const error = await this.loadHistory();
    if (error) this.errors = { ...this.errors, 'health-monitor': error };
  }

  render() {
    const s = this.session;
    const h = this.health;
    const id = this.sessionId;
    const op = can(this.caller, 'operate');
    const needs = op ? '' : 'This API key is read-only (needs operate)';
    const button = (name: string, run: () => Promise<unknown>, confirmText?: string, service: ServiceName = 'session-service') =>
      actionButton(this, name, name, needs, () => runAction(this, name, service, run, () => this.load(), confirmText));
    return html`
      ${renderErrors(this.errors)}
      <h1><wa-status-dot state=${s ? dotOf(s.state, h?.level) : 'grey'} label=${s ? stateName(s.state) : 'unknown'}></wa-status-dot>
        ${s ? s.accountName || s.sessionName : 'Session'} <small>${s?.tenantId}</small></h1>
      ${s ? html`<section class="cards">
        <div class="card"><h2>State</h2><p class="big" data-testid="state">${stateName(s.state)}</p><p>${reasonName(s.reason)}${s.lastError ? html` — ${s.lastError}` : nothing}</p>
          <p>Last connected ${ago(s.lastConnectedAt)} · phone last seen ${ago(s.phoneLastSeenAt)}</p></div>
        <div class="card"><h2>Health</h2>${h ? html`<p class="big"><span class="level ${levelName(h.level)}">${levelName(h.level)}</span> ${h.score}/100</p>
          <p>${h.cause}</p>
          <ul class="factors">${h.factors.map((f) => html`<li>−${f.penalty} ${f.name}: ${f.detail}</li>`)}</ul>
          ${h.manualInterventionRequired ? html`<p class="err">Needs a person: ${h.manualInterventionReason}</p>` : nothing}` : html`<p>—</p>`}</div>
      </section>
      <section class="actions" aria-label="Actions">
        ${button('Reconnect', () => this.api.sessions.reconnect({ id }))}
        ${button('Connect', () => this.api.sessions.connect({ id }))}
        ${button('Probe', () => this.api.sessions.probeSession({ id }))}
        ${button('Disconnect', () => this.api.sessions.disconnect({ id }), 'Disconnect this session? It stays offline until someone connects it.')}
        ${button('Log out', () => this.api.sessions.logout({ id }), 'Log this device out at WhatsApp? It must be linked again with a QR code.')}
        ${h?.manualInterventionRequired ? button('Acknowledge', () => this.api.monitor.acknowledgeSession({ sessionId: id, note: `console: ${this.caller?.keyName}` }), undefined, 'health-monitor') : nothing}
        <p role="status" aria-live="polite">${this.result}</p>
      </section>` : nothing}
      <section aria-labelledby="open-alerts-h">
        <h2 id="open-alerts-h">Open alerts</h2>
        ${this.alerts === null ? html`<p class="hint">—</p>` : this.alerts.length === 0 ? html`<p class="hint">None.</p>`
          : html`<ul class="timeline" data-testid="session-alerts">${this.alerts.map((a) => html`<li><time>${when(a.raisedAt)}</time>
            <strong>${a.summary || a.eventType}</strong> <small>${a.eventType} · ${a.deliveries.map((d) => `${channelName(d.channel)} ${deliveryStatusName(d.status)}`).join(', ')}</small></li>`)}</ul>`}
        <p><a href="/alerts" @click=${onLink}>All alerts</a></p>
      </section>
      <section>
        <h2>History <span class="ranges">${[1, 7, 30, 90].map((d) => html`<button class="plain" aria-pressed=${this.range === d ? 'true' : 'false'}
          @click=${() => this.showRange(d)}>${d === 1 ? '24 h' : `${d} days`}</button>`)}</span></h2>
        ${this.history ? html`<p>Uptime <strong>${this.history.uptimePercent.toFixed(2)} %</strong></p>
          ${renderUptime(this.history, this.historyRange.since, this.historyRange.until)}
          <ol class="timeline">${[...this.history.transitions].reverse().map((t) => html`<li><time>${when(t.at)}</time>
            ${stateName(t.fromState)} → ${stateName(t.toState)} · ${levelName(t.fromLevel)} → ${levelName(t.toLevel)} <small>${t.cause}</small></li>`)}</ol>
          <h3>Recovery attempts</h3>
          <ol class="timeline">${this.history.recoveries.map((r) => html`<li><time>${when(r.at)}</time> ${r.trigger} ${r.error ? html`<small>${r.error}</small>` : nothing}</li>`)}</ol>` : html`<p>—</p>`}
      </section>`;
  }
}

/// Linking a new device: the QR code as it rotates (or a phone-number code), until it links.
class WaPairing extends LitElement {
  static properties = { status: { state: true }, qr: { state: true }, code: { state: true }, linked: { state: true } };
  declare status: string;
  declare qr: string;
  declare code: string;
  declare linked: Session | null;
  api!: Api;
  caller!: Caller | null;
  private abort: AbortController | null = null;

  constructor() {
    super();
    this.status = '';
    this.qr = '';
    this.code = '';
    this.linked = null;
  }

  createRenderRoot() { return this; }

  disconnectedCallback() {
    super.disconnectedCallback();
    this.abort?.abort();
  }

  private async pair(form: FormData) {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.status = 'Starting…';
    this.qr = '';
    this.code = '';
    this.linked = null;
    try {
      for await (const u of this.api.sessions.startPairing({
        tenantId: String(form.get('tenant') || this.caller?.tenantId || ''),
        sessionName: String(form.get('name') || 'primary'),
        accountName: String(form.get('account') || ''),
        ownerEmail: String(form.get('email') || ''),
        phoneNumber: String(form.get('phone') || ''),
      }, { signal: abort.signal })) {
        switch (u.update.case) {
          case 'session': this.status = 'Waiting for the phone'; break;
          case 'qr': this.qr = u.update.value.code; this.status = `Scan with WhatsApp › Linked devices (code ${u.update.value.index} of ${u.update.value.total})`; break;
          case 'pairingCode': this.code = u.update.value.code; this.status = 'Type this code on the phone: WhatsApp › Linked devices › Link with phone number'; break;
          case 'success': this.linked = u.update.value.session ?? null; this.qr = ''; this.code = ''; this.status = 'Linked'; break;
          case 'failure': this.qr = ''; this.code = ''; this.status = `Not linked: ${u.update.value.message}`; break;
        }
      }
    } catch (e) {
      if (!abort.signal.aborted) {
        const err = describeError('session-service', e);
        this.status = `Pairing failed: ${err.code} ${err.message}`;
      }
    }
  }

  updated() {
    const canvas = this.querySelector('canvas');
    if (!canvas || !this.qr) return;
    const q = qrcode(0, 'L');
    q.addData(this.qr);
    q.make();
    const n = q.getModuleCount();
    const scale = 6;
    const quiet = 4;
    canvas.width = canvas.height = (n + quiet * 2) * scale;
    const ctx = canvas.getContext('2d')!;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#000';
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) if (q.isDark(r, c)) ctx.fillRect((c + quiet) * scale, (r + quiet) * scale, scale, scale);
  }

  render() {
    const admin = can(this.caller, 'operate');
    return html`<h1>Link a device</h1>
      <form class="pair" @submit=${(e: Event) => { e.preventDefault(); this.pair(new FormData(e.target as HTMLFormElement)); }}>
        ${this.caller?.tenantId ? nothing : html`<label>Tenant <input name="tenant" required></label>`}
        <label>Session name <input name="name" placeholder="primary"></label>
        <label>Account name <input name="account"></label>
        <label>Owner e-mail <input name="email" type="email"></label>
        <label>Phone number (for a code instead of a QR) <input name="phone" inputmode="tel"></label>
        <button type="submit" ?disabled=${!admin} title=${admin ? 'Start pairing' : 'This API key may not pair devices'}>Start pairing</button>
      </form>
      <p role="status" aria-live="polite" data-testid="pairing-status">${this.status}</p>
      ${this.qr ? html`<canvas data-testid="qr" aria-label="QR code to scan with WhatsApp"></canvas>` : nothing}
      ${this.code ? html`<p class="code" data-testid="pairing-code">${this.code}</p>` : nothing}
      ${this.linked ? html`<p><a href=${`/sessions/${this.linked.id}`} @click=${onLink}>Open ${this.linked.accountName || this.linked.sessionName}</a></p>` : nothing}`;
  }
}

customElements.define('wa-session-page', WaSessionPage);
customElements.define('wa-pairing', WaPairing);
customElements.define('wa-console', WaConsole);
