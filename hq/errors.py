"""Head office's errors that cross its layers: storage failures every part may see and translate.

    HqError                   any refusal or failure of head office's own
     +-- Refused              a request refused for a stable reason (its ``ErrorCode``)
     +-- StorageFailed        the database failed or is unreachable (503); its ``problem``: full, read-only,
     |                        damaged or other
     |    +-- IntegrityFailed a unique constraint refused a row
     |    +-- RetryableFailed a deadlock or serialization failure; ``Db.transact`` retries it
     |    +-- LockWaited      a statement waited its whole bound for a lock another session holds
     +-- BackupFailed         the copy an upgrade takes first could not be made
     +-- NewerSchema          the database was migrated by a newer release
     +-- MigrationBlocked     a migration waited its whole bound for a lock: nothing of it was applied
 +-- KeyFileInvalid       a card key file given to head office cannot be read or holds no valid key

The errors of one area (ingest's ``SeqConflict``, payments' ``PaymentRefused`` ...) subclass ``HqError``
in that area's module; the API maps them all to error codes in ``hq.api.errors``.
"""

from __future__ import annotations

from typing import Literal

from sync.protocol import ErrorCode

StorageProblem = Literal["storage_full", "storage_read_only", "storage_damaged", "storage_failed"]
"""What kind of storage failure (a stable code the command line prints): no room on the disk, the database
cannot be written, its file is damaged, anything else."""


class HqError(Exception):
    pass


class Refused(HqError):
    """A request refused for a stable reason: ``code`` (a ``sync.protocol.ErrorCode``) says why, ``detail``
    what exactly; the message is both."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.detail = message


class StorageFailed(HqError):
    """The database failed; ``problem`` says what kind (``StorageProblem``)."""

    def __init__(self, message: str, problem: StorageProblem = "storage_failed") -> None:
        super().__init__(message)
        self.problem: StorageProblem = problem


class IntegrityFailed(StorageFailed):
    pass


class RetryableFailed(StorageFailed):
    pass


class LockWaited(StorageFailed):
    """A statement waited ``waited`` seconds, its bound, for a lock another session holds; ``holders`` names the
    sessions of the database whose transactions are the oldest open (which of them holds it, PostgreSQL does not
    say once the wait is over), for an operator to look at."""

    def __init__(self, message: str, waited: float, holders: str) -> None:
        super().__init__(message)
        self.waited = waited
        self.holders = holders


class BackupFailed(HqError):
    """The copy an upgrade takes first could not be made: nothing was migrated. ``code``: what a command prints
    first."""

    code = "backup_failed"


class NewerSchema(HqError):
    """The database was upgraded by a newer release than this one: refused, never written."""


class MigrationBlocked(HqError):
    """A migration (or the fill-in after it) waited its whole bound for a lock that another session holds: its
    transaction was rolled back, so nothing of it was applied (those before it stay applied). ``code`` is the
    stable code a command prints first."""

    code = "migration_blocked"


class KeyFileInvalid(HqError):
    """A card key file head office is given (``--card-key-file``, ``--sun-key-file``, ``--seed-demo-key``) cannot be
    read or holds no valid key: head office does not start, rather than hash cards with a cut-short key or verify
    no card at all. ``code`` is the stable code a command prints first."""

    code = "key_file_invalid"


class MigrationNeeded(HqError):
    """The database lacks migrations of this release, and the command does not migrate (every ``tillpoint hq``
    command but ``migrate`` and ``serve``): ``tillpoint hq migrate`` applies them first. ``pending``: their names."""

    code = "migration_needed"

    def __init__(self, message: str, pending: list[str]) -> None:
        super().__init__(message)
        self.pending = pending
