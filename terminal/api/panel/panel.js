// The cashier panel: draws the till's session (GET /v1/session, then the SSE stream) and sends the
// cashier's keys to the same session actions as the global hotkeys. No build step, no framework.
import { LANGUAGES, LOCALES, has, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "tillpoint.token";
const LANG_KEY = "tillpoint.lang";
const ACTIONS = ["identify", "enrol", "coupon", "total", "pay", "points", "confirm", "cancel", "new", "topup", "gift", "language"];
const TAP_ONLY = ["gift_sell", "gift_pay"];  // prompts answered by a tap: nothing to type
const STREAM_TYPES = "session,sync,hotkeys,scan,reader";

let token = localStorage.getItem(TOKEN_KEY) || "";
let config = { keys: {}, language: "en", currency: { code: "EUR", exponent: 2 }, terminal_id: "" };
let lang = "en";
let snap = null;
let status = null;
let bindings = [];
let lastEventId = -1;
let streaming = false;
let pendingArm = null;  // a prompt opened at the key press, before the till confirmed it

// -- talking to the till ----------------------------------------------------------------------------

class Refused extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  const init = { method, headers };
  if (method === "POST") {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body ?? {});
  }
  const res = await fetch(path, init);
  let data = null;
  try { data = await res.json(); } catch { data = null; }
  if (res.status === 403 && data && data.code === "unauthorized") { unpaired(); }
  if (!res.ok) { throw new Refused(res.status, data?.code ?? "error", data?.message ?? res.statusText); }
  return data;
}

// The till sees the cashier's keys in the order they were pressed: each request that changes the sale
// waits for the one before (a fast Enter then F11 must add the amount before it asks to pay).
let chain = Promise.resolve();
function inOrder(task) {
  const run = chain.then(task, task);
  chain = run.catch(() => {});
  return run;
}

function act(action) {
  return inOrder(async () => {
    try { render(await api("POST", "/v1/session/action", { action })); } catch (e) { refused(e); }
  });
}

function refused(e) {
  if (e instanceof Refused && e.status !== 403) { showError({ code: e.code, message: e.message }); }
}

// -- keys --------------------------------------------------------------------------------------------

const KEY_ALIASES = { ESC: "Escape", ESCAPE: "Escape", ENTER: "Enter", RETURN: "Enter", TAB: "Tab", SPACE: " ",
  DEL: "Delete", DELETE: "Delete", INSERT: "Insert", HOME: "Home", END: "End", PAGEUP: "PageUp",
  PAGEDOWN: "PageDown", PAUSE: "Pause", SCROLLLOCK: "ScrollLock", UP: "ArrowUp", DOWN: "ArrowDown",
  LEFT: "ArrowLeft", RIGHT: "ArrowRight", BACKSPACE: "Backspace" };

function parseKey(text) {
  const parts = String(text).split("+").map((p) => p.trim().toUpperCase()).filter(Boolean);
  const name = parts.pop() || "";
  const key = KEY_ALIASES[name] ?? (/^F\d{1,2}$/.test(name) ? name : name.length === 1 ? name.toLowerCase() : name);
  return { key, ctrl: parts.includes("CTRL"), alt: parts.includes("ALT"), shift: parts.includes("SHIFT"),
    meta: parts.includes("META"), label: text };
}

function bind(keys) {
  bindings = ACTIONS.filter((a) => keys[a]).map((action) => ({ action, ...parseKey(keys[action]) }));
}

function actionOf(e) {
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const hit = bindings.find((b) => b.key === key && b.ctrl === e.ctrlKey && b.alt === e.altKey
    && b.meta === e.metaKey && (b.shift === e.shiftKey || key.length > 1 && !b.shift && !e.shiftKey));
  if (!hit) return null;
  const typing = e.target instanceof HTMLInputElement;
  return typing && hit.key.length === 1 ? null : hit.action;  // a letter shortcut never steals typing
}

function onKey(e) {
  if (!$("pairing").hidden) {
    if (e.key === "Enter") { e.preventDefault(); pair($("pair-code").value); }
    return;
  }
  const action = actionOf(e);
  if (!action) return;
  e.preventDefault();
  if (action === "language") { cycleLanguage(); return; }
  if (action === "confirm" && !$("prompt").hidden) { submitPrompt(); return; }
  const asks = { identify: "member", coupon: "coupon", total: "total" }[action];
  if (asks && snap && snap.state !== "payment") {  // the cashier may type at once
    pendingArm = asks;
    drawPrompt({ ...snap, awaiting: asks });
    act(action).finally(() => { pendingArm = null; if (snap) drawPrompt(snap); });
    return;
  }
  act(action);
}

// -- the prompt (what a key armed: member, coupon, total) --------------------------------------------

function parseAmount(text) {
  const exp = config.currency.exponent;
  const clean = text.trim().replace(/[\s'_]/g, "").replace(",", ".");
  if (!/^\d+(\.\d*)?$/.test(clean)) return null;
  const [whole, frac = ""] = clean.split(".");
  if (frac.length > exp) return null;
  return Number(whole) * 10 ** exp + Number((frac + "0".repeat(exp)).slice(0, exp) || 0);
}

function submitPrompt() {
  const input = $("prompt-input");
  const text = input.value.trim();  // what was typed when Enter was pressed
  if (!text || !snap) return Promise.resolve();
  return inOrder(() => sendPrompt(input, text));
}

async function sendPrompt(input, text) {
  try {
    if (snap.awaiting === "member") {
      render(await api("POST", "/v1/session/identify", text.startsWith("TP") ? { code: text } : { member_id: text }));
    } else if (snap.awaiting === "coupon") {
      render(await api("POST", "/v1/session/coupons", { code: text }));
    } else if (snap.awaiting === "total") {
      const amount = parseAmount(text);
      if (amount === null || amount <= 0) { showError({ code: "invalid_basket", message: t(lang, "ask_total") }); return; }
      render(await api("POST", "/v1/session/total", { amount }));
    }
    input.value = "";
  } catch (e) { refused(e); input.select(); }
}

// -- drawing -----------------------------------------------------------------------------------------

function money(minor) {
  if (minor === null || minor === undefined) return "–";
  const { code, exponent } = config.currency;
  return new Intl.NumberFormat(LOCALES[lang], { style: "currency", currency: code, minimumFractionDigits: exponent,
    maximumFractionDigits: exponent }).format(minor / 10 ** exponent);
}

function age(seconds) {
  const m = Math.floor(seconds / 60);
  if (m < 1) return "<1 min";
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d`;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function keyLabel(action) {
  const b = bindings.find((x) => x.action === action);
  return b ? b.label : "";
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; return; }
  $("error-code").textContent = `[${error.code}]`;
  $("error-text").textContent = has(lang, error.code) ? t(lang, error.code) : error.message;
  box.hidden = false;
}

function translateStatic() {
  document.documentElement.lang = lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(lang, node.dataset.i18n);
  $("lang").textContent = lang.toUpperCase();
}

function drawMember(s) {
  const m = s.member;
  $("member-none").hidden = Boolean(m);
  $("member-box").hidden = !m;
  $("idle-keys").textContent = `${keyLabel("identify")} ${t(lang, "key_identify")} · ${keyLabel("total")} ${t(lang, "key_total")}`;
  if (!m) return;
  $("member-name").textContent = m.name;
  $("member-tier").textContent = m.tier;
  $("member-id").textContent = `${m.member_id} · ${t(lang, `via_${m.via}`)}`;
  $("member-points").textContent = `${m.points.toLocaleString(LOCALES[lang])} pt`;
  $("member-balance").textContent = m.balance === null ? "–" : money(m.balance);
}

function drawOffers(s) {
  const list = $("offers");
  list.replaceChildren();
  if (!s.offers.length) { list.append(el("li", t(lang, "no_coupons"), "muted")); return; }
  for (const o of s.offers) {
    const li = el("li", undefined, o.usable === false ? "no" : o.usable ? "ok" : "");
    if (o.applied) li.classList.add("applied");
    li.dataset.coupon = o.coupon_id;
    li.append(el("span", `${o.coupon_id}${o.text ? ` – ${o.text}` : ""}${o.applied ? ` (${t(lang, "applied")})` : ""}`));
    if (o.usable === false) li.append(el("span", `[${o.code}] ${has(lang, o.code) ? t(lang, o.code) : o.message}`, "why"));
    if (o.usable === null) li.append(el("span", ` – ${t(lang, "checked_later")}`, "muted"));
    list.append(li);
  }
}

// The rewards catalogue (docs/rewards.md): one button a reward; pressed again, it takes the reward out.
function drawRewards(s) {
  const list = $("rewards");
  list.replaceChildren();
  const offered = s.catalogue ?? [];
  if (!offered.length) { list.append(el("li", t(lang, "no_rewards"), "muted")); return; }
  for (const r of offered) {
    const li = el("li");
    li.dataset.reward = r.reward_id;
    const taken = (s.rewards ?? []).includes(r.reward_id);
    const button = el("button", `${r.title} – ${r.points.toLocaleString(LOCALES[lang])} pt${taken ? ` (${t(lang, "applied")})` : ""}`);
    button.type = "button";
    button.setAttribute("aria-pressed", String(taken));
    button.addEventListener("click", async () => {
      const path = taken ? "/v1/session/rewards/remove" : "/v1/session/rewards";
      try { render(await api("POST", path, { reward_id: r.reward_id })); } catch (e) { refused(e); }
    });
    li.append(button);
    list.append(li);
  }
}

function drawSale(s) {
  const body = $("lines").tBodies[0];
  body.replaceChildren();
  for (const line of s.basket ? s.basket.lines : []) {
    const row = document.createElement("tr");
    row.append(el("td", line.sku), el("td", `×${line.quantity}`, "n"), el("td", money(line.amount), "n"));
    body.append(row);
  }
  const q = s.quote;
  const explain = $("explain");
  explain.replaceChildren();
  for (const x of q ? q.explain : []) {
    const li = el("li");
    const amount = x.amount ? ` −${money(x.amount)}` : "";
    const points = x.points ? ` ${x.points > 0 ? "+" : ""}${x.points} pt` : "";
    li.append(el("b", `${x.source}`), document.createTextNode(` ${x.text}${amount}${points}`));
    explain.append(li);
  }
  $("t-total").textContent = q ? money(q.total) : "–";
  $("t-discount").textContent = q && q.discount ? `−${money(q.discount)}` : "–";
  $("t-redeem").textContent = q && q.points_redeemed ? `${q.points_redeemed} pt (−${money(q.redeem_value)})` : "–";
  $("t-earned").textContent = q ? `+${q.points_earned} pt` : "–";
  $("t-payable").textContent = q ? money(q.payable) : t(lang, "no_total", { key: keyLabel("total") });
  const paidHere = (s.gift ? s.gift.done.length : 0) + (s.vouchers ?? []).filter((v) => v.off).length;
  if (s.left !== null && s.left !== undefined && paidHere) $("t-payable").textContent = money(s.left);
  drawVouchers(s);
}

// Vouchers used in this session: what each took off the sale done, or that the POS takes it off.
function drawVouchers(s) {
  const list = $("vouchers");
  list.replaceChildren();
  for (const v of s.vouchers ?? []) {
    const what = v.voucher_kind === "product" ? t(lang, "voucher_product", { sku: v.sku, value: money(v.value) })
      : t(lang, "voucher_amount", { value: money(v.value) });
    const how = v.off ? t(lang, "voucher_off", { off: money(v.off) }) : t(lang, "voucher_pos");
    const li = el("li", `${what}: ${how}${v.offline ? ` (${t(lang, "gift_offline")})` : ""}`);
    li.dataset.voucher = v.voucher_id;
    list.append(li);
  }
}

// The gift card of this session: the one tapped for its balance, or sold, loaded or paid with here.
function drawGift(s) {
  const g = s.gift;
  $("gift-box").hidden = !g || !(g.card || g.done.length);
  if ($("gift-box").hidden) return;
  const card = g.card;
  const parts = card ? [t(lang, "gift_line", { card: card.card_id, balance: money(card.balance) })] : [];
  if (card && card.state && card.state !== "active") parts.push(t(lang, `gift_state_${card.state}`));
  if (card && card.expires_on) parts.push(t(lang, "gift_expires", { date: card.expires_on }));
  $("gift-card").textContent = parts.join(" · ");
  const list = $("gift-done");
  list.replaceChildren();
  for (const d of g.done) {
    const li = el("li", t(lang, `done_${d.kind}`, { amount: money(Math.abs(d.amount)), balance: money(d.balance) })
      + (d.offline ? ` (${t(lang, "gift_offline")})` : ""));
    li.dataset.kind = d.kind;
    list.append(li);
  }
}

function drawPrompt(s) {
  const box = $("prompt");
  const input = $("prompt-input");
  const asked = s.awaiting || pendingArm;
  if (!asked) { box.hidden = true; input.value = ""; box.dataset.for = ""; return; }
  if (box.dataset.for !== asked) input.value = "";
  box.dataset.for = asked;
  const amounts = { amount: money(s.basket ? s.basket.total : null), left: money(s.left ?? null) };
  $("prompt-label").textContent = t(lang, `ask_${asked}`, amounts);
  input.inputMode = asked === "total" ? "decimal" : "text";
  input.hidden = TAP_ONLY.includes(asked);
  box.hidden = false;
  if (!input.hidden && document.activeElement !== input) input.focus();
}

function drawDone(s) {
  const done = $("done");
  done.hidden = s.state !== "done";
  if (done.hidden) return;
  if (!s.receipt && s.gift && s.gift.done.length) {  // a gift card sold or loaded
    const d = s.gift.done[s.gift.done.length - 1];
    $("done").querySelector(".approved").textContent = t(lang, "approved");
    $("done-detail").textContent = t(lang, `done_${d.kind}`, { amount: money(Math.abs(d.amount)), balance: money(d.balance) });
    return;
  }
  if (!s.receipt) return;
  const r = s.receipt;
  $("done").querySelector(".approved").textContent = s.voided ? t(lang, "voided") : t(lang, "approved");
  if (r.kind === "till_topup") {
    $("done-detail").textContent = t(lang, "done_topup", { amount: money(r.total), balance: money(r.stored_value) });
    return;
  }
  const b = r.breakdown;
  const account = b && b.stored_value
    ? ` · ${t(lang, "done_account", { paid: money(b.stored_value), balance: money(b.stored_value_balance), due: money(b.pos_due) })}`
    : "";
  $("done-detail").textContent = (r.member_id
    ? t(lang, "done_member", { points: `${r.points_delta >= 0 ? "+" : ""}${r.points_delta}`, balance: `${r.points_balance} pt` })
    : t(lang, "done_anonymous")) + account;
}

function drawQr(s) {
  const qr = s.customer_qr;
  $("customer-qr").hidden = !qr;
  if (!qr) return;
  const img = $("qr-img");
  const src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(qr.svg)}`;
  if (img.src !== src) img.src = src;
  img.alt = qr.text;
  $("qr-caption").textContent = t(lang, `qr_${qr.kind}`);
}

function drawKeys(s) {
  const footer = $("keys");
  footer.replaceChildren();
  const usable = {
    identify: s.state !== "payment", enrol: s.state !== "payment", coupon: ["idle", "member", "coupons"].includes(s.state),
    total: s.state !== "payment", pay: Boolean(s.basket) && s.state !== "done", points: s.state === "payment",
    confirm: s.state === "payment" || Boolean(s.awaiting), cancel: true, new: s.state !== "payment", language: true,
    topup: Boolean(s.member) && Boolean(s.basket) && !["payment", "done"].includes(s.state),
    gift: s.state === "done" ? s.left > 0 : Boolean(s.basket) && s.state !== "payment",
  };
  for (const b of bindings) {
    const item = el("span", undefined, usable[b.action] ? "" : "off");
    item.dataset.action = b.action;
    item.append(el("kbd", b.label), document.createTextNode(` ${t(lang, `key_${b.action}`)}`));
    footer.append(item);
  }
}

function render(s) {
  if (!s || (snap && s.seq < snap.seq)) return;
  snap = s;
  document.body.dataset.state = s.state;
  document.body.dataset.seq = String(s.seq);
  $("state").textContent = t(lang, `state_${s.state}`);
  drawMember(s);
  drawOffers(s);
  drawRewards(s);
  drawSale(s);
  drawPrompt(s);
  drawDone(s);
  drawGift(s);
  drawQr(s);
  drawKeys(s);
  showError(s.error);
  const hint = $("pay-hint");
  hint.hidden = !(s.state === "payment" && s.quote);
  if (!hint.hidden) {
    const points = s.quote.points_redeemed
      ? `${t(lang, "pay_with_points", { points: s.quote.points_redeemed, value: money(s.quote.redeem_value), key: keyLabel("points") })} · ` : "";
    hint.textContent = `${points}${t(lang, "confirm_hint", { pay: keyLabel("pay") })}`;
  }
}

function drawStatus() {
  const banner = $("offline");
  const hk = status && status.hotkeys;
  $("hotkeys-status").textContent = hk ? (hk.state === "listening" ? t(lang, "hotkeys_listening") : `${t(lang, "hotkeys_off")} (${hk.state})`) : "";
  $("hotkeys-status").title = hk ? hk.detail : "";
  if (!status || !status.offline_since) { banner.hidden = true; return; }
  const since = new Date(status.offline_since);
  const seconds = (Date.now() - since.getTime()) / 1000;
  banner.textContent = t(lang, status.pending ? "offline" : "offline_empty", { since: since.toLocaleTimeString(LOCALES[lang], { hour: "2-digit", minute: "2-digit" }),
    age: age(seconds), pending: status.pending });
  banner.hidden = false;
}

async function refreshStatus() {
  try { status = await api("GET", "/v1/status"); drawStatus(); } catch { /* the stream or the next poll retries */ }
}

function cycleLanguage() {
  lang = LANGUAGES[(LANGUAGES.indexOf(lang) + 1) % LANGUAGES.length];
  localStorage.setItem(LANG_KEY, lang);
  translateStatic();
  if (snap) { const s = snap; snap = null; render(s); }
  drawStatus();
}

// -- the event stream (SSE over fetch, so the token travels in a header) -------------------------------

function handle(chunk) {
  let data = "";
  for (const line of chunk.split("\n")) {
    if (line.startsWith("data:")) data += line.slice(5).trimStart();
  }
  if (!data) return;
  const event = JSON.parse(data);
  lastEventId = Math.max(lastEventId, event.id ?? lastEventId);
  if (event.type === "session") render(event.session);
  else if (event.type === "sync" || event.type === "hotkeys") refreshStatus();
}

async function stream() {
  if (streaming) return;
  streaming = true;
  while (token) {
    try {
      const res = await fetch(`/v1/stream?after=${lastEventId}&types=${STREAM_TYPES}`, { headers: { Authorization: `Bearer ${token}` } });
      if (res.status === 403) { unpaired(); break; }
      if (!res.ok || !res.body) throw new Error(`stream ${res.status}`);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      document.body.dataset.stream = "open";
      render(await api("GET", "/v1/session"));  // after the stream is open: nothing falls between
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) { handle(buffer.slice(0, cut)); buffer = buffer.slice(cut + 2); }
      }
    } catch { /* reconnect below */ }
    document.body.dataset.stream = "closed";
    await new Promise((r) => setTimeout(r, 1000));
  }
  streaming = false;
}

// -- pairing -----------------------------------------------------------------------------------------

function unpaired() {
  token = "";
  localStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("pairing").hidden = false;
  document.body.dataset.state = "pairing";
  $("state").textContent = t(lang, "state_pairing");
  $("pair-code").focus();
}

async function pair(code) {
  try {
    const res = await fetch("/v1/pair", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ code: code.trim(), name: `panel ${navigator.platform || ""}`.trim() }) });
    const data = await res.json();
    if (!res.ok) { showError(data); $("pair-code").select(); return; }
    token = data.token;
    localStorage.setItem(TOKEN_KEY, token);
    $("pair-code").value = "";
    showError(null);
    paired();
  } catch (e) { showError({ code: "error", message: String(e) }); }
}

function paired() {
  $("pairing").hidden = true;
  $("main").hidden = false;
  reportFocus();
  refreshStatus();
  stream();
}

function reportFocus() {
  if (token) api("POST", "/v1/panel/focus", { focused: document.hasFocus() }).catch(() => {});
}

async function main() {
  try {
    config = await (await fetch("/v1/panel/config")).json();
  } catch { /* defaults */ }
  lang = localStorage.getItem(LANG_KEY) || config.language || "en";
  bind(config.keys);
  translateStatic();
  $("terminal").textContent = config.terminal_id;
  document.addEventListener("keydown", onKey);
  window.addEventListener("focus", reportFocus);
  window.addEventListener("blur", reportFocus);
  setInterval(() => { if (document.hasFocus()) reportFocus(); }, 5000);
  setInterval(() => { if (token) refreshStatus(); }, 5000);
  // A kiosk starts paired with #pair=CODE. Any page can open such a link: a panel already paired tries nothing
  // (each wrong try counts against the code a manager just asked for) and stays the panel it is.
  const hash = new URLSearchParams(location.hash.slice(1));
  const code = hash.get("pair");
  if (code) history.replaceState(null, "", location.pathname);
  if (code && !token) { await pair(code); if (token) return; }
  if (token) paired(); else unpaired();
}

main();
