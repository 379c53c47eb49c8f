// The alerts screen (/alerts): open and recent alerts with their deliveries per channel,
// redelivery, silences, and webhook endpoints (a new or rotated secret is shown once).
// Everything here is alert-service's API (protos/wasentinel/alert/v1/alert.proto); what the
// key's scope does not allow is shown disabled (read: lists; operate: redeliver, silences;
// admin: webhook endpoints).
import { LitElement, html, nothing } from 'lit';
import { durationFromMs, timestampFromMs } from '@bufbuild/protobuf/wkt';
import { can, describeError, type Api, type CallError, type Caller } from './api.js';
import { ago, when, words } from './format.js';
import {
  Alert_Status, Delivery_Channel, Delivery_Kind, Delivery_Status, Severity,
  type Alert, type Delivery, type GetDeliveryStatsResponse, type Silence, type WebhookEndpoint,
} from './gen/wasentinel/alert/v1/alert_pb.js';
import { actionButton, onLink, renderErrors, runAction } from './ui.js';

export const severityName = (s: Severity) => words(Severity[s]);
export const channelName = (c: Delivery_Channel) => words(Delivery_Channel[c]);
const alertStatusName = (s: Alert_Status) => words(Alert_Status[s]);
export const deliveryStatusName = (s: Delivery_Status) => words(Delivery_Status[s]);
const kindName = (k: Delivery_Kind) => words(Delivery_Kind[k]);

/// The event types the health-monitor raises (README "Architecture" › "Alerts").
const EVENT_TYPES = [
  'session.warning', 'session.critical', 'session.logged_out', 'session.manual_intervention',
  'session.recovered', 'session.phone_inactive', 'session_service.unreachable',
];

const SILENCE_FOR: [string, number][] = [['1 hour', 3600e3], ['4 hours', 4 * 3600e3], ['24 hours', 86400e3], ['7 days', 7 * 86400e3]];

type View = 'open' | 'recent';

class WaAlerts extends LitElement {
  static properties = {
    view: { state: true }, alerts: { state: true }, stats: { state: true }, silences: { state: true },
    endpoints: { state: true }, secret: { state: true }, busy: { state: true }, result: { state: true },
    error: { state: true },
  };
  declare view: View;
  declare alerts: Alert[] | null;
  declare stats: GetDeliveryStatsResponse | null;
  declare silences: Silence[] | null;
  declare endpoints: WebhookEndpoint[] | null;
  /// A secret just created or rotated: shown until dismissed, never again.
  declare secret: { endpoint: string; value: string } | null;
  declare busy: string;
  declare result: string;
  declare error: CallError | null;
  api!: Api;
  caller!: Caller | null;
  private generation = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor() {
    super();
    this.view = 'open';
    this.alerts = null;
    this.stats = null;
    this.silences = null;
    this.endpoints = null;
    this.secret = null;
    this.busy = '';
    this.result = '';
    this.error = null;
  }

  createRenderRoot() { return this; }

  connectedCallback() {
    super.connectedCallback();
    this.load();
    // Deliveries move on their own (attempts, retries): look again while the tab is visible.
    this.timer = setInterval(() => { if (document.visibilityState === 'visible' && !this.busy) this.load(); }, 10_000);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    clearInterval(this.timer);
    this.generation += 1;
  }

  private async load() {
    const generation = ++this.generation;
    try {
      const a = this.api.alerts;
      const [alerts, stats, silences, endpoints] = await Promise.all([
        a.listAlerts({ statuses: this.view === 'open' ? [Alert_Status.OPEN] : [], pageSize: 100 }),
        a.getDeliveryStats({ window: durationFromMs(86400e3) }),
        a.listSilences({}),
        a.listWebhookEndpoints({}),
      ]);
      if (generation !== this.generation) return;
      this.alerts = alerts.alerts;
      this.stats = stats;
      this.silences = silences.silences;
      this.endpoints = endpoints.endpoints;
      this.error = null;
    } catch (e) {
      if (generation === this.generation) this.error = describeError('alert-service', e);
    }
  }

  private show(view: View) {
    this.view = view;
    this.alerts = null;
    this.load();
  }

  private act(name: string, run: () => Promise<unknown>, confirmText?: string) {
    return runAction(this, name, 'alert-service', run, () => this.load(), confirmText);
  }

  private button(name: string, scope: 'operate' | 'admin', run: () => Promise<unknown>, confirmText?: string, label = name) {
    const denied = can(this.caller, scope) ? '' : `This API key cannot do this (needs ${scope})`;
    return actionButton(this, name, label, denied, () => this.act(name, run, confirmText), 'plain');
  }

  render() {
    return html`
      <h1>Alerts</h1>
      ${renderErrors({ 'alert-service': this.error ?? undefined })}
      <p role="status" aria-live="polite" data-testid="alerts-result">${this.result}</p>
      ${this.renderAlerts()}
      ${this.renderDeliveryStats()}
      ${this.renderSilences()}
      ${this.renderEndpoints()}`;
  }

  private renderAlerts() {
    return html`<section aria-labelledby="alerts-h">
      <h2 id="alerts-h">${this.view === 'open' ? 'Open alerts' : 'Recent alerts'}
        <span class="ranges">
          <button class="plain" aria-pressed=${this.view === 'open' ? 'true' : 'false'} @click=${() => this.show('open')}>Open</button>
          <button class="plain" aria-pressed=${this.view === 'recent' ? 'true' : 'false'} @click=${() => this.show('recent')}>Recent</button>
        </span></h2>
      ${this.alerts === null ? html`<p class="hint">Loading…</p>`
        : this.alerts.length === 0 ? html`<p class="hint" data-testid="no-alerts">No ${this.view === 'open' ? 'open' : 'recent'} alerts.</p>`
        : html`<ul class="alerts" data-testid="alert-list">${this.alerts.map((a) => this.renderAlert(a))}</ul>`}
    </section>`;
  }

  private renderAlert(a: Alert) {
    const s = a.session;
    return html`<li class="alert ${severityName(a.severity)}" data-alert=${a.id} data-event=${a.eventType}>
      <div class="alert-head">
        <span class="level ${a.severity === Severity.CRITICAL ? 'critical' : a.severity === Severity.WARNING ? 'warning' : 'inactive'}">${severityName(a.severity)}</span>
        <strong>${a.summary || a.eventType}</strong>
        <small>${a.eventType} · ${alertStatusName(a.status)} · raised ${ago(a.raisedAt)}${a.raiseCount > 1 ? ` · ${a.raiseCount}×` : ''}</small>
        ${s?.sessionId ? html`<a href=${`/sessions/${s.sessionId}`} @click=${onLink}>${s.accountName || s.phoneNumberMasked || 'session'}</a>` : nothing}
      </div>
      ${a.deliveries.length ? html`<table class="grid deliveries">
        <caption class="sr-only">Deliveries of this alert</caption>
        <thead><tr><th scope="col">Channel</th><th scope="col">Kind</th><th scope="col">To</th><th scope="col">Status</th>
          <th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col"><span class="sr-only">Action</span></th></tr></thead>
        <tbody>${a.deliveries.map((d) => this.renderDelivery(d))}</tbody></table>` : nothing}
    </li>`;
  }

  private renderDelivery(d: Delivery) {
    const redeliverable = d.status === Delivery_Status.DEAD || d.status === Delivery_Status.FAILED;
    return html`<tr data-delivery=${d.id} data-status=${deliveryStatusName(d.status)}>
      <td>${channelName(d.channel)}</td><td>${kindName(d.kind)}</td><td>${d.target}</td>
      <td><span class="delivery ${deliveryStatusName(d.status)}">${deliveryStatusName(d.status)}</span>
        ${d.status === Delivery_Status.SENT ? html`<small>${ago(d.sentAt)}</small>` : d.nextAttemptAt && d.status !== Delivery_Status.DEAD ? html`<small>next ${when(d.nextAttemptAt)}</small>` : nothing}</td>
      <td>${d.attempts}</td><td class="wrap">${d.lastError || '—'}</td>
      <td>${redeliverable ? this.button(`Redeliver ${d.id}`, 'operate', () => this.api.alerts.redeliverDelivery({ id: d.id }), undefined, 'Redeliver') : nothing}</td>
    </tr>`;
  }

  private renderDeliveryStats() {
    const st = this.stats;
    const secs = (d?: { seconds: bigint; nanos: number }) => (d ? `${(Number(d.seconds) + d.nanos / 1e9).toFixed(2)} s` : '—');
    return html`<section aria-labelledby="stats-h">
      <h2 id="stats-h">Deliveries, last 24 h</h2>
      ${st ? html`<p>Outbox: <strong data-testid="outbox-depth">${st.outboxDepth}</strong> waiting${st.oldestPendingAge ? html`, oldest ${secs(st.oldestPendingAge)}` : nothing}.</p>
        <table class="grid"><thead><tr><th scope="col">Channel</th><th scope="col">Status</th><th scope="col">Count</th>
          <th scope="col">Latency p50</th><th scope="col">Latency p99</th></tr></thead>
        <tbody>${st.rows.map((r) => html`<tr><td>${channelName(r.channel)}</td><td>${deliveryStatusName(r.status)}</td><td>${r.count}</td>
          <td>${r.status === Delivery_Status.SENT ? secs(r.latencyP50) : '—'}</td><td>${r.status === Delivery_Status.SENT ? secs(r.latencyP99) : '—'}</td></tr>`)}</tbody></table>`
        : html`<p class="hint">—</p>`}
    </section>`;
  }

  private renderSilences() {
    const allowed = can(this.caller, 'operate');
    const create = (e: Event) => {
      e.preventDefault();
      const form = e.target as HTMLFormElement;
      const f = new FormData(form);
      const forMs = Number(f.get('for'));
      this.act('Create silence', async () => {
        await this.api.alerts.createSilence({
          sessionId: String(f.get('session') ?? '').trim(),
          tenantId: String(f.get('tenant') ?? '').trim() || this.caller?.tenantId || '',
          eventType: String(f.get('event') ?? '').trim(),
          until: timestampFromMs(Date.now() + forMs),
          comment: String(f.get('comment') ?? ''),
        });
        form.reset();
      });
    };
    return html`<section aria-labelledby="silences-h">
      <h2 id="silences-h">Silences</h2>
      <p class="hint">A silence records matching alerts without sending them. Every field given must match.</p>
      <form class="inline" data-testid="silence-form" @submit=${create}>
        <label>Session id <input name="session" placeholder="any" pattern="[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"></label>
        ${this.caller?.tenantId ? nothing : html`<label>Tenant <input name="tenant" placeholder="any"></label>`}
        <label>Event type <input name="event" list="event-types" placeholder="any"></label>
        <datalist id="event-types">${EVENT_TYPES.map((t) => html`<option value=${t}></option>`)}</datalist>
        <label>For <select name="for">${SILENCE_FOR.map(([label, ms]) => html`<option value=${ms}>${label}</option>`)}</select></label>
        <label>Comment <input name="comment" required maxlength="500"></label>
        <button type="submit" ?disabled=${!allowed || !!this.busy} title=${allowed ? 'Create silence' : 'This API key cannot do this (needs operate)'}>Silence</button>
      </form>
      ${this.silences?.length ? html`<table class="grid" data-testid="silence-list"><thead><tr><th scope="col">Matches</th><th scope="col">Until</th>
          <th scope="col">Comment</th><th scope="col"><span class="sr-only">Action</span></th></tr></thead>
        <tbody>${this.silences.map((s) => html`<tr data-silence=${s.id}>
          <td>${[s.sessionId && `session ${s.sessionId}`, s.tenantId && `tenant ${s.tenantId}`, s.eventType].filter(Boolean).join(' · ') || 'everything'}</td>
          <td>${when(s.until)}</td><td class="wrap">${s.comment}</td>
          <td>${this.button(`Delete silence ${s.id}`, 'operate', () => this.api.alerts.deleteSilence({ id: s.id }), 'Delete this silence? Matching alerts are sent again.', 'Delete')}</td>
        </tr>`)}</tbody></table>` : html`<p class="hint" data-testid="no-silences">No silences.</p>`}
    </section>`;
  }

  private renderEndpoints() {
    const allowed = can(this.caller, 'admin');
    const create = (e: Event) => {
      e.preventDefault();
      const form = e.target as HTMLFormElement;
      const f = new FormData(form);
      this.act('Create endpoint', async () => {
        const r = await this.api.alerts.createWebhookEndpoint({
          url: String(f.get('url') ?? '').trim(),
          eventTypes: String(f.get('events') ?? '').split(',').map((t) => t.trim()).filter(Boolean),
          description: String(f.get('description') ?? ''),
        });
        this.secret = { endpoint: r.endpoint?.url ?? '', value: r.secret };
        form.reset();
      });
    };
    return html`<section aria-labelledby="endpoints-h">
      <h2 id="endpoints-h">Webhook endpoints</h2>
      ${this.secret ? html`<div class="secret" role="alert" data-testid="webhook-secret-box">
          <p>The signing secret of ${this.secret.endpoint}. Copy it now: it is not shown again.</p>
          <code data-testid="webhook-secret">${this.secret.value}</code>
          <button class="plain" @click=${() => navigator.clipboard?.writeText(this.secret?.value ?? '')}>Copy</button>
          <button class="plain" @click=${() => { this.secret = null; }}>Done</button></div>` : nothing}
      <form class="inline" data-testid="endpoint-form" @submit=${create}>
        <label>URL <input name="url" type="url" required placeholder="https://example.com/hooks/wa"></label>
        <label>Event types <input name="events" placeholder="all (or a comma-separated list)"></label>
        <label>Description <input name="description" maxlength="200"></label>
        <button type="submit" ?disabled=${!allowed || !!this.busy} title=${allowed ? 'Create endpoint' : 'This API key cannot do this (needs admin)'}>Add endpoint</button>
      </form>
      ${this.endpoints?.length ? html`<table class="grid" data-testid="endpoint-list"><thead><tr><th scope="col">URL</th><th scope="col">Events</th>
          <th scope="col">Enabled</th><th scope="col">Secret rotated</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${this.endpoints.map((ep) => html`<tr data-endpoint=${ep.id}>
          <td class="wrap">${ep.url}${ep.description ? html`<small>${ep.description}</small>` : nothing}</td>
          <td>${ep.eventTypes.length ? ep.eventTypes.join(', ') : 'all'}</td><td>${ep.enabled ? 'yes' : 'no'}</td>
          <td>${ep.secretRotatedAt ? ago(ep.secretRotatedAt) : 'never'}</td>
          <td>${this.button(`Rotate ${ep.id}`, 'admin', async () => {
              const r = await this.api.alerts.rotateWebhookSecret({ id: ep.id });
              this.secret = { endpoint: ep.url, value: r.secret };
            }, 'Rotate this endpoint\'s secret? The old one stays valid for 24 hours.', 'Rotate secret')}
            ${this.button(`Delete endpoint ${ep.id}`, 'admin', () => this.api.alerts.deleteWebhookEndpoint({ id: ep.id }), `Delete the endpoint ${ep.url}? Nothing more is sent to it.`, 'Delete')}</td>
        </tr>`)}</tbody></table>` : html`<p class="hint" data-testid="no-endpoints">No webhook endpoints.</p>`}
    </section>`;
  }
}

customElements.define('wa-alerts', WaAlerts);
