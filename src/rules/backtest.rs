//! Replaying real trades under a draft ruleset, in memory: the member histories that limits,
//! first and nth trades and budgets depend on are rebuilt as the replay goes, so nothing is
//! read per trade and nothing is written.

use super::engine::Ruleset;
use crate::domain::{
    Birthday, BudgetKey, CampaignCode, CampaignUse, EvaluateError, Gender, MemberContext,
    TierBasis, Trade,
};
use chrono::{Datelike, NaiveDate};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// What one campaign did over the replay, under the draft and in the ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignReplay {
    /// The campaign's code; `""` for E points.
    pub campaign_code: String,
    /// Trades the draft granted this campaign's points to.
    pub trades_matched: u64,
    /// Points the draft granted.
    pub points: i64,
    /// Points the draft granted under the campaign's budgets (whole, per day, per month).
    pub budget_used: i64,
    /// Points the live rules actually granted to the same trades.
    pub live_points: i64,
    /// `points - live_points`.
    pub difference: i64,
}

#[derive(Debug, Default)]
struct MemberCampaign {
    trades_in_window: u64,
    total: i64,
    by_day: HashMap<NaiveDate, i64>,
    /// By the Monday of the week.
    by_week: HashMap<NaiveDate, i64>,
    by_month: HashMap<(i32, u32), i64>,
}

#[derive(Debug, Default)]
struct MemberHistory {
    trades: u64,
    /// (sales instant, points granted, payment in base currency) of each trade replayed: what
    /// tiers qualify on.
    earned: Vec<(chrono::DateTime<chrono::Utc>, i64, rust_decimal::Decimal)>,
    campaigns: HashMap<CampaignCode, MemberCampaign>,
}

/// A replay in progress: feed it trades in sales order.
#[derive(Debug)]
pub struct Backtest<'r> {
    rules: &'r Ruleset,
    members: HashMap<String, MemberHistory>,
    budgets: HashMap<BudgetKey, i64>,
    campaigns: BTreeMap<String, CampaignReplay>,
    pub trades: u64,
}

impl<'r> Backtest<'r> {
    pub fn new(rules: &'r Ruleset) -> Self {
        Self {
            rules,
            members: HashMap::new(),
            budgets: HashMap::new(),
            campaigns: BTreeMap::new(),
            trades: 0,
        }
    }

    /// Prices one trade under the draft against the history replayed so far (and the member's
    /// gender and birthday as their profile holds them), and records it with what the live rules granted it:
    /// `(campaign code or "", points)`.
    pub fn feed(
        &mut self,
        trade: &Trade,
        (gender, birthday): (Option<Gender>, Option<Birthday>),
        live: &[(String, i64)],
    ) -> Result<(), EvaluateError> {
        let rules = self.rules;
        let tz = &rules.program.time_zone;
        let sales_at = trade.sales_instant();
        let day = tz.local_date(sales_at);
        let month = (day.year(), day.month());
        let week = day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()));
        let member = self
            .members
            .entry(trade.vip_accountno.to_string())
            .or_default();
        let mut ctx = MemberContext {
            trades_before: member.trades,
            gender,
            birthday,
            ..MemberContext::default()
        };
        let needs = rules.needs(trade)?;
        if let Some(tier) = &needs.tier {
            let mut sums = [rust_decimal::Decimal::ZERO; 2];
            for (at, points, spend) in &member.earned {
                let amount = match tier.basis {
                    TierBasis::Points => rust_decimal::Decimal::from(*points),
                    TierBasis::Spend => *spend,
                };
                for (sum, (from, to)) in sums.iter_mut().zip([tier.current, tier.review]) {
                    if (from..to).contains(at) {
                        *sum += amount;
                    }
                }
            }
            ctx.qualifying = Some(sums);
        }
        for need in needs.campaigns {
            let history = member.campaigns.get(&need.code);
            let budget = |key: BudgetKey| self.budgets.get(&key).copied().unwrap_or(0);
            let period = |period: Option<String>| {
                period.map_or(0, |p| budget(BudgetKey::Period(need.code.clone(), p)))
            };
            let used = CampaignUse {
                trades_in_window: history.map_or(0, |h| h.trades_in_window),
                points_total: history.map_or(0, |h| h.total),
                points_day: history.map_or(0, |h| h.by_day.get(&day).copied().unwrap_or(0)),
                points_week: history.map_or(0, |h| h.by_week.get(&week).copied().unwrap_or(0)),
                points_month: history.map_or(0, |h| h.by_month.get(&month).copied().unwrap_or(0)),
                budget_used: budget(BudgetKey::Whole(need.code.clone())),
                budget_day_used: period(need.budget_day.clone()),
                budget_month_used: period(need.budget_month.clone()),
            };
            ctx.campaigns.insert(need.code, used);
        }
        let priced = rules.price(trade, &ctx)?;

        member.trades += 1;
        let rate = rules
            .program
            .currency_rates
            .get(&trade.currency)
            .copied()
            .unwrap_or_default();
        member.earned.push((
            sales_at,
            priced.grants.iter().map(|g| g.points.value()).sum(),
            trade.payment_amount.value() * rate,
        ));
        for campaign in rules.campaigns.iter().filter(|c| c.trade_count.is_some()) {
            if (campaign.starts_at..campaign.ends_at).contains(&sales_at) {
                member
                    .campaigns
                    .entry(campaign.code.clone())
                    .or_default()
                    .trades_in_window += 1;
            }
        }
        for grant in &priced.grants {
            let code = grant.campaign_code_text().to_string();
            let points = grant.points.value();
            let stats = self.campaigns.entry(code.clone()).or_default();
            stats.trades_matched += 1;
            stats.points += points;
            if let Some(code) = &grant.campaign_code {
                let history = member.campaigns.entry(code.clone()).or_default();
                history.total += points;
                *history.by_day.entry(day).or_default() += points;
                *history.by_week.entry(week).or_default() += points;
                *history.by_month.entry(month).or_default() += points;
            }
        }
        // A grant takes from each of its campaign's budgets (next to each other): counted once.
        let mut counted: Option<&CampaignCode> = None;
        for (key, _, points) in &priced.budget_use {
            *self.budgets.entry(key.clone()).or_default() += points;
            if counted != Some(key.campaign()) {
                counted = Some(key.campaign());
                self.campaigns
                    .entry(key.campaign().to_string())
                    .or_default()
                    .budget_used += points;
            }
        }
        for (code, points) in live {
            self.campaigns.entry(code.clone()).or_default().live_points += points;
        }
        self.trades += 1;
        Ok(())
    }

    /// Per campaign (E first, as `""`), with the difference from the live rules.
    pub fn finish(self) -> Vec<CampaignReplay> {
        self.campaigns
            .into_iter()
            .map(|(code, mut stats)| {
                stats.campaign_code = code;
                stats.difference = stats.points - stats.live_points;
                stats
            })
            .collect()
    }
}
