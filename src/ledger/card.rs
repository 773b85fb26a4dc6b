//! The discount-card contract's records and request nonces.

use super::{connection, ms, repo, Conn, PostError};
use chrono::{DateTime, Utc};
use diesel::OptionalExtension;

/// Records a signed request's nonce: `false` if the merchant used it within `window_s`.
pub fn use_nonce(
    conn: &mut Conn,
    mchid: &str,
    nonce: &str,
    now: DateTime<Utc>,
    window_s: i64,
) -> Result<bool, PostError> {
    connection::write_transaction(conn, |conn| {
        Ok(repo::use_nonce(
            conn,
            mchid,
            nonce,
            ms(now),
            ms(now) - 2 * window_s * 1000,
        )?)
    })
}

/// A stored record's body, if its serial number was seen on this card (a serial is unique
/// within its card only).
pub fn find_record(
    conn: &mut Conn,
    kind: &str,
    card_code: &str,
    serial_no: &str,
) -> Result<Option<String>, PostError> {
    Ok(repo::find_card_record(conn, kind, card_code, serial_no)?.map(|(_, body, _)| body))
}

/// A record to keep.
#[derive(Debug, Clone)]
pub struct NewCardRecord<'a> {
    pub kind: &'a str,
    pub serial_no: &'a str,
    pub card_code: &'a str,
    pub card_template_id: &'a str,
    pub item_id: &'a str,
    pub increase: bool,
    pub count: i64,
    pub amount: Option<i64>,
    pub occurred_at: &'a str,
    pub body: &'a str,
    pub trade_id: Option<i64>,
}

pub fn insert_record(
    conn: &mut Conn,
    member: &crate::domain::VipAccountNo,
    record: &NewCardRecord,
    now: DateTime<Utc>,
) -> Result<(), PostError> {
    connection::write_transaction(conn, |conn| {
        let member_id = repo::find_member_id(conn, member.as_str())?
            .ok_or_else(|| PostError::Corrupt(format!("member {member} is missing")))?;
        repo::insert_card_record(
            conn,
            record.kind,
            record.serial_no,
            record.card_code,
            record.card_template_id,
            member_id,
            record.item_id,
            if record.increase {
                "INCREASE"
            } else {
                "DECREASE"
            },
            record.count,
            record.amount,
            record.occurred_at,
            record.body,
            record.trade_id,
            ms(now),
        )?;
        Ok(())
    })
}

/// A member's completions of an objective so far (increases less decreases), and the trades
/// of its increases, latest first.
pub fn objective_history(
    conn: &mut Conn,
    member: &crate::domain::VipAccountNo,
    objective_id: &str,
) -> Result<(i64, Vec<i64>), PostError> {
    let Some(member_id) = repo::find_member_id(conn, member.as_str())? else {
        return Ok((0, Vec::new()));
    };
    let mut completions = 0;
    let mut trades = Vec::new();
    for (record_type, count, trade_id) in repo::objective_records(conn, member_id, objective_id)? {
        if record_type == "INCREASE" {
            completions += count;
            trades.extend(trade_id);
        } else {
            completions -= count;
        }
    }
    trades.reverse();
    Ok((completions.max(0), trades))
}

/// The `out_trade_no` of a trade id.
pub fn out_trade_no_of(conn: &mut Conn, trade_id: i64) -> Result<Option<String>, PostError> {
    Ok(repo::trade_numbers_of(conn, trade_id)
        .optional()?
        .map(|(_, out_trade_no)| out_trade_no))
}
