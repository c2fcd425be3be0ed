// The wallet's service worker: the shell (style, scripts, icons, the offline page and the pay page) is cached
// on install. Pages are personal and always come from head office, with no network the offline page answers
// instead; the pay page is the exception: it holds nothing personal (the device key and its certificate live
// in the browser's IndexedDB), so it comes from the network when there is one and from the cache when not,
// and a member can show a payment code with no connection.
"use strict";
const SHELL = "tillpoint-wallet-shell-3";  // a new name when a cached file changes: phones fetch the shell again
const PAY = "/wallet/pay";
const FILES = ["/wallet/static/wallet.css", "/wallet/static/wallet.js", "/wallet/static/icon.svg",
  "/wallet/static/icon-192.png", "/wallet/static/pay.js", "/wallet/static/vendor/qrcode.js", "/wallet/offline", PAY];
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(
    names.filter((name) => name !== SHELL).map((name) => caches.delete(name)))).then(() => self.clients.claim()));
});
async function payPage(request) {
  try {
    const fresh = await fetch(request);
    if (fresh.ok) {
      const cache = await caches.open(SHELL);
      await cache.put(PAY, fresh.clone());
    }
    return fresh;
  } catch (e) {
    return (await caches.match(PAY)) || (await caches.match("/wallet/offline"));
  }
}
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/wallet/static/")) {
    event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));
  } else if (event.request.mode === "navigate" && url.pathname === PAY) {
    event.respondWith(payPage(event.request));
  } else if (event.request.mode === "navigate") {
    event.respondWith(fetch(event.request).catch(() => caches.match("/wallet/offline")));
  }
});
