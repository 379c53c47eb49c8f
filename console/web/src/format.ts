// How the console names states, levels and times.
import { timestampDate, type Timestamp } from '@bufbuild/protobuf/wkt';
import { HealthLevel, QualityBand } from './gen/wasentinel/monitor/v1/monitor_pb.js';
import { SessionState, StateReason } from './gen/wasentinel/session/v1/session_pb.js';

/// The dot's colour (seed 001 §4: green connected, red not), with amber while connecting or
/// pairing and grey for a session nobody means to be connected.
export type DotColour = 'green' | 'amber' | 'red' | 'grey';

export function dotOf(state: SessionState, level?: HealthLevel): DotColour {
  if (state === SessionState.CONNECTED) return 'green';
  if (level === HealthLevel.INACTIVE) return 'grey';
  if (state === SessionState.CONNECTING || state === SessionState.QR_PENDING) return 'amber';
  return 'red';
}

/// An enum value's protobuf name as words: "SESSION_STATE_CONNECTED"'s "CONNECTED" → "connected".
export const words = (name: string | undefined) => (name ?? 'unknown').toLowerCase().replaceAll('_', ' ');

export const stateName = (s: SessionState) => words(SessionState[s]);
export const reasonName = (r: StateReason) => words(StateReason[r]);
export const levelName = (l: HealthLevel) => words(HealthLevel[l]);
export const qualityName = (q: QualityBand) => words(QualityBand[q]);

export const dateOf = (t?: Timestamp): Date | null => (t && (t.seconds !== 0n || t.nanos !== 0) ? timestampDate(t) : null);

/// "3 min ago", "2 h ago", "5 d ago"; "—" for never.
export function ago(t?: Timestamp | Date | null, now = Date.now()): string {
  const d = t instanceof Date ? t : t ? dateOf(t) : null;
  if (!d) return '—';
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function when(t?: Timestamp | null): string {
  const d = t ? dateOf(t) : null;
  return d ? d.toLocaleString() : '—';
}

/// A phone number as logs and e-mails show it: all but the first 3 and last 2 digits hidden.
export function maskPhone(phone: string): string {
  const digits = phone.replace(/\D/g, '');
  if (digits.length <= 5) return '*'.repeat(digits.length);
  return digits.slice(0, 3) + '*'.repeat(digits.length - 5) + digits.slice(-2);
}
