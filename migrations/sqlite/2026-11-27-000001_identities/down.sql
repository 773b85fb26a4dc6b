DROP TABLE external_orders;
DROP TABLE member_profiles;
DROP TABLE member_identities;
