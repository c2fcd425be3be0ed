"""The wallet's words in English, Japanese and Chinese (simplified). A page's language is the one the
member picked (the switch sets a cookie), else the first of Accept-Language the wallet speaks, else English."""

from __future__ import annotations

LANGUAGES = ("en", "ja", "zh")
NAMES = {"en": "English", "ja": "日本語", "zh": "中文"}

_WORDS: dict[str, tuple[str, str, str]] = {
    "wallet": ("Your wallet", "ウォレット", "我的钱包"),
    "skip": ("Skip to the content", "本文へ移動", "跳到正文"),
    "nav": ("Wallet sections", "ウォレットのメニュー", "钱包栏目"),
    "overview": ("Overview", "概要", "概览"),
    "activity": ("Visits", "ご利用履歴", "消费记录"),
    "coupons": ("Coupons", "クーポン", "优惠券"),
    "language": ("Language", "言語", "语言"),
    "sign_out": ("Sign out", "ログアウト", "退出登录"),
    "sign_out_everywhere": (
        "Sign out on every device (a lost phone)",
        "すべての端末でログアウト（紛失した端末も）",
        "在所有设备上退出（含丢失的手机）",
    ),
    "sign_in": ("Sign in to your wallet", "ウォレットにログイン", "登录钱包"),
    "contact": ("Email address or phone number (+…)", "メールアドレスまたは電話番号（+…）", "电子邮箱或手机号（+…）"),
    "send_code": ("Send me a code", "コードを送る", "发送验证码"),
    "code_sent": (
        "If this contact belongs to a member, a code is on its way. It works once, for 10 minutes.",
        "会員の連絡先であれば、コードを送りました。10分間、1回だけ使えます。",
        "如果该联系方式属于会员，验证码已发送。10分钟内有效，仅可使用一次。",
    ),
    "code": ("The code we sent you", "届いたコード", "收到的验证码"),
    "check_code": ("Sign in", "ログイン", "登录"),
    "another_code": ("Ask for another code", "コードを再送する", "重新获取验证码"),
    "hello": ("Hello, {name}", "{name} さん", "{name}，您好"),
    "member_no": ("Member number", "会員番号", "会员号"),
    "tier": ("Tier", "ランク", "等级"),
    "next_tier": (
        "{needed} more to reach {tier}",
        "{tier} まであと {needed}",
        "还差 {needed} 升至 {tier}",
    ),
    "top_tier": ("You are at the top tier.", "最上位ランクです。", "您已是最高等级。"),
    "progress": ("Progress to the next tier", "次のランクまでの進み具合", "升级进度"),
    "points": ("Points", "ポイント", "积分"),
    "stored_value": ("Balance", "残高", "余额"),
    "lots": ("Your points and when they expire", "ポイントの有効期限", "积分及到期时间"),
    "earned_on": ("Earned", "獲得日", "获得日期"),
    "remaining": ("Left", "残り", "剩余"),
    "expires": ("Expires", "有効期限", "到期"),
    "never": ("never", "なし", "永久"),
    "no_lots": ("No points yet.", "ポイントはまだありません。", "暂无积分。"),
    "member_code": ("Your member code", "会員コード", "会员码"),
    "member_code_help": (
        "Show it at the till to collect points. It changes every 30 seconds.",
        "レジで見せるとポイントがたまります。30秒ごとに変わります。",
        "结账时出示即可积分。每30秒更新一次。",
    ),
    "member_code_qr": ("QR code of your member code", "会員コードのQRコード", "会员码二维码"),
    "storage_unavailable": (
        "Head office cannot be reached just now: try again in a minute. Your points and coupons are safe.",
        "本部に接続できません。少し待ってからもう一度お試しください。ポイントとクーポンはそのままです。",
        "暂时无法连接总部，请稍后再试。您的积分和优惠券不受影响。",
    ),
    "offline": (
        "No connection: the member code needs head office. Points and coupons show again when you are online.",
        "接続がありません：会員コードの表示には通信が必要です。",
        "无网络连接：会员码需要联网显示。",
    ),
    "when": ("When", "日時", "时间"),
    "store": ("Store", "店舗", "门店"),
    "kind": ("What", "内容", "类型"),
    "total": ("Total", "合計", "金额"),
    "paid": ("Paid", "支払", "实付"),
    "sale": ("Purchase", "お買い上げ", "购物"),
    "refund": ("Refund", "返品", "退货"),
    "void": ("Cancelled", "取消", "取消"),
    "bonus": ("Bonus points", "ボーナスポイント", "奖励积分"),
    "adjust": ("Adjusted by the shop", "店舗による調整", "门店调整"),
    "no_visits": ("No visits yet.", "ご利用はまだありません。", "暂无消费记录。"),
    "no_coupons": (
        "No coupons for you right now.",
        "現在ご利用いただけるクーポンはありません。",
        "当前没有可用的优惠券。",
    ),
    "valid_from": ("From", "開始", "开始"),
    "valid_until": ("Until", "終了", "截止"),
    "min_spend": ("Minimum spend", "最低利用金額", "最低消费"),
    "used": ("Used", "使用済み", "已使用"),
    "show_at_till": ("Show this code at the till", "レジでこのコードを見せてください", "结账时出示此码"),
    "coupon_qr": ("QR code of coupon {name}", "クーポン {name} のQRコード", "优惠券 {name} 的二维码"),
    "error": ("Sorry", "エラー", "出错了"),
    "signed_out": ("You are signed out.", "ログアウトしました。", "您已退出登录。"),
    "wallet_bad_contact": (
        "Type an email address, or a phone number starting with +.",
        "メールアドレスか、+で始まる電話番号を入力してください。",
        "请输入电子邮箱，或以+开头的手机号。",
    ),
    "wallet_rate_limited": (
        "Too many codes asked for: wait a while, or use a phone you signed in on before.",
        "コードの要求が多すぎます。しばらく待つか、以前ログインした端末を使ってください。",
        "请求验证码次数过多，请稍后再试，或使用以前登录过的手机。",
    ),
    "wallet_code_wrong": (
        "That is not the code we sent: check it and try again.",
        "コードが違います。確認してもう一度入力してください。",
        "验证码不正确，请检查后重试。",
    ),
    "wallet_code_expired": (
        "That code has expired or was used: ask for a new one.",
        "コードの有効期限が切れたか、使用済みです。新しいコードを求めてください。",
        "验证码已过期或已使用，请重新获取。",
    ),
    "wallet_too_many_attempts": (
        "Too many wrong codes: ask for a new one in a few minutes.",
        "間違いが多すぎます。数分後に新しいコードを求めてください。",
        "错误次数过多，请几分钟后重新获取验证码。",
    ),
    "wallet_guesses_limited": (
        "Too many wrong codes for this contact today: sign-in by code is closed for a day, except on a phone you "
        "signed in on before.",
        "この連絡先へのコードの間違いが今日は多すぎます。1日たつまで、以前ログインした端末以外ではコードでログインできません。",
        "此联系方式今日输错验证码次数过多，一天内只有以前登录过的手机可以用验证码登录。",
    ),
    "wallet_bad_origin": (
        "This form must be sent from the wallet's own page.",
        "このフォームはウォレットのページから送信してください。",
        "请从钱包页面提交此表单。",
    ),
    "pass_on": ("Pass it on", "友だちに譲る", "转赠好友"),
    "gift": ("A coupon for you", "クーポンのプレゼント", "送给您的优惠券"),
    "gift_link": ("Your gift link", "プレゼント用リンク", "转赠链接"),
    "gift_link_help": (
        "Send this link to a friend. It works once: the first member to claim it gets the coupon. "
        "Until then you cannot use the coupon; if nobody claims it by {until}, it comes back to you.",
        "このリンクを友だちに送ってください。使えるのは1回だけで、最初に受け取った会員のものになります。"
        "それまでクーポンは使えません。{until} までに受け取られなければ、あなたに戻ります。",
        "请把此链接发送给好友。链接仅可使用一次：第一位领取的会员获得优惠券。"
        "在此之前您无法使用该优惠券；如在 {until} 前无人领取，优惠券将退回给您。",
    ),
    "gifts_waiting": (
        "Passed on, waiting for your friend",
        "譲り手続き中（受け取り待ち）",
        "已转赠，等待好友领取",
    ),
    "take_back": ("Take it back", "取り消して戻す", "收回"),
    "gift_until": ("Claim by", "受け取り期限", "领取截止"),
    "claim": ("Claim it", "受け取る", "领取"),
    "gift_sign_in": (
        "Sign in to claim it, then open this link again",
        "受け取るにはログインしてください（その後このリンクに戻ります）",
        "请先登录再领取（登录后返回此链接）",
    ),
    "gift_join": (
        "Not a member yet? Join with a receipt, then open this link again",
        "まだ会員でない方は、レシートから入会してからこのリンクを開き直してください",
        "还不是会员？请凭小票入会，然后重新打开此链接",
    ),
    "gift_yours": (
        "This is your own gift: send the link to a friend.",
        "あなたが贈ったクーポンです。リンクを友だちに送ってください。",
        "这是您转赠的优惠券，请把链接发送给好友。",
    ),
    "gift_claimed_ok": (
        "The coupon is yours now: it is with your coupons.",
        "クーポンを受け取りました。クーポン一覧にあります。",
        "优惠券已领取，可在优惠券列表中查看。",
    ),
    "gift_unknown": (
        "There is no such coupon or gift link.",
        "そのクーポンまたはリンクはありません。",
        "没有此优惠券或链接。",
    ),
    "gift_not_transferable": ("This coupon cannot be passed on.", "このクーポンは譲れません。", "此优惠券不可转赠。"),
    "gift_used_up": (
        "This coupon has been passed on as often as it may.",
        "このクーポンはこれ以上譲れません。",
        "此优惠券的转赠次数已用完。",
    ),
    "gift_coupon_used": ("This coupon was used already.", "このクーポンは使用済みです。", "此优惠券已使用。"),
    "gift_expired": (
        "This coupon or gift link has expired.",
        "このクーポンまたはリンクは期限切れです。",
        "此优惠券或链接已过期。",
    ),
    "gift_offered": (
        "This coupon is already offered: share the link you made.",
        "このクーポンはすでに譲る手続き中です。",
        "此优惠券已在转赠中。",
    ),
    "gift_claimed": (
        "This gift was claimed already.",
        "このプレゼントはすでに受け取られています。",
        "此礼物已被领取。",
    ),
    "gift_own": ("You cannot claim your own gift.", "自分のプレゼントは受け取れません。", "不能领取自己转赠的优惠券。"),
    "gift_too_many": (
        "You have passed on as many coupons as a day allows: try again tomorrow.",
        "1日に譲れるクーポンの数に達しました。明日もう一度お試しください。",
        "今天转赠的优惠券已达上限，请明天再试。",
    ),
    "wallet_sign_in_required": ("Sign in first.", "先にログインしてください。", "请先登录。"),
    "checkin": ("Check in", "チェックイン", "签到"),
    "checkin_help": (
        "Scan the check-in code the till or the door shows, with your phone's camera or here.",
        "レジや入口に表示されたチェックインコードを、スマートフォンのカメラかこの画面で読み取ってください。",
        "用手机相机或在此页面扫描收银台或门口显示的签到码。",
    ),
    "checkin_camera": ("Scan with the camera", "カメラで読み取る", "用相机扫描"),
    "checkin_camera_video": ("The camera's picture", "カメラの映像", "相机画面"),
    "checkin_paste": ("Or paste the code or its link", "またはコードかリンクを貼り付け", "或粘贴签到码或链接"),
    "checkin_send": ("Check in", "チェックインする", "签到"),
    "checkin_at": ("Check in at store {store}", "店舗 {store} でチェックイン", "在门店 {store} 签到"),
    "checkin_done": (
        "You checked in at store {store}. Thank you for visiting!",
        "店舗 {store} でチェックインしました。ご来店ありがとうございます。",
        "已在门店 {store} 签到，感谢光临！",
    ),
    "checkin_reward": ("Your reward", "特典", "您的奖励"),
    "checkin_no_reward": (
        "Your visit counts. There is no check-in reward at this store today.",
        "来店を記録しました。本日この店舗のチェックイン特典はありません。",
        "已记录到店。本店今日没有签到奖励。",
    ),
    "checkin_sign_in": ("Sign in to check in", "ログインしてチェックイン", "登录后签到"),
    "checkin_forged": (
        "This is not a check-in code of ours.",
        "当社のチェックインコードではありません。",
        "这不是本店的签到码。",
    ),
    "checkin_expired": (
        "This check-in code has expired: scan the one shown now.",
        "このチェックインコードは期限切れです。いま表示されているコードを読み取ってください。",
        "此签到码已过期，请扫描当前显示的签到码。",
    ),
    "checkin_used": (
        "You have checked in at this store today already.",
        "本日この店舗ではすでにチェックイン済みです。",
        "您今天已在本店签到过。",
    ),
    "pay": ("Pay", "支払う", "付款"),
    "pay_title": ("Pay with this phone", "このスマホで支払う", "用本机付款"),
    "pay_setup_help": (
        "Set up this phone once to pay from your balance and points. It then makes payment codes even "
        "with no connection.",
        "一度設定すると、残高とポイントで支払えます。設定後は通信がなくても支払いコードを表示できます。",
        "设置一次即可用余额和积分付款。设置后即使没有网络也能生成付款码。",
    ),
    "pay_setup": ("Set up paying on this phone", "このスマホで支払えるようにする", "在本机开通付款"),
    "pay_code": ("Your payment code", "支払いコード", "付款码"),
    "pay_code_qr": ("QR code to pay at the till", "レジで支払うためのQRコード", "结账付款二维码"),
    "pay_code_help": (
        "Show it at the till. It works once, for about a minute.",
        "レジで見せてください。1回だけ、約1分間使えます。",
        "请在结账时出示。仅可使用一次，有效期约1分钟。",
    ),
    "pay_new_code": ("New code", "新しいコード", "刷新二维码"),
    "pay_show_member": ("Show my member code", "会員コードを表示", "显示会员码"),
    "pay_show_pay": ("Show a payment code", "支払いコードを表示", "显示付款码"),
    "pay_member_help": (
        "Show it at the till to be recognised and collect points, with or without a connection. It works once, "
        "for about a minute.",
        "レジで見せると会員として認識され、ポイントがたまります（通信がなくても使えます）。1回だけ、約1分間使えます。",
        "结账时出示即可识别会员并积分（无网络也可使用）。仅可使用一次，有效期约1分钟。",
    ),
    "pay_remove": ("Remove this phone", "このスマホを解除", "解除本机"),
    "pay_removed": (
        "This phone can no longer pay. Tills refuse its codes once they are up to date.",
        "このスマホでは支払えなくなりました。レジが更新されると、そのコードは使えません。",
        "本机已不能付款。收银机更新后将拒绝其付款码。",
    ),
    "pay_unsupported": (
        "This browser cannot keep a payment key. Use an up-to-date browser.",
        "このブラウザでは支払いキーを保存できません。最新のブラウザをご利用ください。",
        "此浏览器无法保存付款密钥，请使用最新版浏览器。",
    ),
    "pay_offline": (
        "No connection: payment codes still work; the list of your phones needs the network.",
        "通信がありません：支払いコードは使えます。スマホの一覧の表示には通信が必要です。",
        "无网络连接：付款码仍可使用；手机列表需要联网。",
    ),
    "pay_devices": ("Phones that can pay", "支払いできるスマホ", "可付款的手机"),
    "pay_device": ("Set up on {date}", "{date} に設定", "{date} 开通"),
    "pay_this_device": ("(this phone)", "（このスマホ）", "（本机）"),
    "pay_device_remove": ("Remove", "解除", "解除"),
    "wallet_sign_in_again": (
        "For your safety, sign in again to set up paying on this phone.",
        "安全のため、支払いの設定にはもう一度ログインしてください。",
        "为安全起见，开通付款前请重新登录。",
    ),
    "wallet_too_many_devices": (
        "You have as many paying phones as allowed: remove one you no longer use.",
        "支払いできるスマホの上限です。使っていないスマホを解除してください。",
        "可付款的手机已达上限，请先解除不再使用的手机。",
    ),
    "device_cert_unknown": ("There is no such phone of yours.", "そのスマホは登録されていません。", "没有此手机。"),
    # prepaid vouchers sold to the member (docs/stored-value.md, "Vouchers")
    "vouchers": ("Vouchers", "プリペイドバウチャー", "预付券"),
    "voucher_pays": ("Pays {value}", "{value} 分のお支払いに使えます", "可抵 {value}"),
    "voucher_for": ("One {sku}, up to {value}", "{sku} 1点（{value} まで）", "{sku} 一件（最多 {value}）"),
    "voucher_expires": ("Valid until", "有効期限", "有效期至"),
    "voucher_qr": ("QR code of voucher {name}", "バウチャー {name} のQRコード", "预付券 {name} 的二维码"),
    "voucher_sign_in_again": (
        "For your safety, sign in again to show the code that pays.",
        "安全のため、支払いに使うコードを表示するにはもう一度ログインしてください。",
        "为安全起见，请重新登录以显示付款码。",
    ),
    # the rewards catalogue (docs/rewards.md)
    "rewards": ("Rewards", "特典交換", "积分兑换"),
    "rewards_balance": ("You have {points} points to spend.", "ご利用可能なポイント：{points}", "可用积分：{points}"),
    "reward_points": ("{points} points", "{points} ポイント", "{points} 积分"),
    "reward_left": ("{left} left", "残り {left}", "剩余 {left}"),
    "reward_stock": ("Stock", "在庫", "库存"),
    "reward_buy": ("Get it for {points} points", "{points} ポイントで交換", "用 {points} 积分兑换"),
    "reward_not_enough": ("Not enough points yet", "ポイントが足りません", "积分不足"),
    "gift_sign_in_again": (
        "For your safety, sign in again to pass a coupon on.",
        "安全のため、クーポンを譲るにはもう一度ログインしてください。",
        "为安全起见，转赠优惠券前请重新登录。",
    ),
    "reward_sign_in_again": (
        "For your safety, sign in again to spend your points.",
        "安全のため、ポイントを使うにはもう一度ログインしてください。",
        "为安全起见，使用积分前请重新登录。",
    ),
    "reward_bought": (
        "Done: your reward is below (a coupon is with your coupons).",
        "交換しました。特典は下にあります（クーポンはクーポン画面にあります）。",
        "兑换成功：奖励见下方（优惠券在优惠券页面）。",
    ),
    "rewards_mine": ("Your rewards", "交換した特典", "我的奖励"),
    "reward_code": ("Your code", "あなたのコード", "您的兑换码"),
    "reward_code_sign_in_again": (
        "For your safety, sign in again to show your code.",
        "安全のため、コードを表示するにはもう一度ログインしてください。",
        "为安全起见，请重新登录以显示兑换码。",
    ),
    "reward_in_coupons": ("With your coupons", "クーポン画面にあります", "在优惠券页面"),
    "reward_at_till": ("Taken at the till", "店頭で受け取り済み", "已在门店领取"),
    "reward_refunded": ("Given back", "取り消し済み", "已退回"),
    "no_rewards": ("No rewards on offer right now.", "現在交換できる特典はありません。", "目前没有可兑换的奖励。"),
    "insufficient_points": (
        "You do not have enough points for this reward.",
        "この特典に必要なポイントが足りません。",
        "您的积分不足以兑换此奖励。",
    ),
    "reward_unknown": ("This reward is not on offer.", "この特典は現在交換できません。", "此奖励目前无法兑换。"),
    "reward_sold_out": ("This reward is sold out.", "この特典は品切れです。", "此奖励已兑完。"),
    "blocked_member": (
        "Your membership is on hold: please ask at a store.",
        "会員資格が停止されています。店舗にお問い合わせください。",
        "您的会员资格已暂停，请到门店咨询。",
    ),
    "member_spend_held": (
        "Your points and balance are on hold while we check your membership: please ask at a store.",
        "会員資格の確認中のため、ポイントと残高は一時的に使えません。店舗にお問い合わせください。",
        "我们正在核实您的会员资格，积分和余额暂不能使用，请到门店咨询。",
    ),
    "invalid_request": ("Please try again from the page.", "ページからもう一度お試しください。", "请从页面重新操作。"),
    # gift cards in the wallet (docs/giftcards.md)
    "giftcards": ("Gift cards", "ギフトカード", "礼品卡"),
    "giftcard": ("Gift card", "ギフトカード", "礼品卡"),
    "gc_balance": ("Balance", "残高", "余额"),
    "gc_state": ("State", "状態", "状态"),
    "gc_expires": ("Usable until", "有効期限", "有效期至"),
    "gc_no_expiry": ("no expiry", "期限なし", "无期限"),
    "gc_state_active": ("Usable", "利用可能", "可用"),
    "gc_state_blocked": ("Blocked", "利用停止中", "已停用"),
    "gc_state_cleared": ("Used up or retired", "残高なし（終了）", "已清零"),
    "gc_keep": ("Keep it in my wallet", "ウォレットに追加", "添加到我的钱包"),
    "gc_mine": ("This card is in your wallet.", "このカードはウォレットに追加済みです。", "此卡已在您的钱包中。"),
    "gc_sign_in": (
        "Sign in, then tap the card again to keep it in your wallet.",
        "ログインしてからもう一度カードをタッチすると、ウォレットに追加できます。",
        "登录后再次轻触此卡，即可添加到钱包。",
    ),
    "gc_none": (
        "No gift cards yet: hold one to your phone to keep it here.",
        "ギフトカードはまだありません。カードをスマートフォンにかざすと追加できます。",
        "暂无礼品卡：将卡片靠近手机即可添加。",
    ),
    "gc_recent": ("Last activity", "最近のご利用", "最近记录"),
    "gc_block": ("Lost or stolen: block this card", "紛失・盗難：このカードを止める", "挂失：停用此卡"),
    "gc_block_help": (
        "Every till refuses a blocked card; a store can unblock it for you.",
        "止めたカードはどのレジでも使えません。再開は店舗で承ります。",
        "停用后所有收银台都会拒绝此卡；如需恢复请到门店办理。",
    ),
    "gc_detach": ("Remove from my wallet", "ウォレットから外す", "从钱包移除"),
    "gc_kind_gift_activate": ("Bought", "購入", "购买"),
    "gc_kind_gift_load": ("Loaded", "入金", "充值"),
    "gc_kind_gift_redeem": ("Paid", "支払い", "支付"),
    "gc_kind_gift_refund": ("Given back", "返金", "退款"),
    "gc_kind_gift_block": ("Blocked", "利用停止", "停用"),
    "gc_kind_gift_unblock": ("Unblocked", "利用再開", "恢复使用"),
    "gc_kind_gift_clear": ("Cleared", "残高終了", "清零"),
    "gc_kind_gift_import": ("Moved from the old card system", "旧システムから移行", "从旧系统迁移"),
    "gift_card_held": (
        "This card is in another member's wallet.",
        "このカードは別の会員のウォレットにあります。",
        "此卡已在其他会员的钱包中。",
    ),
    "gift_card_unknown": (
        "This is not one of our gift cards, or it was never sold.",
        "当店のギフトカードではないか、まだ販売されていません。",
        "这不是本店的礼品卡，或尚未售出。",
    ),
    "gift_card_blocked": ("This gift card is blocked.", "このギフトカードは利用停止中です。", "此礼品卡已停用。"),
    "gift_card_cleared": (
        "This gift card has no value left.",
        "このギフトカードは残高がありません。",
        "此礼品卡已无余额。",
    ),
    "gift_card_invalid": (
        "This gift card cannot be changed now.",
        "このギフトカードは現在変更できません。",
        "此礼品卡目前无法更改。",
    ),
    "replayed_card": (
        "This reading of the card is used up: hold the card to your phone again.",
        "この読み取りは使用済みです。もう一度カードをかざしてください。",
        "此次读卡已失效，请再次将卡片靠近手机。",
    ),
    "forged_card": (
        "This is not a genuine reading of one of our cards.",
        "当店のカードの正しい読み取りではありません。",
        "这不是本店卡片的有效读取。",
    ),
    "sun_keys_missing": (
        "Cards cannot be read here yet: please ask at a store.",
        "現在ここではカードを読み取れません。店舗にお問い合わせください。",
        "目前无法在此读取卡片，请到门店咨询。",
    ),
    "not_found": (
        "There is no such card in your wallet.",
        "ウォレットにそのカードはありません。",
        "您的钱包中没有此卡。",
    ),
}


def pick(accept_language: str | None, chosen: str | None = None) -> str:
    """The page's language: ``chosen`` if the wallet speaks it, else the best of Accept-Language."""
    if chosen in LANGUAGES:
        return str(chosen)
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            weighted.append((-quality, index, primary))
    return min(weighted)[2] if weighted else "en"


def words(lang: str) -> dict[str, str]:
    """Every word of the pages in ``lang`` (English for a language the wallet does not speak)."""
    at = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    return {key: texts[at] for key, texts in _WORDS.items()}


__all__ = ["LANGUAGES", "NAMES", "pick", "words"]
