DROP INDEX refunds_member;
