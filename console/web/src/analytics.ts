// The analytics screen (/analytics): sessions by level over time, drops and reconnects per
// bucket, the recovery success rate (health-monitor's GetHealthHistory), and alert delivery
// latency (alert-service's GetDeliveryStats), over 24 hours or 7, 30 or 90 days; what is shown
// exports as CSV or JSON.
import { LitElement, html, nothing, svg } from 'lit';
import { durationFromMs, timestampDate, timestampFromMs, type Duration, type Timestamp } from '@bufbuild/protobuf/wkt';
import { describeError, type Api, type CallError, type Caller, type ServiceName } from './api.js';
import { channelName, deliveryStatusName } from './alerts.js';
import { Delivery_Status, type GetDeliveryStatsResponse } from './gen/wasentinel/alert/v1/alert_pb.js';
import type { GetHealthHistoryResponse, GetHealthHistoryResponse_Bucket } from './gen/wasentinel/monitor/v1/monitor_pb.js';
import { download, renderErrors, toCsv } from './ui.js';

const HOUR = 3600e3;
const DAY = 24 * HOUR;

/// The ranges offered: 24 hours by hour, else days by day (each from 00:00 UTC).
const RANGES = [{ days: 1, label: '24 h' }, { days: 7, label: '7 days' }, { days: 30, label: '30 days' }, { days: 90, label: '90 days' }];

export function rangeOf(days: number, now = Date.now()): { since: number; until: number; bucket: number } {
  if (days === 1) {
    const hour = Math.floor(now / HOUR) * HOUR;
    return { since: hour - 23 * HOUR, until: now, bucket: HOUR };
  }
  const midnight = Math.floor(now / DAY) * DAY;
  return { since: midnight - (days - 1) * DAY, until: now, bucket: DAY };
}

const ms = (d?: Duration) => (d ? Number(d.seconds) * 1000 + d.nanos / 1e6 : 0);
const iso = (t?: Timestamp) => (t ? timestampDate(t).toISOString() : '');
const successPercent = (b: GetHealthHistoryResponse_Bucket) =>
  (b.recoveryAttempts > 0n ? (100 * Number(b.recoveriesSucceeded)) / Number(b.recoveryAttempts) : null);

/// The exported table: one row per bucket (the CSV's columns, the JSON's fields).
const COLUMNS = ['start', 'end', 'healthy', 'warning', 'critical', 'inactive', 'drops', 'reconnects',
  'recovery_attempts', 'recoveries_succeeded', 'recovery_success_percent'] as const;

function rowOf(b: GetHealthHistoryResponse_Bucket): (string | number)[] {
  const p = successPercent(b);
  return [iso(b.start), iso(b.end), Number(b.healthy), Number(b.warning), Number(b.critical), Number(b.inactive),
    Number(b.drops), Number(b.reconnects), Number(b.recoveryAttempts), Number(b.recoveriesSucceeded), p === null ? '' : p.toFixed(1)];
}

class WaAnalytics extends LitElement {
  static properties = { days: { state: true }, history: { state: true }, delivery: { state: true }, errors: { state: true }, loading: { state: true } };
  declare days: number;
  declare history: GetHealthHistoryResponse | null;
  declare delivery: GetDeliveryStatsResponse | null;
  declare errors: Partial<Record<ServiceName, CallError>>;
  declare loading: boolean;
  api!: Api;
  caller!: Caller | null;
  private generation = 0;
  private range = rangeOf(7);

  constructor() {
    super();
    this.days = 7;
    this.history = null;
    this.delivery = null;
    this.errors = {};
    this.loading = false;
  }

  createRenderRoot() { return this; }

  connectedCallback() {
    super.connectedCallback();
    this.load();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    this.generation += 1;
  }

  private async load() {
    const generation = ++this.generation;
    const range = rangeOf(this.days);
    this.loading = true;
    const errors: Partial<Record<ServiceName, CallError>> = {};
    const [history, delivery] = await Promise.all([
      this.api.monitor.getHealthHistory({
        tenantId: this.caller?.tenantId ?? '', since: timestampFromMs(range.since), until: timestampFromMs(range.until),
        bucket: durationFromMs(range.bucket),
      }).catch((e) => { errors['health-monitor'] = describeError('health-monitor', e); return null; }),
      this.api.alerts.getDeliveryStats({ window: durationFromMs(range.until - range.since) })
        .catch((e) => { errors['alert-service'] = describeError('alert-service', e); return null; }),
    ]);
    if (generation !== this.generation) return;
    this.range = range;
    this.history = history;
    this.delivery = delivery;
    this.errors = errors;
    this.loading = false;
  }

  private show(days: number) {
    this.days = days;
    this.load();
  }

  private fileName(ext: string) {
    const day = (t: number) => new Date(t).toISOString().slice(0, 10);
    return `wa-sentinel-analytics-${day(this.range.since)}-${day(this.range.until)}.${ext}`;
  }

  private exportCsv() {
    if (!this.history) return;
    download(this.fileName('csv'), 'text/csv', toCsv([...COLUMNS], this.history.buckets.map(rowOf)));
  }

  private exportJson() {
    const h = this.history;
    if (!h) return;
    const doc = {
      tenant_id: this.caller?.tenantId ?? '',
      since: new Date(this.range.since).toISOString(),
      until: new Date(this.range.until).toISOString(),
      bucket_seconds: this.range.bucket / 1000,
      totals: {
        drops: Number(h.drops), recovery_attempts: Number(h.recoveryAttempts),
        recoveries_succeeded: Number(h.recoveriesSucceeded), recovery_success_percent: h.recoverySuccessPercent,
      },
      buckets: h.buckets.map((b) => Object.fromEntries(COLUMNS.map((c, i) => [c, rowOf(b)[i]]))),
      delivery: this.delivery?.rows.map((r) => ({
        channel: channelName(r.channel), status: deliveryStatusName(r.status), count: Number(r.count),
        latency_p50_ms: ms(r.latencyP50), latency_p99_ms: ms(r.latencyP99),
      })) ?? [],
    };
    download(this.fileName('json'), 'application/json', `${JSON.stringify(doc, null, 2)}\n`);
  }

  render() {
    const h = this.history;
    return html`
      <h1>Analytics
        <span class="ranges">${RANGES.map((r) => html`<button class="plain" aria-pressed=${this.days === r.days ? 'true' : 'false'}
          @click=${() => this.show(r.days)}>${r.label}</button>`)}</span></h1>
      ${renderErrors(this.errors)}
      <div class="actions">
        <button class="plain" ?disabled=${!h} @click=${() => this.exportCsv()} data-testid="export-csv">Export CSV</button>
        <button class="plain" ?disabled=${!h} @click=${() => this.exportJson()} data-testid="export-json">Export JSON</button>
        ${this.loading ? html`<span class="hint" role="status">Loading…</span>` : nothing}
      </div>
      ${h ? html`
        <section class="cards" aria-label="Totals">
          <div class="card"><h2>Drops</h2><p class="big" data-testid="total-drops">${h.drops}</p></div>
          <div class="card"><h2>Recovery attempts</h2><p class="big">${h.recoveryAttempts}</p></div>
          <div class="card"><h2>Recovery success</h2><p class="big" data-testid="recovery-success">${h.recoveryAttempts > 0n ? `${h.recoverySuccessPercent.toFixed(1)} %` : '—'}</p>
            <p class="hint">attempts followed by the session connected within 5 minutes</p></div>
        </section>
        <section aria-labelledby="levels-h"><h2 id="levels-h">Sessions by level</h2>${this.levelChart(h)}</section>
        <section aria-labelledby="drops-h"><h2 id="drops-h">Drops and reconnects</h2>${this.dropChart(h)}</section>
        <section aria-labelledby="success-h"><h2 id="success-h">Recovery success rate</h2>${this.successChart(h)}</section>` : nothing}
      ${this.renderDelivery()}
      ${h ? this.renderTable(h) : nothing}`;
  }

  // The charts: SVG bars, one slot per bucket, scaled to the chart's height. Colours come from
  // the stylesheet's classes (the Content-Security-Policy forbids style attributes).
  private chart(label: string, n: number, bars: (i: number, x: number, w: number, scale: (v: number) => number) => unknown, max: number, legend: [string, string][]) {
    const W = 960;
    const H = 180;
    const slot = W / Math.max(1, n);
    const scale = (v: number) => (max > 0 ? (v / max) * (H - 20) : 0);
    return html`<figure class="chart">
      <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label=${label}>
        <line class="axis" x1="0" y1=${H - 0.5} x2=${W} y2=${H - 0.5}></line>
        ${Array.from({ length: n }, (_, i) => bars(i, i * slot, slot, scale))}
      </svg>
      <figcaption>${legend.map(([cls, text]) => html`<span class="key ${cls}"></span>${text} `)} <span class="hint">max ${max}</span></figcaption>
    </figure>`;
  }

  private levelChart(h: GetHealthHistoryResponse) {
    const totals = h.buckets.map((b) => Number(b.healthy + b.warning + b.critical + b.inactive));
    const parts = ['healthy', 'warning', 'critical', 'inactive'] as const;
    return this.chart('Sessions by level at the end of each period', h.buckets.length, (i, x, w, scale) => {
      const b = h.buckets[i];
      let y = 180;
      return parts.map((p) => {
        const height = scale(Number(b[p]));
        y -= height;
        return height > 0 ? svg`<rect class=${p} x=${x + w * 0.1} y=${y} width=${w * 0.8} height=${height}><title>${iso(b.start)}: ${b[p]} ${p}</title></rect>` : nothing;
      });
    }, Math.max(0, ...totals), [['healthy', 'healthy'], ['warning', 'warning'], ['critical', 'critical'], ['inactive', 'inactive']]);
  }

  private dropChart(h: GetHealthHistoryResponse) {
    const max = Math.max(0, ...h.buckets.flatMap((b) => [Number(b.drops), Number(b.reconnects)]));
    return this.chart('Drops and reconnects in each period', h.buckets.length, (i, x, w, scale) => {
      const b = h.buckets[i];
      const d = scale(Number(b.drops));
      const r = scale(Number(b.reconnects));
      return svg`<rect class="critical" x=${x + w * 0.1} y=${180 - d} width=${w * 0.4} height=${d}><title>${iso(b.start)}: ${b.drops} drops</title></rect>
        <rect class="healthy" x=${x + w * 0.5} y=${180 - r} width=${w * 0.4} height=${r}><title>${iso(b.start)}: ${b.reconnects} reconnects</title></rect>`;
    }, max, [['critical', 'drops'], ['healthy', 'reconnects']]);
  }

  private successChart(h: GetHealthHistoryResponse) {
    return this.chart('Share of recovery attempts that succeeded in each period', h.buckets.length, (i, x, w, scale) => {
      const b = h.buckets[i];
      const p = successPercent(b);
      if (p === null) return nothing;
      const height = Math.max(1, scale(p));
      return svg`<rect class="accent" x=${x + w * 0.1} y=${180 - height} width=${w * 0.8} height=${height}><title>${iso(b.start)}: ${p.toFixed(1)} % of ${b.recoveryAttempts}</title></rect>`;
    }, 100, [['accent', '% of attempts (no bar: no attempts)']]);
  }

  private renderDelivery() {
    const d = this.delivery;
    const sent = d?.rows.filter((r) => r.status === Delivery_Status.SENT) ?? [];
    return html`<section aria-labelledby="latency-h"><h2 id="latency-h">Alert delivery latency</h2>
      ${d ? sent.length ? html`<table class="grid" data-testid="delivery-latency"><thead><tr><th scope="col">Channel</th><th scope="col">Sent</th>
          <th scope="col">p50</th><th scope="col">p99</th></tr></thead>
        <tbody>${sent.map((r) => html`<tr><td>${channelName(r.channel)}</td><td>${r.count}</td>
          <td>${(ms(r.latencyP50) / 1000).toFixed(2)} s</td><td>${(ms(r.latencyP99) / 1000).toFixed(2)} s</td></tr>`)}</tbody></table>`
        : html`<p class="hint">Nothing sent in this range.</p>` : html`<p class="hint">—</p>`}
    </section>`;
  }

  private renderTable(h: GetHealthHistoryResponse) {
    const day = this.range.bucket >= DAY;
    const label = (t?: Timestamp) => {
      if (!t) return '';
      const d = timestampDate(t);
      return day ? d.toISOString().slice(0, 10) : `${d.toISOString().slice(0, 13)}:00Z`;
    };
    return html`<section aria-labelledby="table-h"><h2 id="table-h">By ${day ? 'day' : 'hour'} (UTC)</h2>
      <div class="scroll-x"><table class="grid" data-testid="analytics-table"><thead><tr><th scope="col">${day ? 'Day' : 'Hour'}</th>
        <th scope="col">Healthy</th><th scope="col">Warning</th><th scope="col">Critical</th><th scope="col">Inactive</th>
        <th scope="col">Drops</th><th scope="col">Reconnects</th><th scope="col">Recovery attempts</th><th scope="col">Succeeded</th></tr></thead>
      <tbody>${[...h.buckets].reverse().map((b) => html`<tr><th scope="row">${label(b.start)}</th><td>${b.healthy}</td><td>${b.warning}</td>
        <td>${b.critical}</td><td>${b.inactive}</td><td>${b.drops}</td><td>${b.reconnects}</td><td>${b.recoveryAttempts}</td>
        <td>${b.recoveriesSucceeded}</td></tr>`)}</tbody></table></div></section>`;
  }
}

customElements.define('wa-analytics', WaAnalytics);
