"""Member profiles: birthday, the attributes a chain configures, marketing consent."""

from __future__ import annotations
