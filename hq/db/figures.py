"""The report roll-up's definition (``hq.rollup``): each figure over the whole history as one statement.

Here, in the database layer, because the migration that made ``report_days`` filled it with these statements,
and ``hq.rollup`` checks and rebuilds the table with the same ones.
"""

_JOURNAL_COUNTED = "effect IN ('applied', 'none')"
REBUILD: dict[str, str] = {
    "sales": "SELECT day, store_id, terminal_id, 'sales', COUNT(*) FROM journal "
    f"WHERE kind = 'sale' AND {_JOURNAL_COUNTED} GROUP BY day, store_id, terminal_id",
    "amount": "SELECT day, store_id, terminal_id, 'amount', SUM(total) FROM journal "
    f"WHERE kind = 'sale' AND {_JOURNAL_COUNTED} GROUP BY day, store_id, terminal_id",
    "topped_up": "SELECT day, store_id, terminal_id, 'topped_up', SUM(stored_value) FROM journal "
    "WHERE kind IN ('till_topup', 'topup_void') AND effect = 'applied' GROUP BY day, store_id, terminal_id",
    "paid": "SELECT day, store_id, terminal_id, 'paid', SUM(-stored_value) FROM journal "
    f"WHERE kind IN ('sale', 'refund', 'void') AND {_JOURNAL_COUNTED} GROUP BY day, store_id, terminal_id",
    "coupons": "SELECT j.day, j.store_id, j.terminal_id, 'coupons', COUNT(*) FROM journal j "
    "JOIN coupon_uses u ON u.txn_id = j.txn_id AND u.released = 0 "
    f"WHERE j.kind = 'sale' AND j.{_JOURNAL_COUNTED} GROUP BY j.day, j.store_id, j.terminal_id",
    "coupons_campaign": "SELECT j.day, j.store_id, j.terminal_id, 'coupons_campaign', COUNT(*) FROM journal j "
    "JOIN coupon_uses u ON u.txn_id = j.txn_id AND u.released = 0 "
    f"WHERE j.kind = 'sale' AND j.{_JOURNAL_COUNTED} "
    "AND EXISTS (SELECT 1 FROM campaign_members cm WHERE cm.coupon_id = u.coupon_id) "
    "GROUP BY j.day, j.store_id, j.terminal_id",
    "points_issued": "SELECT l.earned_day, COALESCE(j.store_id, ''), COALESCE(j.terminal_id, ''), 'points_issued', "
    "SUM(l.points) FROM ledger_lots l LEFT JOIN journal j ON j.txn_id = l.lot_id "
    "GROUP BY l.earned_day, COALESCE(j.store_id, ''), COALESCE(j.terminal_id, '')",
    "points_redeemed": "SELECT j.day, j.store_id, j.terminal_id, 'points_redeemed', SUM(p.amount) FROM journal j "
    "JOIN ledger_postings p ON p.ledger_txn_id = j.txn_id AND p.kind = 'merchant_accepted' "
    "WHERE j.kind IN ('sale', 'refund', 'void') GROUP BY j.day, j.store_id, j.terminal_id",
    "points_expired": "SELECT t.day, COALESCE(j.store_id, ''), '', 'points_expired', SUM(u.points) FROM ledger_txns t "
    "JOIN ledger_lot_uses u ON u.ledger_txn_id = t.ledger_txn_id AND u.purpose = 'expire' "
    "LEFT JOIN journal j ON j.txn_id = u.lot_id WHERE t.kind = 'expire' GROUP BY t.day, COALESCE(j.store_id, '')",
    "member_points": "SELECT t.day, '*', COALESCE(j.terminal_id, ''), 'member_points', SUM(p.amount) "
    "FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id AND p.kind = 'member_points' "
    "LEFT JOIN journal j ON j.txn_id = t.ledger_txn_id GROUP BY t.day, COALESCE(j.terminal_id, '')",
    "active": "SELECT day, store_id, '', 'active', COUNT(*) FROM member_days WHERE visits > 0 GROUP BY day, store_id",
    "visits": "SELECT day, store_id, '', 'visits', SUM(visits) FROM member_days WHERE visits > 0 "
    "GROUP BY day, store_id",
    "spend": "SELECT day, store_id, '', 'spend', SUM(spend) FROM member_days WHERE visits > 0 GROUP BY day, store_id",
    "member_value": "SELECT t.day, '*', COALESCE(j.terminal_id, ''), 'member_value', SUM(p.amount) "
    "FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id AND p.kind = 'member_value' "
    "LEFT JOIN journal j ON j.txn_id = t.ledger_txn_id GROUP BY t.day, COALESCE(j.terminal_id, '')",
    "gift_value": "SELECT t.day, '*', '', 'gift_value', SUM(p.amount) "
    "FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id AND p.kind = 'gift_value' "
    "GROUP BY t.day",
    "voucher_value": "SELECT t.day, '*', '', 'voucher_value', SUM(p.amount) "
    "FROM ledger_txns t JOIN ledger_postings p ON p.ledger_txn_id = t.ledger_txn_id AND p.kind = 'voucher_value' "
    "GROUP BY t.day",
}
"""Each figure over the whole history, as ``(day, store, till, figure, amount)`` rows: the roll-up's
definition. The migration that made ``report_days`` filled it with these."""
