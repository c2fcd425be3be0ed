"""The member's wallet on the phone, served by head office at ``/wallet/`` (docs/wallet.md).

    senders   how a one-time sign-in code reaches the member: ``Sender`` (console, files, SMTP) and
              ``SmsGateway`` (an HTTP webhook), chosen by ``sender_from_spec``
    signin    contacts (an email address or a phone number per member), one-time codes (a digest, a short
              life, counted attempts, single use, rate limits) and sessions (a cookie's digest)
    views     what the pages show: tier and progress, points and their lots, stored value, visits, the
              member's own coupons, the member code signed for the current time step
    gifts     passing a coupon on: a gift link (a token's digest) holds the coupon, a claim moves it to a
              new coupon of the receiver's, a gift not claimed in time goes back to the giver
    devices   paying with this phone: the browser's WebCrypto key registered through the session (a recent
              sign-in, a few phones a member) as a device certificate, and removed onto the revocation list
    qr        QR codes drawn as inline SVG (the ``qrcode`` library encodes)
    i18n      the pages' words in English, Japanese and Chinese, chosen by Accept-Language or a switch

The routes are ``hq.api.wallet``; the templates and static files ship inside this package (``static/pay.js``
makes the payment codes in the browser; ``static/vendor/`` holds the QR encoder it uses, docs/wallet.md).
"""
