-- Lots with points left, each with everything a balance or a burn reads of it: a member's
-- open lots are read from a few index pages, never from the table's scattered rows.
CREATE INDEX lots_member_open ON lots (
    member_id, expires_at_ms, available_at_ms, id, remaining, points, point_type, expire_type,
    expire_date, campaign_code, remark
) WHERE remaining > 0;
