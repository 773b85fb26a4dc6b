ALTER TABLE member_profiles DROP COLUMN birthday;
