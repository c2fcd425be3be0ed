// The wallet's only script (same origin, no inline code): renews the member code every time step, reads a
// till's check-in QR with the camera, and registers the service worker that keeps the shell for when there is
// no network.
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
  // The check-in page: the phone's camera reads the till's QR where the browser has a BarcodeDetector;
  // elsewhere the field takes the code or its link (or the phone's camera app opens the link itself).
  const camera = document.getElementById("checkin-camera");
  if (camera && "BarcodeDetector" in window && navigator.mediaDevices) {
    camera.hidden = false;
    camera.addEventListener("click", async () => {
      const video = document.getElementById("checkin-video");
      let stream;
      try {
        stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}});
      } catch (e) {
        return;
      }
      video.srcObject = stream;
      video.hidden = false;
      await video.play();
      const detector = new BarcodeDetector({formats: ["qr_code"]});
      const look = async () => {
        try {
          const found = await detector.detect(video);
          if (found.length) {
            stream.getTracks().forEach((track) => track.stop());
            document.getElementById("checkin-code").value = found[0].rawValue;
            document.getElementById("checkin-form").requestSubmit();
            return;
          }
        } catch (e) { /* a frame the detector could not read: the next one */ }
        setTimeout(look, 250);
      };
      look();
    });
  }
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.register("/wallet/sw.js", {scope: "/wallet/"}).catch(() => {});
  }
})();
