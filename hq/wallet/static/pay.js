// The pay page's script (same origin, no inline code; every page loads it for signing out). This phone's device key is an Ed25519 key made by
// WebCrypto whose private half cannot be read out of the browser; it is kept in IndexedDB with the device
// certificate head office issued for it and the counter of the codes made. A payment code is the till's
// own format (terminal/payments.py), made here with no network:
//   code    version u8 (1) | cert_id 8 bytes | time_step u32 | counter u32 | Ed25519 signature 64 bytes
//   signed  "tillpoint-pay/1" | version | cert_id | time_step | counter          (time_step = unix time / 30)
//   text    "TPP1:" + base64url(code), no padding
// The counter is saved before a code is shown, so no two codes share one. The QR carries the same bytes in
// base45 (as the till's own codes do) and is drawn by the vendored qrcode-generator (static/vendor/qrcode.js, MIT).
"use strict";
const TillpointPay = (function () {
  const PREFIX = "TPP1:";
  const MEMBER_PREFIX = "TPM2:";
  const MEMBER_DEVICE_FORM = 2;
  const VERSION = 1;
  const STEP_SECONDS = 30;
  const DOMAIN = new TextEncoder().encode("tillpoint-pay/1");
  const DB_NAME = "tillpoint-pay";
  const STORE = "device";
  const THIS = "this";
  const MAX_MODULES = 37; // QR version 5
  const RENEWALS = 6; // a shown code is renewed every step for three minutes, then "New code" makes another

  function hexToBytes(hex) {
    if (!/^([0-9a-f]{2})*$/.test(hex)) throw new Error("not hex");
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
    return out;
  }

  function bytesToHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function base64url(bytes) {
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  // RFC 9285, as terminal/base45.py: the QR shows the code's bytes in base45, so the whole text is in the QR
  // alphanumeric mode and the code stays at version 5 (the same bytes, the same signature: tills read both).
  const BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";

  function base45(bytes) {
    let out = "";
    for (let i = 0; i + 1 < bytes.length; i += 2) {
      const n = bytes[i] * 256 + bytes[i + 1];
      out += BASE45[n % 45] + BASE45[Math.floor(n / 45) % 45] + BASE45[Math.floor(n / 2025)];
    }
    if (bytes.length % 2) {
      const n = bytes[bytes.length - 1];
      out += BASE45[n % 45] + BASE45[Math.floor(n / 45)];
    }
    return out;
  }

  function fromBase64url(text) {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  }

  // What the QR carries for a code text (TPP1: or TPM2:): its prefix and its bytes in base45
  // (terminal/qrcodes.py qr_text).
  function qrText(code) {
    return code.slice(0, 5) + base45(fromBase64url(code.slice(5)));
  }

  // version | cert_id | time_step | counter: the code's first 17 bytes, big-endian like struct ">B8sII".
  function header(certId, step, counter) {
    if (certId.length !== 8) throw new Error("a certificate id is 8 bytes");
    if (!(counter >= 0 && counter <= 0xffffffff)) throw new Error("a counter is 32 bits");
    const out = new Uint8Array(17);
    const view = new DataView(out.buffer);
    out[0] = VERSION;
    out.set(certId, 1);
    view.setUint32(9, step);
    view.setUint32(13, counter);
    return out;
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
  }

  async function codeBytes(privateKey, certIdHex, nowSeconds, counter) {
    const head = header(hexToBytes(certIdHex), Math.floor(nowSeconds / STEP_SECONDS), counter);
    const signature = await crypto.subtle.sign({name: "Ed25519"}, privateKey, concat(DOMAIN, head));
    return concat(head, new Uint8Array(signature));
  }

  async function makeCode(privateKey, certIdHex, nowSeconds, counter) {
    return PREFIX + base64url(await codeBytes(privateKey, certIdHex, nowSeconds, counter));
  }

  // A fresh member code (terminal/membercodes.py, form 2): "TPM2:" + base64url(0x02 | a payment code's bytes).
  // It tells the till who the member is with no network on either side, and proves once that they are there.
  async function makeMemberCode(privateKey, certIdHex, nowSeconds, counter) {
    const raw = await codeBytes(privateKey, certIdHex, nowSeconds, counter);
    return MEMBER_PREFIX + base64url(concat(Uint8Array.of(MEMBER_DEVICE_FORM), raw));
  }

  // -- IndexedDB: one record, the device -------------------------------------------------------------

  function open() {
    return new Promise((resolve, reject) => {
      const asked = indexedDB.open(DB_NAME, 1);
      asked.onupgradeneeded = () => asked.result.createObjectStore(STORE);
      asked.onsuccess = () => resolve(asked.result);
      asked.onerror = () => reject(asked.error);
    });
  }

  async function withStore(mode, work) {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        let result = null;
        work(tx.objectStore(STORE), (value) => { result = value; });
        tx.oncomplete = () => resolve(result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  function load() {
    return withStore("readonly", (store, done) => {
      const got = store.get(THIS);
      got.onsuccess = () => done(got.result || null);
    });
  }

  async function save(device) {
    await withStore("readwrite", (store) => store.put(device, THIS));
    await markSignOut();
  }

  async function forget() {
    await withStore("readwrite", (store) => store.delete(THIS));
    await markSignOut();
  }

  // The next counter, written in the same transaction that reads it: two tabs never get the same one.
  function nextCounter() {
    return withStore("readwrite", (store, done) => {
      const got = store.get(THIS);
      got.onsuccess = () => {
        const device = got.result;
        if (!device) return;
        device.counter += 1;
        store.put(device, THIS);
        done(device);
      };
    });
  }

  // -- head office ---------------------------------------------------------------------------------

  class Refused extends Error {
    constructor(code) { super(code); this.code = code; }
  }

  async function call(method, path, body) {
    const init = {method: method, credentials: "same-origin", cache: "no-store", headers: {}};
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const reply = await fetch(path, init);
    const answer = await reply.json().catch(() => ({}));
    if (!reply.ok) throw new Refused(String(answer.code || ""));
    return answer;
  }

  async function register() {
    const pair = await crypto.subtle.generateKey({name: "Ed25519"}, false, ["sign", "verify"]);
    const publicHex = bytesToHex(new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)));
    const cert = await call("POST", "/wallet/devices", {device_key: publicHex});
    if (cert.device_key !== publicHex) throw new Refused("");
    const device = {privateKey: pair.privateKey, cert: cert, counter: 0};
    await save(device);
    return device;
  }

  // -- the page ---------------------------------------------------------------------------------------

  // The strongest error correction that keeps the code at version 5 (37 modules), as the till's codes.
  function encodeQr(text) {
    let qr = null;
    for (const level of ["H", "Q", "M", "L"]) {
      qr = qrcode(0, level);
      qr.addData(text, "Alphanumeric");
      qr.make();
      if (qr.getModuleCount() <= MAX_MODULES) break;
    }
    return qr;
  }

  function drawQr(box, code) {
    const qr = encodeQr(qrText(code));
    const count = qr.getModuleCount();
    const quiet = 4;
    const size = count + 2 * quiet;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
    svg.setAttribute("shape-rendering", "crispEdges");
    svg.setAttribute("aria-hidden", "true");
    const paper = document.createElementNS(ns, "rect");
    paper.setAttribute("width", String(size));
    paper.setAttribute("height", String(size));
    paper.setAttribute("fill", "#fff");
    const runs = [];
    for (let y = 0; y < count; y++) {
      for (let x = 0; x < count; x++) {
        if (!qr.isDark(y, x)) continue;
        const start = x;
        while (x + 1 < count && qr.isDark(y, x + 1)) x++;
        runs.push(`M${start + quiet} ${y + quiet}h${x - start + 1}v1h-${x - start + 1}z`);
      }
    }
    const ink = document.createElementNS(ns, "path");
    ink.setAttribute("fill", "#000");
    ink.setAttribute("d", runs.join(""));
    svg.append(paper, ink);
    box.replaceChildren(svg);
    box.dataset.code = code;
  }

  function page() {
    const $ = (id) => document.getElementById(id);
    const root = $("pay");
    let timer = null;
    let renewals = 0;

    function showError(code) {
      const known = document.querySelector(`#pay-messages li[data-code="${CSS.escape(code)}"]`);
      const box = $("error");
      box.textContent = (known || document.querySelector('#pay-messages li[data-code=""]')).textContent;
      box.dataset.code = code;
      box.hidden = false;
      if (code === "wallet_sign_in_again" || code === "wallet_sign_in_required") $("pay-sign-in").hidden = false;
    }

    function clearError() {
      $("error").hidden = true;
      $("error").dataset.code = "";
    }

    function state(name) {
      root.dataset.state = name;
      $("pay-setup").hidden = name !== "setup";
      $("pay-ready").hidden = name !== "ready";
      if (name !== "ready") {
        clearTimeout(timer);
        $("pay-code").replaceChildren();
        $("pay-code").dataset.code = "";
      }
    }

    // One QR at a time: the payment code, or the member code ("pay-switch" changes which).
    function mode(kind) {
      const box = $("pay-code");
      box.dataset.kind = kind;
      box.setAttribute("aria-label", box.dataset[kind === "member" ? "labelMember" : "labelPay"]);
      for (const id of ["pay-title-code", "pay-help", "pay-switch"]) {
        $(id).textContent = $(id).dataset[kind];
      }
    }

    // Each call draws only if no later call began while it awaited: a renewal already under way when the
    // member switches codes must not draw the other kind over the one just asked for.
    let drawing = 0;
    // Each list of the member's phones asked of head office, and each setup or removal, moves this on: an answer
    // asked before a setup (it does not hold the new key yet) must not drop the key the setup just made.
    let listing = 0;

    async function show() {
      clearTimeout(timer);
      const mine = ++drawing;
      const kind = $("pay-code").dataset.kind;
      let device = await load();
      if (device && device.cert.expires_at * 1000 <= Date.now()) await forget(); // tills refuse it: set up anew
      device = await nextCounter();
      if (mine !== drawing) return;
      if (!device) { state("setup"); return; }
      const make = kind === "member" ? makeMemberCode : makeCode;
      const text = await make(device.privateKey, device.cert.cert_id, Date.now() / 1000, device.counter);
      if (mine !== drawing) return;
      drawQr($("pay-code"), text);
      state("ready");
      const left = STEP_SECONDS * 1000 - (Date.now() % (STEP_SECONDS * 1000));
      if (renewals++ < RENEWALS) timer = setTimeout(show, left + 50);
    }

    async function setUp() {
      clearError();
      listing++;
      $("pay-setup-button").disabled = true;
      try {
        await register();
        $("pay-removed").hidden = true;
        renewals = 0;
        await show();
        $("pay-new").focus();
        listDevices();
      } catch (e) {
        if (e && e.name === "NotSupportedError") {  // a browser without Ed25519 in WebCrypto
          $("pay-unsupported").hidden = false;
          state("unsupported");
        } else {
          showError(e instanceof Refused ? e.code : "");
          listDevices();  // the list asked before the setup was dropped
        }
      } finally {
        $("pay-setup-button").disabled = false;
      }
    }

    async function removeDevice(certId) {
      clearError();
      listing++;
      try {
        await call("POST", `/wallet/devices/${encodeURIComponent(certId)}/remove`);
      } catch (e) {
        showError(e instanceof Refused ? e.code : "");
        return;
      }
      const device = await load();
      if (device && device.cert.cert_id === certId) {
        await forget();
        state("setup");
        $("pay-removed").hidden = false;
        $("pay-setup-button").focus();
      }
      listDevices();
    }

    function drawDevices(listed, mine) {
      const list = $("pay-device-list");
      const items = listed.filter((d) => !d.revoked).map((d) => {
        const item = document.createElement("li");
        item.dataset.certId = d.cert_id;
        const day = new Date(d.issued_at * 1000).toISOString().slice(0, 10);
        const label = document.createElement("span");
        label.textContent = list.dataset.label.replace("{date}", day) +
          (d.cert_id === mine ? " " + list.dataset.this : "");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link";
        button.textContent = list.dataset.remove;
        button.setAttribute("aria-label", `${list.dataset.remove}: ${label.textContent}`);
        button.addEventListener("click", () => removeDevice(d.cert_id));
        item.append(label, " ", button);
        return item;
      });
      list.replaceChildren(...items);
      $("pay-devices").hidden = items.length === 0;
    }

    // Online: head office's list of the member's phones. This phone's key is dropped when head office no
    // longer holds it live for the member signed in (removed elsewhere, or another member's).
    async function listDevices() {
      const asked = ++listing;
      let answer;
      try {
        answer = await call("GET", "/wallet/devices");
      } catch (e) {
        if (asked !== listing) return;
        if (e instanceof Refused) {
          if (e.code === "wallet_sign_in_required") $("pay-sign-in").hidden = false;
        } else {
          $("pay-offline").hidden = false;
        }
        return;
      }
      if (asked !== listing) return;  // a setup or a removal came since: its own list follows
      $("pay-offline").hidden = true;
      const device = await load();
      if (asked !== listing) return;
      const live = answer.devices.filter((d) => !d.revoked).map((d) => d.cert_id);
      if (device && (device.cert.member_id !== answer.member_id || !live.includes(device.cert.cert_id))) {
        await forget();
        state("setup");
        $("pay-removed").hidden = false;
      }
      drawDevices(answer.devices, device && live.includes(device.cert.cert_id) ? device.cert.cert_id : "");
    }

    async function start() {
      if (!window.crypto || !crypto.subtle || !window.indexedDB || typeof qrcode !== "function") {
        $("pay-unsupported").hidden = false;
        state("unsupported");
        return;
      }
      $("pay-setup-button").addEventListener("click", setUp);
      $("pay-new").addEventListener("click", () => { renewals = 0; show(); });
      $("pay-switch").addEventListener("click", () => {
        mode($("pay-code").dataset.kind === "member" ? "pay" : "member");
        renewals = 0;
        show();
      });
      $("pay-remove").addEventListener("click", async () => {
        const device = await load();
        if (device) removeDevice(device.cert.cert_id);
      });
      const device = await load();
      if (device) await show(); else state("setup");
      listDevices();
    }

    start().catch(() => {
      $("pay-unsupported").hidden = false;
      state("unsupported");
    });
  }

  // Signing out in this browser removes this phone too: the forms carry its certificate id, head office
  // revokes it, and the answer clears the browser's storage (the key with it).
  async function markSignOut() {
    const forms = document.querySelectorAll("form[action='/wallet/sign-out']");
    if (!forms.length || !window.indexedDB) return;
    const device = await load().catch(() => null);
    for (const form of forms) {
      form.querySelectorAll("input[name=device]").forEach((field) => field.remove());
      if (!device) continue;
      const field = document.createElement("input");
      field.type = "hidden";
      field.name = "device";
      field.value = device.cert.cert_id;
      form.append(field);
    }
  }

  if (document.getElementById("pay")) page();
  markSignOut();
  return {makeCode: makeCode, makeMemberCode: makeMemberCode, qrText: qrText, load: load, forget: forget};
})();
