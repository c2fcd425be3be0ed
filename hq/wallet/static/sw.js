// The wallet's service worker: the shell (style, script, icons, the offline page) is cached on install;
// pages always come from head office (they are personal and never cached), and when there is no network
// the offline page answers instead.
"use strict";
const SHELL = "tillpoint-wallet-shell-1";
const FILES = ["/wallet/static/wallet.css", "/wallet/static/wallet.js", "/wallet/static/icon.svg",
  "/wallet/static/icon-192.png", "/wallet/offline"];
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(
    names.filter((name) => name !== SHELL).map((name) => caches.delete(name)))).then(() => self.clients.claim()));
});
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/wallet/static/")) {
    event.respondWith(caches.match(event.request).then((hit) => hit || fetch(event.request)));
  } else if (event.request.mode === "navigate") {
    event.respondWith(fetch(event.request).catch(() => caches.match("/wallet/offline")));
  }
});
