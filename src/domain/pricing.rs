//! What pricing a trade needs from the ledger and gives back to it. Evaluation stays pure: the
//! ledger reads a member's history (inside the trade's transaction, under the member's lock),
//! the rules price the trade against it, and the ledger records the outcome.

use super::{CampaignCode, CurrencyCode, Gender, Grant};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluateError {
    #[error("currency {0} is not accepted by this program")]
    UnsupportedCurrency(CurrencyCode),
    #[error("the amount earns more points than one grant may hold")]
    PointsOverflow,
}

/// What the rules need to know about a member's history to price one trade.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextNeeds {
    /// Whether any candidate campaign asks about the member's first trade.
    pub trades_before: bool,
    /// Whether any asks about the member's gender (their stored profile's).
    pub gender: bool,
    /// Whether any asks about the member's birthday.
    pub birthday: bool,
    /// What the member's tier is worked out from, when the program has tiers.
    pub tier: Option<TierNeed>,
    pub campaigns: Vec<CampaignNeed>,
}

/// What qualifies a member for a tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierBasis {
    /// The points granted (E and A), less what refunds took back of them.
    Points,
    /// The money paid, in base currency, less what was refunded.
    Spend,
}

/// The member's qualifying points (or spend) in two windows of sales times: the one up to the
/// sale, and the one the last review looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierNeed {
    pub basis: TierBasis,
    pub current: (DateTime<Utc>, DateTime<Utc>),
    pub review: (DateTime<Utc>, DateTime<Utc>),
    /// Base currency per unit of each currency the program accepts (for `Spend`).
    pub rates: std::collections::BTreeMap<CurrencyCode, rust_decimal::Decimal>,
}

/// One campaign's questions about the member (and, for a budget, about everyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignNeed {
    pub code: CampaignCode,
    /// Count the member's trades sold in this window (`nth_trade`, `every_nth_trade`,
    /// `from_nth_trade`).
    pub trades_in: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Sum the member's points from this campaign: over its life, on the trade's local day, in
    /// its local week and in its local month (each a window of sales times).
    pub member_points: Option<MemberWindows>,
    /// Read what the campaign's budget has granted so far.
    pub budget: bool,
    /// Read what its budget of this local day ("2026-12-02") of the sale has granted.
    pub budget_day: Option<String>,
    /// Read what its budget of this local month ("2026-12") of the sale has granted.
    pub budget_month: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberWindows {
    pub day: (DateTime<Utc>, DateTime<Utc>),
    /// Monday to Sunday.
    pub week: (DateTime<Utc>, DateTime<Utc>),
    pub month: (DateTime<Utc>, DateTime<Utc>),
}

/// A member's history as far as the candidate campaigns asked about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberContext {
    /// Trades the member made before this one (0: this is their first).
    pub trades_before: u64,
    /// As the member's profile holds it; `None`: not given.
    pub gender: Option<Gender>,
    /// As the member's profile holds it; `None`: not given.
    pub birthday: Option<super::Birthday>,
    /// What qualified the member for a tier: in the current window and in the last review's.
    pub qualifying: Option<[rust_decimal::Decimal; 2]>,
    /// The member's tier, when it is known as such: the one a trade was priced at (a refund
    /// and the audit price it again at it), or a rule test's.
    pub tier: Option<String>,
    pub campaigns: HashMap<CampaignCode, CampaignUse>,
    /// Pricing a trade again for a refund: the member conditions held when it was first priced
    /// (its grants prove it), and limits and budgets were already applied to what it got.
    pub repricing: bool,
    /// Re-pricing for the audit: only these campaigns (the ones that granted the trade) may
    /// match, so a campaign whose member conditions failed the first time does not match now,
    /// nor block the others. `None`: any campaign.
    pub only_campaigns: Option<std::collections::HashSet<CampaignCode>>,
}

impl MemberContext {
    /// The context of a refund's or the audit's re-pricing of a trade that these campaigns
    /// granted: the most it can have earned (no limits or budgets applied).
    pub fn audit(granted: std::collections::HashSet<CampaignCode>) -> Self {
        Self {
            repricing: true,
            only_campaigns: Some(granted),
            ..Self::default()
        }
    }

    pub fn campaign(&self, code: &CampaignCode) -> CampaignUse {
        self.campaigns.get(code).copied().unwrap_or_default()
    }
}

/// What a member (and everyone, for `budget_used`) already got from one campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignUse {
    /// The member's trades sold in the campaign's window, before this one.
    pub trades_in_window: u64,
    pub points_total: i64,
    pub points_day: i64,
    pub points_week: i64,
    pub points_month: i64,
    /// Points the campaign's budget has granted, to every member.
    pub budget_used: i64,
    /// Points its budgets of the sale's local day and month have granted, to every member.
    pub budget_day_used: i64,
    pub budget_month_used: i64,
}

/// A budget a grant takes from: a campaign's whole budget, or its budget of one local day
/// ("2026-12-02") or month ("2026-12") of the sale.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BudgetKey {
    Whole(CampaignCode),
    Period(CampaignCode, String),
}

impl BudgetKey {
    pub fn campaign(&self) -> &CampaignCode {
        match self {
            Self::Whole(code) | Self::Period(code, _) => code,
        }
    }
}

/// A priced trade: its grants, and what they take from campaign budgets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Priced {
    pub grants: Vec<Grant>,
    /// (budget, its cap, points this trade takes from it).
    pub budget_use: Vec<(BudgetKey, i64, i64)>,
    /// The member's tier the trade was priced at (`None`: the program has no tiers).
    pub tier: Option<String>,
}
