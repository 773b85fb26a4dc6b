-- A member's refunds, found by the member: every trade and every balance reads what the member
-- owes (refund lines with owed points, through their refunds), and the audit and the reports
-- read refunds by ranges of members. Without it those reads scanned every refund line of the
-- ledger, so a trade cost more the more refunds the ledger held.
CREATE INDEX refunds_member ON refunds (member_id);
