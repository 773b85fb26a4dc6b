//! The compiled ruleset and the evaluation of a trade: a pure function of (trade, ruleset).

use crate::domain::expiry::{quarter_end, KdpPolicy};
use crate::domain::{
    CampaignCode, CurrencyCode, ExpireType, Grant, PointType, Points, ProgramTz, Trade,
};
use chrono::{DateTime, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;

/// How fractional points become whole points. Every computation names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Down to the whole point below (99.9 → 99). The usual loyalty choice.
    Floor,
    /// Up to the whole point above (99.1 → 100).
    Ceil,
    /// To the nearest, halves away from zero (99.5 → 100).
    HalfUp,
    /// To the nearest, halves to the even neighbour (98.5 → 98, 99.5 → 100).
    HalfEven,
    /// To the nearest, halves towards zero (99.5 → 99).
    HalfDown,
}

impl Rounding {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "floor" => Ok(Self::Floor),
            "ceil" => Ok(Self::Ceil),
            "half_up" => Ok(Self::HalfUp),
            "half_even" => Ok(Self::HalfEven),
            "half_down" => Ok(Self::HalfDown),
            other => Err(format!(
                "must be one of \"floor\", \"ceil\", \"half_up\", \"half_even\", \"half_down\", got {other:?}"
            )),
        }
    }

    fn strategy(self) -> RoundingStrategy {
        match self {
            Self::Floor => RoundingStrategy::ToNegativeInfinity,
            Self::Ceil => RoundingStrategy::ToPositiveInfinity,
            Self::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Self::HalfEven => RoundingStrategy::MidpointNearestEven,
            Self::HalfDown => RoundingStrategy::MidpointTowardZero,
        }
    }

    /// Rounds to whole points; `None` when the result does not fit in `Points`.
    pub fn to_points(self, value: Decimal) -> Option<Points> {
        let whole = value.round_dp_with_strategy(0, self.strategy());
        Points::new(whole.to_i64()?).ok()
    }
}

/// Which amount of the receipt earns points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarnBase {
    PaymentAmount,
    TotalAmount,
}

impl EarnBase {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "payment_amount" => Ok(Self::PaymentAmount),
            "total_amount" => Ok(Self::TotalAmount),
            other => Err(format!(
                "must be \"payment_amount\" or \"total_amount\", got {other:?}"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub time_zone: ProgramTz,
    pub base_currency: CurrencyCode,
    /// Units of base currency per unit of each accepted currency (the base itself is 1).
    pub currency_rates: BTreeMap<CurrencyCode, Decimal>,
    pub rounding: Rounding,
    pub earn_base: EarnBase,
    /// `earn_points` E points for every `earn_per_amount` of base currency.
    pub earn_points: Decimal,
    pub earn_per_amount: Decimal,
    pub earn_remark: String,
    pub kdp: KdpPolicy,
    /// New points are pending (not usable) for this many days after the sale.
    pub pending_days: u32,
}

/// What a matching campaign adds as A points.
#[derive(Debug, Clone, PartialEq)]
pub enum Award {
    /// A multiple of the trade's E points, e.g. 2 → twice the E points.
    MultiplierOfE(Decimal),
    /// `points` for every `per_amount` of base currency spent, rounded as named.
    PerAmount {
        points: Decimal,
        per_amount: Decimal,
        rounding: Rounding,
    },
    /// A fixed number of points per matching trade.
    Fixed(Points),
}

/// A pattern over store codes: `*` stands for any run of characters, `?` for one.
#[derive(Debug, Clone, PartialEq)]
pub struct StorePattern(Vec<char>);

impl StorePattern {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.chars().collect())
    }

    /// Matches a store code given as characters (collected once per trade, not per campaign).
    pub fn matches(&self, text: &[char]) -> bool {
        let pattern = &self.0;
        let (mut p, mut t) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
                p += 1;
                t += 1;
            } else if p < pattern.len() && pattern[p] == '*' {
                backtrack = Some((p, t));
                p += 1;
            } else if let Some((star_p, star_t)) = backtrack {
                p = star_p + 1;
                t = star_t + 1;
                backtrack = Some((star_p, star_t + 1));
            } else {
                return false;
            }
        }
        pattern[p..].iter().all(|&c| c == '*')
    }
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub code: CampaignCode,
    pub name: String,
    pub remark: String,
    /// The campaign applies to trades whose `sales_time` is in `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Empty: every store.
    pub stores: Vec<StorePattern>,
    /// Upper-cased; compared without regard to case. Empty: every payment method.
    pub payment_methods: Vec<String>,
    /// Empty: every currency the program accepts.
    pub currencies: Vec<CurrencyCode>,
    /// In base currency, on the program's earn base.
    pub min_spend: Decimal,
    pub priority: i64,
    pub exclusive: bool,
    pub expire_type: ExpireType,
    pub quarters_ahead: u32,
    pub award: Award,
}

impl Campaign {
    fn matches(
        &self,
        trade: &Trade,
        store: &[char],
        sales_at: DateTime<Utc>,
        spend_base: Decimal,
    ) -> bool {
        sales_at >= self.starts_at
            && sales_at < self.ends_at
            && spend_base >= self.min_spend
            && (self.stores.is_empty() || self.stores.iter().any(|p| p.matches(store)))
            && (self.payment_methods.is_empty()
                || self
                    .payment_methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(trade.payment_method.as_str())))
            && (self.currencies.is_empty() || self.currencies.contains(&trade.currency))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    #[error("currency {0} is not accepted by this program")]
    UnsupportedCurrency(CurrencyCode),
    #[error("the amount earns more points than one grant may hold")]
    PointsOverflow,
}

/// A compiled, immutable ruleset. Campaigns are held in evaluation order: priority, highest
/// first, then code.
#[derive(Debug, Clone)]
pub struct Ruleset {
    pub program: Program,
    pub campaigns: Vec<Campaign>,
    /// A content hash of the rule files: stored on every grant it computes.
    pub version: String,
}

impl Ruleset {
    /// The grants a trade earns: E first, then A in campaign order. Zero-point grants are left
    /// out. Pure: reads nothing but its arguments.
    pub fn evaluate(&self, trade: &Trade) -> Result<Vec<Grant>, EvaluateError> {
        let program = &self.program;
        let rate = program
            .currency_rates
            .get(&trade.currency)
            .ok_or_else(|| EvaluateError::UnsupportedCurrency(trade.currency.clone()))?;
        let spend = match program.earn_base {
            EarnBase::PaymentAmount => trade.payment_amount,
            EarnBase::TotalAmount => trade.total_amount,
        };
        let spend_base = spend
            .value()
            .checked_mul(*rate)
            .ok_or(EvaluateError::PointsOverflow)?;
        let sales_at = trade.sales_instant();

        let e_points = spend_base
            .checked_mul(program.earn_points)
            .and_then(|v| v.checked_div(program.earn_per_amount))
            .and_then(|v| program.rounding.to_points(v))
            .ok_or(EvaluateError::PointsOverflow)?;

        let store: Vec<char> = trade.store_code.as_str().chars().collect();
        let mut grants = Vec::new();
        if !e_points.is_zero() {
            grants.push(self.grant(
                PointType::E,
                e_points,
                ExpireType::Kdp,
                0,
                sales_at,
                &program.earn_remark,
                None,
            ));
        }
        for campaign in &self.campaigns {
            if !campaign.matches(trade, &store, sales_at, spend_base) {
                continue;
            }
            let points = match &campaign.award {
                Award::MultiplierOfE(factor) => Decimal::from(e_points.value())
                    .checked_mul(*factor)
                    .and_then(|v| program.rounding.to_points(v)),
                Award::PerAmount {
                    points,
                    per_amount,
                    rounding,
                } => spend_base
                    .checked_mul(*points)
                    .and_then(|v| v.checked_div(*per_amount))
                    .and_then(|v| rounding.to_points(v)),
                Award::Fixed(points) => Some(*points),
            }
            .ok_or(EvaluateError::PointsOverflow)?;
            if !points.is_zero() {
                grants.push(self.grant(
                    PointType::A,
                    points,
                    campaign.expire_type,
                    campaign.quarters_ahead,
                    sales_at,
                    &campaign.remark,
                    Some(&campaign.code),
                ));
            }
            if campaign.exclusive {
                break;
            }
        }
        Ok(grants)
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        point_type: PointType,
        points: Points,
        expire_type: ExpireType,
        quarters_ahead: u32,
        sales_at: DateTime<Utc>,
        remark: &str,
        campaign_code: Option<&CampaignCode>,
    ) -> Grant {
        let earned_on = self.program.time_zone.local_date(sales_at);
        let expire_date = match expire_type {
            ExpireType::Kdp => self.program.kdp.expiry_date(earned_on),
            ExpireType::Quarter => Some(quarter_end(earned_on, quarters_ahead)),
        };
        Grant {
            point_type,
            points,
            expire_type,
            expire_date,
            expires_at: expire_date.map(|d| self.program.time_zone.end_of_date(d)),
            available_at: sales_at + chrono::Duration::days(i64::from(self.program.pending_days)),
            remark: remark.to_string(),
            campaign_code: campaign_code.cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_patterns() {
        let m = |pattern: &str, store: &str| {
            StorePattern::new(pattern).matches(&store.chars().collect::<Vec<_>>())
        };
        assert!(m("DP01*", "DP01XXXX"));
        assert!(m("DP01*", "DP01"));
        assert!(!m("DP01*", "DP02XXXX"));
        assert!(!m("DP01*", "XDP01"));
        assert!(m("*", ""));
        assert!(m("*01*", "DP01XX"));
        assert!(m("DP0?", "DP07"));
        assert!(!m("DP0?", "DP070"));
        assert!(m("A*B*C", "AxxBxxBxC"));
        assert!(!m("A*B*C", "AxxBxxBx"));
        assert!(m("HK-MALL", "HK-MALL"));
    }

    #[test]
    fn rounding_modes() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let p = |r: Rounding, s: &str| r.to_points(d(s)).unwrap().value();
        assert_eq!(p(Rounding::Floor, "99.9"), 99);
        assert_eq!(p(Rounding::Ceil, "99.1"), 100);
        assert_eq!(p(Rounding::HalfUp, "99.5"), 100);
        assert_eq!(p(Rounding::HalfUp, "99.49"), 99);
        assert_eq!(p(Rounding::HalfEven, "98.5"), 98);
        assert_eq!(p(Rounding::HalfEven, "99.5"), 100);
        assert_eq!(p(Rounding::HalfDown, "99.5"), 99);
        assert!(Rounding::Floor.to_points(d("-1")).is_none());
        assert!(Rounding::parse("round").is_err());
    }
}
