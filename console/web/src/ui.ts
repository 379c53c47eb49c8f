// What every screen of the console shares: in-app links, the per-service error lines, and
// downloads of what a screen shows.
import { html } from 'lit';
import type { CallError, ServiceName } from './api.js';

export function navigate(path: string) {
  history.pushState(null, '', path);
  window.dispatchEvent(new PopStateEvent('popstate'));
}

/// A link of the app: a plain click stays in the page; a click with a modifier (a new tab) or
/// another button is the browser's.
export function onLink(e: MouseEvent) {
  if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate((e.currentTarget as HTMLAnchorElement).getAttribute('href')!);
}

/// What each service that failed said, one line each: the panel names the service.
export function renderErrors(errors: Partial<Record<ServiceName, CallError>>) {
  return Object.values(errors).filter((e): e is CallError => !!e).map((e) => html`
    <p class="err" role="alert" data-testid="panel-error">${e.service} ${e.unreachable ? 'is unreachable' : `answered ${e.codeName}`}: ${e.message}</p>`);
}

/// Saves `text` as a file named `name` (a download of a Blob: no server round trip).
export function download(name: string, type: string, text: string) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/// RFC 4180 CSV: a header row, then one row per record; fields with a comma, quote or line
/// break are quoted, quotes doubled.
export function toCsv(header: string[], rows: (string | number)[][]): string {
  const field = (v: string | number) => {
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [header, ...rows].map((r) => r.map(field).join(',')).join('\r\n') + '\r\n';
}
