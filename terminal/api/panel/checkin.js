// The door display: the till's rotating check-in code (docs/checkin.md), drawn again at each 30 s step.
const WORDS = {
  en: ["Check in", "Scan with your phone's camera: your wallet records your visit.", "Check-in QR code",
       "The check-in code cannot be shown: the till does not answer."],
  ja: ["チェックイン", "スマートフォンのカメラで読み取ると、ウォレットに来店が記録されます。", "チェックイン用QRコード",
       "チェックインコードを表示できません（レジが応答しません）。"],
  zh: ["签到", "用手机相机扫描，钱包即记录您的到店。", "签到二维码", "无法显示签到码：收银机未响应。"],
};
const lang = (navigator.language || "en").slice(0, 2);
const [title, help, label, offline] = WORDS[lang] || WORDS.en;
document.documentElement.lang = WORDS[lang] ? lang : "en";
document.getElementById("checkin-title").textContent = title;
document.getElementById("checkin-help").textContent = help;
document.getElementById("checkin-offline").textContent = offline;
const box = document.getElementById("checkin-qr");
box.setAttribute("aria-label", label);

async function draw() {
  try {
    const reply = await fetch("/v1/checkin/code", {cache: "no-store"});
    if (!reply.ok) throw new Error(String(reply.status));
    const body = await reply.json();
    const svg = new DOMParser().parseFromString(body.svg, "image/svg+xml").documentElement;
    box.replaceChildren(document.importNode(svg, true));
    box.dataset.code = body.code;
    box.dataset.link = body.link;
    box.dataset.step = String(body.step);
    document.getElementById("checkin-offline").hidden = true;
    return Math.max(1000, body.renew_in * 1000);
  } catch (e) {
    box.replaceChildren();
    box.dataset.code = "";
    document.getElementById("checkin-offline").hidden = false;
    return 3000;
  }
}
async function loop() { setTimeout(loop, await draw()); }
loop();
