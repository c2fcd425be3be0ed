"""Files the till makes stay its service user's: one an operator's ``sudo tillpoint ...`` makes or replaces in the
till's data (the database, a key, the head-office token) is given the owner of what it replaces or of its directory.
Shared by the secret files (``terminal.keys``), the database (``terminal.store``) and the token file (``sync.client``)."""

from __future__ import annotations

import os
from pathlib import Path


def owned_as(fd: int, path: Path) -> None:
    """Give the file open at ``fd`` the owner of ``path``, or of its directory when there is none yet: a file an
    operator's ``sudo tillpoint ...`` makes or replaces in the till's data stays the service user's, who could not
    read root's 0600 file. Only root may give a file away: anyone else keeps
    it as their own."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = os.stat(path.parent)
    try:
        os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:  # not root (EPERM), or an owner this namespace cannot name (EINVAL)
        pass


__all__ = ["owned_as"]
