"""The back office: head office's web console for staff, served at ``/backoffice/`` (docs/backoffice.md).

    roles      the role table and ``allowed(role, action, scope)`` (pure)
    errors     ``BackofficeRefused`` and its stable codes
    staff      staff accounts: scrypt password hashes, roles, store managers' stores, failed sign-ins
    sessions   server-side sessions (a fresh token at sign-in, idle and absolute expiry, a CSRF token each)
    approvals  four eyes: a change asked for by one person, applied when another approves it
    members    the members pages' reading and changes (search, page, block, adjust, erase)
    campaigns  the campaigns page: the list, and asking for a launch (approved by a second person)
    recon      the reconciliation pages (items grouped, settling one, a group or the ticked ones, end of day,
               CSV) and the fleet page
    reports    the report pages' period, stores and role checks, and their CSV downloads
    giftcards  gift cards: find one, its page, unblock, ask for a clear
    settlement a period's statements (a merchant's staff: their own), each as the command's CSV and PDF
    editors    the rule and coupon editors: lists, save, retire, the quote preview
    team       staff management on the web (chain administrators); the last administrator stays
    i18n       the pages' words in English, Japanese and Chinese
    pages      the Jinja2 templates and static files (htmx vendored) of this package

Changes are recorded in head office's audit log (``hq.audit``). The routes are ``hq.api.backoffice``; the commands ``hq.cli.backoffice`` (``staff``, ``audit verify``).
"""
