-- A member's birthday, "YYYY-MM-DD" or "MM-DD" (year unknown), for birthday campaigns. Set
-- through PUT /v1/point-engine/members/{vip_accountno}/profile.
ALTER TABLE member_profiles ADD COLUMN birthday TEXT;
