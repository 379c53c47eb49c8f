// What every screen of the console shares: in-app links, the per-service error lines, and
// downloads of what a screen shows.
import { html, nothing } from 'lit';
import { describeError, type CallError, type ServiceName } from './api.js';

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

/// A screen whose buttons run actions: the one under way, and what the last one answered.
export interface ActionHost {
  busy: string;
  result: string;
}

/// Runs action `name` for `host` once `confirmText` (if any) is confirmed: the action's button
/// spins while it runs, then the host's result line says "done" or what `service` answered, and
/// `reload` shows its effect.
export async function runAction(host: ActionHost, name: string, service: ServiceName,
  run: () => Promise<unknown>, reload: () => Promise<unknown>, confirmText?: string) {
  if (confirmText && !window.confirm(confirmText)) return;
  host.busy = name;
  host.result = '';
  try {
    await run();
    host.result = `${name}: done`;
    await reload();
  } catch (e) {
    const err = describeError(service, e);
    host.result = `${name} failed: ${err.codeName} ${err.message}`;
  } finally {
    host.busy = '';
  }
}

/// An action's button: disabled while any action runs, and when the key may not run it (then
/// `denied` is its title, so the reason shows instead of an error later).
export function actionButton(host: ActionHost, name: string, label: string, denied: string,
  onClick: () => void, cls = '') {
  return html`<button class=${cls} ?disabled=${!!denied || !!host.busy} title=${denied || name} @click=${onClick}>
    ${host.busy === name ? html`<span class="spin" aria-hidden="true"></span>` : nothing}${label}</button>`;
}
