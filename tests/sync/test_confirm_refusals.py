"""A head-office refusal of a confirmation (a voucher, a gift card, a payment) as the till tells it: its own code,
and head office's words once, not "head office refused" around the code said twice."""

from __future__ import annotations

from typing import Any, cast

import pytest

from sync.client import HqRejected, SyncClient
from sync.confirm import voucher_confirmer
from terminal.errors import Code, Rejected


class Refusing:
    """The head-office client's one call the confirmation makes, answering as head office refuses a voucher."""

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        raise HqRejected(409, "voucher_not_sold", "head office holds no sale of this voucher: it is not valid yet")


def test_a_refused_voucher_says_its_code_once_and_head_offices_words() -> None:
    confirm = voucher_confirmer(cast(SyncClient, Refusing()))
    with pytest.raises(Rejected) as refused:
        confirm({"action": "redeem", "txn_id": "T1-9", "code": "TPV1:x"})
    assert refused.value.code is Code.VOUCHER_NOT_SOLD
    said = str(refused.value)
    assert (
        said
        == "voucher_not_sold: head office refused it: head office holds no sale of this voucher: it is not valid yet"
    )
    assert said.count("voucher_not_sold") == 1 and "409" not in said
