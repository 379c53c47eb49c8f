// The status components for other sites' pages, one script tag (README "Console" ›
// "Embedding the status dot"):
//
//   <script type="module" src="https://console.example/embed/wa-status.js"></script>
//   <wa-status-badge server="https://console.example" session-id="…" api-key="…"></wa-status-badge>
//
// The page's origin must be listed in the console's --allowed_origins; use a read-only key bound
// to the tenant (it is visible to anyone who can read the page).
import { defineStatusElements } from './status.js';

defineStatusElements();
