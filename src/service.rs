//! Use cases: each takes validated domain input, runs the pure rules, and records the outcome
//! in one ledger transaction. Blocking: call from `web::block`.

use crate::domain::{Trade, VipAccountNo};
use crate::ledger::{self, Balance, Pool, PostError, Posted};
use crate::rules::{EvaluateError, Ruleset};
use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Evaluate(#[from] EvaluateError),
    #[error(transparent)]
    Post(#[from] PostError),
    #[error("no database connection came free in time: {0}")]
    Unavailable(#[from] diesel::r2d2::PoolError),
}

/// Prices a trade under the ruleset and records it. A concurrent duplicate from another
/// process that wins the race is answered by replaying its result. A trade already recorded is
/// answered as it was, even if today's rules would no longer price it.
pub fn create_trade(
    pool: &Pool,
    rules: &Ruleset,
    trade: &Trade,
    now: DateTime<Utc>,
) -> Result<Posted, ServiceError> {
    let mut conn = pool.get()?;
    let grants = match rules.evaluate(trade) {
        Ok(grants) => grants,
        Err(error) => {
            return ledger::replay(&mut conn, trade)?.ok_or(ServiceError::Evaluate(error))
        }
    };
    match ledger::post_trade(&mut conn, trade, &grants, &rules.version, now) {
        Err(PostError::Race) => Ok(ledger::post_trade(
            &mut conn,
            trade,
            &grants,
            &rules.version,
            now,
        )?),
        other => Ok(other?),
    }
}

/// Expires every lot past its expiry at `as_of`.
pub fn expire_due(pool: &Pool, as_of: DateTime<Utc>) -> Result<ledger::Expired, ServiceError> {
    let mut conn = pool.get()?;
    Ok(ledger::expire_due(&mut conn, as_of, Utc::now())?)
}

/// Checks every ledger invariant.
pub fn audit(pool: &Pool) -> Result<ledger::audit::Report, ServiceError> {
    let mut conn = pool.get()?;
    Ok(ledger::audit::audit(&mut conn).map_err(PostError::from)?)
}

pub fn member_balance(
    pool: &Pool,
    vip: &VipAccountNo,
    as_of: DateTime<Utc>,
) -> Result<Option<Balance>, ServiceError> {
    let mut conn = pool.get()?;
    Ok(ledger::balance(&mut conn, vip, as_of)?)
}

pub fn member_history(
    pool: &Pool,
    vip: &VipAccountNo,
    page: i64,
    page_size: i64,
) -> Result<Option<ledger::history::History>, ServiceError> {
    let mut conn = pool.get()?;
    Ok(ledger::history::member_history(
        &mut conn, vip, page, page_size,
    )?)
}

pub fn trade_detail(
    pool: &Pool,
    number: &str,
) -> Result<Option<ledger::history::TradeDetail>, ServiceError> {
    let mut conn = pool.get()?;
    Ok(ledger::history::trade_detail(&mut conn, number)?)
}
