// The service worker: keeps the console's shell so it opens offline. Shell
// files are fetched from the network first (a new binary's console shows at
// once) and served from the cache when the network fails. API calls and the
// WebSocket are never cached here; the app keeps its own snapshot of the latest
// alerts for offline reading (cache "prognos-data", deleted at sign-out).

const SHELL = 'prognos-shell-v2';
const FILES = ['/', '/app.js', '/api.js', '/ui.js', '/alerts.js', '/fleet.js', '/admin.js', '/onboard.js', '/chart.js', '/style.css', '/manifest.webmanifest', '/icon.svg'];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(SHELL)
      .then((c) => c.addAll(FILES))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('prognos-shell-') && k !== SHELL).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin) return;
  const path = url.pathname === '/index.html' ? '/' : url.pathname;
  if (!FILES.includes(path)) return;
  event.respondWith(
    fetch(event.request)
      .then((res) => {
        if (res.ok) {
          const copy = res.clone();
          caches.open(SHELL).then((c) => c.put(path, copy));
        }
        return res;
      })
      .catch(() => caches.open(SHELL).then((c) => c.match(path)).then((r) => r || Response.error())),
  );
});
