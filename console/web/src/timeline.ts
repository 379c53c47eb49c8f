// A session's history drawn as two strips over the chosen range: its state (green connected,
// amber connecting or pairing, red otherwise) and its health level, from the monitor's
// transitions (ListTransitions). Before the first transition in the range, each strip shows
// what that transition came from.
import { html, nothing, svg } from 'lit';
import { timestampMs } from '@bufbuild/protobuf/wkt';
import { levelName, stateName } from './format.js';
import { HealthLevel, type ListTransitionsResponse } from './gen/wasentinel/monitor/v1/monitor_pb.js';
import { SessionState } from './gen/wasentinel/session/v1/session_pb.js';

interface Span { from: number; to: number; value: number }

/// The spans of one strip: `pick` names the value a transition moves to (0: unchanged) and
/// `from` the one it left.
function spans(history: ListTransitionsResponse, since: number, until: number,
  pick: (t: ListTransitionsResponse['transitions'][number]) => [number, number]): Span[] {
  const changes = history.transitions.map((t) => ({ at: timestampMs(t.at!), fv: pick(t) })).filter((c) => c.fv[1] !== 0);
  if (changes.length === 0) return [];
  const out: Span[] = [];
  let value = changes[0].fv[0];
  let from = since;
  for (const c of changes) {
    const at = Math.min(Math.max(c.at, since), until);
    if (value !== 0 && at > from) out.push({ from, to: at, value });
    value = c.fv[1];
    from = at;
  }
  if (value !== 0 && until > from) out.push({ from, to: until, value });
  return out;
}

const stateClass = (s: SessionState) => (s === SessionState.CONNECTED ? 'healthy'
  : s === SessionState.CONNECTING || s === SessionState.QR_PENDING ? 'warning' : 'critical');
const levelClass = (l: HealthLevel) => levelName(l);

export function renderUptime(history: ListTransitionsResponse, since: number, until: number) {
  const W = 960;
  const x = (t: number) => ((t - since) / (until - since)) * W;
  const strip = (y: number, list: Span[], cls: (v: number) => string, name: (v: number) => string) => list.map((s) =>
    svg`<rect class=${cls(s.value)} x=${x(s.from)} y=${y} width=${Math.max(0.5, x(s.to) - x(s.from))} height="22"><title>${name(s.value)}: ${new Date(s.from).toLocaleString()} – ${new Date(s.to).toLocaleString()}</title></rect>`);
  const states = spans(history, since, until, (t) => [t.fromState, t.toState]);
  const levels = spans(history, since, until, (t) => [t.fromLevel, t.toLevel]);
  if (states.length === 0 && levels.length === 0) return nothing;
  return html`<figure class="chart" data-testid="uptime-chart">
    <svg viewBox="0 0 ${W} 56" preserveAspectRatio="none" role="img"
      aria-label=${`State and level from ${new Date(since).toLocaleString()} to ${new Date(until).toLocaleString()}`}>
      ${strip(2, states, (v) => stateClass(v as SessionState), (v) => stateName(v as SessionState))}
      ${strip(30, levels, (v) => levelClass(v as HealthLevel), (v) => levelName(v as HealthLevel))}
    </svg>
    <figcaption>top: state (<span class="key healthy"></span>connected <span class="key warning"></span>connecting
      <span class="key critical"></span>offline); bottom: health level · ${new Date(since).toLocaleString()} → now</figcaption>
  </figure>`;
}
