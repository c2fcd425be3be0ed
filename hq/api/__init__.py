"""Head office's HTTP API: one FastAPI ``APIRouter`` per area, included by ``app.create_app``.

app.py        create_app(store): the application, its middleware and error handlers, every router
errors.py     ApiError, the error body, the error codes each route documents, the handlers
deps.py       what routes depend on: the store, the terminal or administrator calling, shared parameters
terminals.py  health, enrolment, credential rotation, a terminal's flags, end of day
journal.py    journal push, health reports, journal state and lost ranges, changes, snapshots
admin.py      the fleet, metrics, reconciliation, items and groups, stores, quarantine, blocking
payments.py   member payments: devices, the member's own view, confirmations, top-ups, revocations
join.py       the sign-up page a receipt's QR opens, claims, erasure, consents
server.py     serve() in the foreground, start_in_thread() for the demo and tests
"""
