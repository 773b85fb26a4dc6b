DROP INDEX lots_member_open;
