// The wallet's only script (same origin, no inline code): renews the member code every time step and
// registers the service worker that keeps the shell for when there is no network.
"use strict";
(function () {
  const box = document.getElementById("member-code");
  const offline = document.getElementById("member-code-offline");
  async function renew() {
    try {
      const reply = await fetch("/wallet/member-code", {credentials: "same-origin", cache: "no-store"});
      if (reply.status === 401) { location.assign("/wallet/sign-in"); return; }
      if (!reply.ok) throw new Error(String(reply.status));
      const body = await reply.json();
      const parsed = new DOMParser().parseFromString(body.svg, "image/svg+xml").documentElement;
      box.replaceChildren(document.importNode(parsed, true));
      box.dataset.code = body.code;
      offline.hidden = true;
      return Math.max(1000, body.renew_in * 1000);
    } catch (e) {
      box.replaceChildren();
      box.dataset.code = "";
      offline.hidden = false;
      return 5000;
    }
  }
  async function loop() { setTimeout(loop, await renew()); }
  if (box) setTimeout(loop, 1000 * Number(box.dataset.renewIn || 30));
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/wallet/sw.js", {scope: "/wallet/"}).catch(() => {});
  }
})();
