//! The compiled ruleset and the evaluation of a trade: a pure function of (trade, ruleset).

use crate::domain::expiry::{quarter_end, KdpPolicy};
use crate::domain::pricing::{CampaignNeed, MemberWindows, TierBasis, TierNeed};
use crate::domain::{
    BudgetKey, CampaignCode, ContextNeeds, CurrencyCode, ExpireType, Gender, Grant, MemberContext,
    ObjectiveId, PointType, Points, Priced, ProgramTz, Trade,
};
use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

pub use crate::domain::EvaluateError;

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

    /// The same rounding as `rust_decimal` names it: `to_points` is checked against it.
    #[cfg(test)]
    fn strategy(self) -> rust_decimal::RoundingStrategy {
        use rust_decimal::RoundingStrategy;
        match self {
            Self::Floor => RoundingStrategy::ToNegativeInfinity,
            Self::Ceil => RoundingStrategy::ToPositiveInfinity,
            Self::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Self::HalfEven => RoundingStrategy::MidpointNearestEven,
            Self::HalfDown => RoundingStrategy::MidpointTowardZero,
        }
    }

    /// Rounds to whole points; `None` when the result does not fit in `Points`. The same as
    /// `round_dp_with_strategy(0, self.strategy())`, by one integer division of the decimal's
    /// mantissa instead of a rescale.
    pub fn to_points(self, value: Decimal) -> Option<Points> {
        use std::cmp::Ordering;
        const POW10: [i64; 19] = {
            let mut table = [1i64; 19];
            let mut k = 1;
            while k < table.len() {
                table[k] = table[k - 1] * 10;
                k += 1;
            }
            table
        };
        let mantissa = value.mantissa();
        let (floor, rest, unit) = match (i64::try_from(mantissa), POW10.get(value.scale() as usize))
        {
            // Most values: one 64-bit division instead of a 128-bit one.
            (Ok(mantissa), Some(&unit)) => (
                i128::from(mantissa.div_euclid(unit)),
                i128::from(mantissa.rem_euclid(unit)),
                i128::from(unit),
            ),
            _ => {
                // At most 10^28: fits, and so does twice a remainder below it.
                let unit = 10i128.pow(value.scale());
                (mantissa.div_euclid(unit), mantissa.rem_euclid(unit), unit)
            }
        };
        let up = match self {
            Self::Floor => false,
            Self::Ceil => rest != 0,
            Self::HalfUp | Self::HalfEven | Self::HalfDown => match (2 * rest).cmp(&unit) {
                Ordering::Less => false,
                Ordering::Greater => true,
                Ordering::Equal => match self {
                    // Away from zero: a positive half goes up.
                    Self::HalfUp => mantissa > 0,
                    // Towards zero: a negative half goes up.
                    Self::HalfDown => mantissa < 0,
                    _ => floor % 2 != 0,
                },
            },
        };
        Points::new(i64::try_from(floor + i128::from(up)).ok()?).ok()
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
    /// `earn_points / earn_per_amount` when it is an exact decimal (see `exact_ratio`).
    pub earn_ratio: Option<Decimal>,
    pub earn_remark: std::sync::Arc<str>,
    pub kdp: KdpPolicy,
    /// New points are pending (not usable) for this many days after the sale.
    pub pending_days: u32,
    /// What the earning base leaves out.
    pub exclude_post_fee: bool,
    pub exclude_discount: bool,
    /// Set: the money value of the burned points is left out of the base.
    pub exclude_burned_at: Option<Decimal>,
    /// Lines whose SKU matches one of these earn nothing (their amount leaves the base).
    pub excluded_skus: Vec<Glob>,
    pub rounding_scope: RoundingScope,
    /// Named lists of store patterns campaigns refer to.
    pub store_groups: BTreeMap<String, Vec<Glob>>,
    /// Named lists of local dates campaigns black out.
    pub holidays: BTreeMap<String, Vec<NaiveDate>>,
    pub tiers: Option<Tiers>,
    /// The stores of these groups are in these zones (the first group a store is in, by name,
    /// counts); every other store is in `time_zone`.
    pub store_zones: Vec<(Vec<Glob>, ProgramTz)>,
}

/// Over what a tier is qualified for, and when it is reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierPeriod {
    /// The calendar year of the sale so far (local time); reviewed each 1 January: the tier a
    /// year qualified for is kept through the next year.
    CalendarYear,
    /// The 12 months up to the sale; reviewed at the start of each local month: the tier the
    /// 12 months before the review qualified for is kept through that month.
    Rolling12Months,
}

/// Member tiers: a member is at the highest level whose `from` what qualifies them reaches,
/// now or at the last review, whichever is higher. Moving up is at once; down, at a review.
#[derive(Debug, Clone, PartialEq)]
pub struct Tiers {
    pub basis: TierBasis,
    pub period: TierPeriod,
    /// (name, from), lowest first; the first from 0.
    pub levels: Vec<(String, Decimal)>,
}

impl Tiers {
    /// The level `qualifying` reaches.
    pub fn level_of(&self, qualifying: Decimal) -> usize {
        self.levels
            .iter()
            .rposition(|(_, from)| qualifying >= *from)
            .unwrap_or(0)
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.levels
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub fn name(&self, level: usize) -> &str {
        self.levels.get(level).map_or("", |(name, _)| name.as_str())
    }

    /// The member's level from what qualified them now and at the last review.
    pub fn level(&self, [current, review]: [Decimal; 2]) -> usize {
        self.level_of(current).max(self.level_of(review))
    }
}

impl Program {
    /// The index in `store_zones` of the zone a store is in (`None`: the program's).
    fn store_zone(&self, store: &str) -> Option<usize> {
        if self.store_zones.is_empty() {
            return None;
        }
        let chars: Vec<char> = store.chars().collect();
        self.store_zones
            .iter()
            .position(|(patterns, _)| patterns.iter().any(|p| p.matches(&chars)))
    }

    /// A store's time zone, by its index from `store_zone`.
    pub fn zone(&self, index: Option<usize>) -> &ProgramTz {
        index
            .and_then(|i| self.store_zones.get(i))
            .map_or(&self.time_zone, |(_, zone)| zone)
    }

    /// The E points an amount of base currency earns, rounded as the program rounds; `None`
    /// when they do not fit in `Points`.
    fn e_points_of(&self, base_amount: Decimal) -> Option<Points> {
        per(
            base_amount,
            self.earn_points,
            self.earn_per_amount,
            self.earn_ratio,
        )
        .and_then(|v| self.rounding.to_points(v))
    }
}

/// What a campaign counts as the trade's spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendBase {
    /// The receipt's earning base, after the program's exclusions (and the campaign's own
    /// excluded SKUs).
    Receipt,
    /// The amount of the lines matching the campaign's `skus`.
    MatchingLines,
}

/// Which of the member's trades in a campaign's window it applies to; `n` counts from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeCount {
    /// Only the nth.
    Nth(u64),
    /// The nth, the 2nth, the 3nth…
    EveryNth(u64),
    /// The nth and every one after it.
    FromNth(u64),
}

impl TradeCount {
    pub fn holds(self, number: u64) -> bool {
        match self {
            Self::Nth(n) => number == n,
            Self::EveryNth(n) => number.is_multiple_of(n),
            Self::FromNth(n) => number >= n,
        }
    }

    /// Whether a member's first trade ever (the first in any window) can be one it takes.
    pub fn takes_a_first_trade(self) -> bool {
        self.holds(1)
    }

    fn describe(self) -> String {
        match self {
            Self::Nth(n) => format!("it takes number {n} only"),
            Self::EveryNth(n) => format!("it takes every {}", ordinal(n)),
            Self::FromNth(n) => format!("it takes number {n} and later"),
        }
    }
}

/// 1st, 2nd, 3rd, 4th… 11th, 12th, 13th… 21st.
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Where E points are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundingScope {
    /// Once, on the whole receipt's base.
    Receipt,
    /// On each line's amount, then summed (a trade without lines is rounded as a receipt).
    Line,
}

/// What a matching campaign adds as A points.
#[derive(Debug, Clone, PartialEq)]
pub enum Award {
    /// A multiple of the trade's E points, e.g. 2 → twice the E points.
    MultiplierOfE(Decimal),
    /// A multiple of the E points by the member's tier (by level; `None`: nothing).
    MultiplierOfEByTier(Vec<Option<Decimal>>),
    PerAmount(PerAmount),
    /// A fixed number of points per matching trade.
    Fixed(Points),
    /// Points for each line matching the campaign's SKUs.
    PerLine(Points),
    /// Points for each unit on lines matching the campaign's SKUs.
    PerUnit(Points),
}

/// `points` for every `per_amount` of base currency spent, rounded as named.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerAmount {
    pub points: Decimal,
    pub per_amount: Decimal,
    pub rounding: Rounding,
    /// `points / per_amount` when it is an exact decimal (1 / 20 = 0.05): the award is then
    /// one multiplication, with the same result as multiplying and dividing.
    pub ratio: Option<Decimal>,
}

impl PerAmount {
    /// The points for this spend; `None` on overflow.
    fn points_of(self, spend: Decimal) -> Option<Points> {
        per(spend, self.points, self.per_amount, self.ratio)
            .and_then(|v| self.rounding.to_points(v))
    }
}

/// An award that needs nothing of the trade but its E points and spend, and nothing of the
/// member: `Award`'s multiplier of E, per amount and fixed, copied beside the index (`Plain`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum PlainAward {
    MultiplierOfE(Decimal),
    PerAmount(PerAmount),
    Fixed(Points),
}

impl PlainAward {
    fn of(award: &Award) -> Option<Self> {
        match *award {
            Award::MultiplierOfE(factor) => Some(Self::MultiplierOfE(factor)),
            Award::PerAmount(per_amount) => Some(Self::PerAmount(per_amount)),
            Award::Fixed(points) => Some(Self::Fixed(points)),
            Award::MultiplierOfEByTier(_) | Award::PerLine(_) | Award::PerUnit(_) => None,
        }
    }

    /// The points awarded, given the campaign's E points and spend (asked only when needed);
    /// `None` on overflow.
    fn points(
        self,
        e_points: impl FnOnce() -> Option<Points>,
        spend: impl FnOnce() -> Decimal,
        program_rounding: Rounding,
    ) -> Option<Points> {
        match self {
            Self::MultiplierOfE(factor) => e_points()
                .and_then(|e| Decimal::from(e.value()).checked_mul(factor))
                .and_then(|v| program_rounding.to_points(v)),
            Self::PerAmount(per_amount) => per_amount.points_of(spend()),
            Self::Fixed(points) => Some(points),
        }
    }
}

/// The points of the last multiplier of E and the last award per amount worked out for a
/// trade: plain campaigns with the same award grant the same points for one trade, and a trade
/// granted by many campaigns mostly meets a few awards many times.
#[derive(Default)]
struct AwardMemo {
    multiplier: Option<([u8; 16], Points)>,
    /// Keyed by `points` and `per_amount` (the ratio is theirs).
    per_amount: Option<([[u8; 16]; 2], Rounding, Points)>,
}

impl AwardMemo {
    /// `award.points(…)` for the trade of `facts`, from the memo when the award is the last
    /// of its kind (the same decimals, bit for bit).
    fn points(&mut self, award: PlainAward, facts: &Facts, program: &Program) -> Option<Points> {
        let work_out = || {
            award.points(
                || Some(facts.e_points),
                || facts.spend_base,
                program.rounding,
            )
        };
        match award {
            PlainAward::Fixed(points) => Some(points),
            PlainAward::MultiplierOfE(factor) => {
                let key = factor.serialize();
                match self.multiplier {
                    Some((known, points)) if known == key => Some(points),
                    _ => {
                        let points = work_out()?;
                        self.multiplier = Some((key, points));
                        Some(points)
                    }
                }
            }
            PlainAward::PerAmount(award) => {
                let key = [award.points.serialize(), award.per_amount.serialize()];
                match self.per_amount {
                    Some((known, rounding, points))
                        if known == key && rounding == award.rounding =>
                    {
                        Some(points)
                    }
                    _ => {
                        let points = work_out()?;
                        self.per_amount = Some((key, award.rounding, points));
                        Some(points)
                    }
                }
            }
        }
    }
}

/// `points / per_amount` if it is an exact decimal: then `value * ratio` equals
/// `value * points / per_amount` exactly, without a division per trade.
pub fn exact_ratio(points: Decimal, per_amount: Decimal) -> Option<Decimal> {
    let ratio = points.checked_div(per_amount)?;
    (ratio.checked_mul(per_amount)? == points).then_some(ratio)
}

/// `value * points / per_amount`, by the exact ratio when there is one.
fn per(
    value: Decimal,
    points: Decimal,
    per_amount: Decimal,
    ratio: Option<Decimal>,
) -> Option<Decimal> {
    match ratio {
        Some(ratio) => value.checked_mul(ratio),
        None => value
            .checked_mul(points)
            .and_then(|v| v.checked_div(per_amount)),
    }
}

/// A pattern over codes (stores, SKUs): `*` stands for any run of characters, `?` for one.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob(Vec<char>);

/// The store patterns' name from before SKU patterns shared them.
pub type StorePattern = Glob;

impl Glob {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.chars().collect())
    }

    /// The characters before the first wildcard: every code the pattern matches starts with them.
    pub fn literal_prefix(&self) -> String {
        self.0
            .iter()
            .take_while(|c| **c != '*' && **c != '?')
            .collect()
    }

    pub fn text(&self) -> String {
        self.0.iter().collect()
    }

    /// The literal prefix and how the rest matches.
    fn shape(&self) -> (String, GlobShape) {
        let literal = self.literal_prefix();
        let rest = &self.0[literal.chars().count()..];
        let shape = match rest {
            [] => GlobShape::Exact,
            ['*'] => GlobShape::Prefix,
            _ => GlobShape::Other,
        };
        (literal, shape)
    }

    /// Whether every code `other` matches, this pattern matches too (`SH-*` covers `SH-01*`
    /// and `SH-01`). Exact where it can be told from the patterns' shapes; otherwise only an
    /// identical pattern counts.
    pub fn covers(&self, other: &Glob) -> bool {
        let (literal, shape) = self.shape();
        let (other_literal, other_shape) = other.shape();
        match (shape, other_shape) {
            (_, GlobShape::Exact) => self.matches(&other.0),
            (GlobShape::Prefix, _) => other_literal.starts_with(&literal),
            _ => self == other,
        }
    }

    /// Matches a code given as characters (collected once per trade, not per campaign).
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

/// Caps on what one member may get from a campaign, in points granted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberLimit {
    pub total: Option<i64>,
    pub per_day: Option<i64>,
    /// The local week of the sale, Monday to Sunday.
    pub per_week: Option<i64>,
    pub per_month: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    /// Where it is written: `file:line`.
    pub origin: String,
    pub code: CampaignCode,
    pub name: String,
    pub remark: std::sync::Arc<str>,
    /// The campaign applies to trades whose `sales_time` is in `[starts_at, ends_at)`.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Its own patterns and its store groups' patterns. Empty: every store.
    pub stores: Vec<Glob>,
    /// Stores it never applies at (its own patterns and its excluded groups').
    pub excluded_stores: Vec<Glob>,
    /// Upper-cased `resource` values (channels); compared without regard to case. Empty:
    /// every channel.
    pub channels: Vec<String>,
    /// Upper-cased; compared without regard to case. Empty: every payment method.
    pub payment_methods: Vec<String>,
    /// Empty: every currency the program accepts.
    pub currencies: Vec<CurrencyCode>,
    /// Bit `n` set: weekday `n` (Monday = 0) in the program time zone. 0: every day.
    pub days_of_week: u8,
    /// Local `[start, end)` minute-of-day windows; `end < start`: past midnight, belonging to
    /// the day it starts. Empty: all day.
    pub hours: Vec<(u32, u32)>,
    /// Local dates it does not apply on (sorted).
    pub blackout_dates: Vec<NaiveDate>,
    /// In base currency, on the program's earning base.
    pub min_spend: Decimal,
    pub max_spend: Option<Decimal>,
    /// Empty: no line condition.
    pub skus: Vec<Glob>,
    pub min_quantity: u32,
    /// Lines that count for nothing in this campaign (beyond the program's excluded SKUs).
    pub excluded_skus: Vec<Glob>,
    /// The receipt needs a line matching each of these.
    pub basket: Vec<Glob>,
    pub spend_base: SpendBase,
    pub first_trade: bool,
    pub trade_count: Option<TradeCount>,
    /// The member's gender (a member without one is "unknown"). Empty: any.
    pub genders: Vec<Gender>,
    /// Levels of `program.tiers` the member must be at. Empty: any.
    pub tiers: Vec<usize>,
    /// Only in the member's birthday month: the local month of the sale (store's zone).
    pub birthday_month: bool,
    pub priority: i64,
    pub exclusive: bool,
    pub group: Option<String>,
    pub expire_type: ExpireType,
    pub quarters_ahead: u32,
    pub award: Award,
    pub max_points_per_trade: Option<i64>,
    pub member_limit: Option<MemberLimit>,
    pub budget: Option<i64>,
    /// Budgets of each local day and month of sale, every member together.
    pub budget_per_day: Option<i64>,
    pub budget_per_month: Option<i64>,
}

/// Which of a campaign's budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    Whole,
    Day,
    Month,
}

/// An objective the discount-card contract reports completions of.
#[derive(Debug, Clone)]
pub struct Objective {
    pub id: ObjectiveId,
    pub code: CampaignCode,
    pub name: String,
    pub remark: std::sync::Arc<str>,
    pub points: Points,
    /// Every `every`th completion earns `points`.
    pub every: u64,
    pub expire_type: ExpireType,
    pub quarters_ahead: u32,
}

/// An example receipt beside the campaigns and the points it must earn.
#[derive(Debug, Clone)]
pub struct CampaignTest {
    /// Where it is written: `file:line`.
    pub origin: String,
    pub name: String,
    pub trade: Trade,
    /// The member's history the trade is priced against.
    pub context: MemberContext,
    pub total: i64,
    /// (campaign code, `""` for E; points), in order, when the test lists them.
    pub grants: Option<Vec<(String, i64)>>,
}

impl Ruleset {
    /// Runs every `[[test]]`: one line per failure (empty: all pass).
    pub fn run_tests(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for test in &self.tests {
            let grants = match self.price(&test.trade, &test.context) {
                Ok(priced) => priced.grants,
                Err(e) => {
                    failures.push(format!("{}: test {:?}: {e}", test.origin, test.name));
                    continue;
                }
            };
            let got: Vec<(String, i64)> = grants
                .iter()
                .map(|g| (g.campaign_code_text().to_string(), g.points.value()))
                .collect();
            let total: i64 = got.iter().map(|(_, p)| p).sum();
            if total != test.total {
                failures.push(format!(
                    "{}: test {:?}: earns {total} points, expected {} (grants {got:?})",
                    test.origin, test.name, test.total
                ));
            } else if let Some(expected) = &test.grants {
                if &got != expected {
                    failures.push(format!(
                        "{}: test {:?}: grants {got:?}, expected {expected:?}",
                        test.origin, test.name
                    ));
                }
            }
        }
        failures
    }
}

/// What a trade looks like to the campaigns: computed once per trade.
struct Facts<'t> {
    trade: &'t Trade,
    /// The store code as characters, for store patterns the index could not match itself:
    /// made when first needed.
    store: std::cell::OnceCell<Vec<char>>,
    sales_at: DateTime<Utc>,
    /// The local date of the sale, in its store's zone: grants' expiries count from it.
    earned_on: NaiveDate,
    /// The store's zone (`Program::zone`): of `earned_on`, `weekday` and `minute`.
    zone: Option<usize>,
    /// The date of the sale in the program's own zone: budgets' days and months.
    program_day: NaiveDate,
    /// Local weekday (Monday = 0) and minute of the day.
    weekday: u32,
    minute: u32,
    spend_base: Decimal,
    /// Base currency per unit of the trade's currency.
    rate: Decimal,
    e_points: Points,
    /// Each line's SKU as characters.
    skus: Vec<Vec<char>>,
    /// Whether each line's SKU is one the program excludes: such a line earns nothing, in any
    /// award.
    excluded: Vec<bool>,
}

impl Facts<'_> {
    fn store_chars(&self) -> &[char] {
        self.store
            .get_or_init(|| self.trade.store_code.as_str().chars().collect())
    }
}

/// Why a campaign did not match a trade. Pricing only needs to know that it did not; `explain`
/// renders the reason (`Miss::reason`), so no text is built on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Window,
    Store,
    ExcludedStore,
    Channel,
    PaymentMethod,
    Currency,
    /// The day (Monday = 0) the trade's time counts for: its own, or the day an overnight
    /// window started.
    Day(u32),
    Hours,
    Blackout,
    MinSpend,
    MaxSpend,
    /// Units of the campaign's SKUs on the receipt.
    Units(u64),
    /// The first of its basket's patterns no line matches.
    Basket(u32),
    /// Trades the member made before.
    NotFirst(u64),
    /// The member's gender.
    Gender(Gender),
    /// The member's tier (level).
    Tier(usize),
    /// The member's birth month (0: not known).
    BirthMonth(u32),
    /// The trade's number in the campaign's window.
    Nth(u64),
    /// A budget is used up (the points it has granted): it matches nothing more, so an
    /// exclusive one blocks no other.
    BudgetSpent(BudgetKind, i64),
    /// Re-pricing for the audit: it did not grant the trade when it was first priced.
    NotGranted,
}

impl Miss {
    /// What `explain` says.
    fn reason(self, campaign: &Campaign, facts: &Facts, program: &Program) -> String {
        let zone = &program.time_zone;
        let trade = facts.trade;
        match self {
            Self::Window => format!(
                "sales_time {} is outside [{}, {})",
                zone.readable(facts.sales_at),
                zone.readable(campaign.starts_at),
                zone.readable(campaign.ends_at)
            ),
            Self::Store => format!(
                "store {} matches none of {:?}",
                trade.store_code,
                campaign.stores.iter().map(Glob::text).collect::<Vec<_>>()
            ),
            Self::ExcludedStore => format!(
                "store {} matches its excluded_stores {:?}",
                trade.store_code,
                campaign
                    .excluded_stores
                    .iter()
                    .map(Glob::text)
                    .collect::<Vec<_>>()
            ),
            Self::Channel => format!(
                "resource {:?} is not one of its channels {:?}",
                trade.resource, campaign.channels
            ),
            Self::PaymentMethod => format!(
                "payment_method {} is not one of {:?}",
                trade.payment_method.as_str(),
                campaign.payment_methods
            ),
            Self::Currency => format!("currency {} is not accepted", trade.currency),
            Self::Day(day) => format!("{} is not one of its days", WEEKDAYS[day as usize]),
            Self::Blackout => format!("{} is one of its blackout dates", facts.earned_on),
            Self::Hours => format!(
                "{:02}:{:02} is outside its hours",
                facts.minute / 60,
                facts.minute % 60
            ),
            Self::MinSpend => format!(
                "spend {} is below min_spend {}",
                campaign.spend(facts).normalize(),
                campaign.min_spend
            ),
            Self::MaxSpend => format!(
                "spend {} is above max_spend {}",
                campaign.spend(facts).normalize(),
                campaign.max_spend.unwrap_or_default()
            ),
            Self::Units(units) => format!(
                "{units} units of {:?}, it needs {}",
                campaign.skus.iter().map(Glob::text).collect::<Vec<_>>(),
                campaign.min_quantity
            ),
            Self::Basket(missing) => format!(
                "no line of its basket's {:?}",
                campaign
                    .basket
                    .get(missing as usize)
                    .map(Glob::text)
                    .unwrap_or_default()
            ),
            Self::NotFirst(before) => format!("not the member's first trade ({before} before)"),
            Self::BirthMonth(0) => "the member's birthday is not known".to_string(),
            Self::BirthMonth(month) => format!(
                "the member's birthday is in month {month}, the sale in month {}",
                facts.earned_on.month()
            ),
            Self::Tier(level) => {
                let tiers = program.tiers.as_ref();
                let name = |level: usize| tiers.map_or("", |t| t.name(level)).to_string();
                format!(
                    "the member's tier is {}, not one of {:?}",
                    name(level),
                    campaign.tiers.iter().map(|l| name(*l)).collect::<Vec<_>>()
                )
            }
            Self::Gender(gender) => format!(
                "the member's gender is {}, not one of {:?}",
                gender.as_str(),
                campaign
                    .genders
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
            ),
            Self::Nth(nth) => format!(
                "the member's trade number {nth} in its window: {}",
                campaign
                    .trade_count
                    .map(TradeCount::describe)
                    .unwrap_or_default()
            ),
            Self::BudgetSpent(kind, used) => {
                let (which, budget) = match kind {
                    BudgetKind::Whole => ("budget", campaign.budget),
                    BudgetKind::Day => ("budget_per_day", campaign.budget_per_day),
                    BudgetKind::Month => ("budget_per_month", campaign.budget_per_month),
                };
                format!(
                    "{which} spent ({used} of {} used)",
                    budget.unwrap_or_default()
                )
            }
            Self::NotGranted => "it did not grant the trade when it was priced".to_string(),
        }
    }
}

/// What the index already knows of a candidate: conditions it need not check again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// Found through one of its exact store codes or plain prefixes: the store matches.
    pub store: bool,
    /// Its payment methods were matched exactly by the index's bit mask.
    pub payment_method: bool,
    /// Every trade condition was checked by the index.
    pub all: bool,
    /// It asks nothing of the member and nothing caps it (`Campaign::plain`).
    pub plain: bool,
}

impl Campaign {
    /// The conditions that depend on the trade alone.
    fn check_trade(&self, facts: &Facts, known: Known) -> Result<(), Miss> {
        if known.all {
            return Ok(());
        }
        let at = facts.sales_at;
        if at < self.starts_at || at >= self.ends_at {
            return Err(Miss::Window);
        }
        if !known.store
            && !self.stores.is_empty()
            && !self.stores.iter().any(|p| p.matches(facts.store_chars()))
        {
            return Err(Miss::Store);
        }
        if !self.excluded_stores.is_empty()
            && self
                .excluded_stores
                .iter()
                .any(|p| p.matches(facts.store_chars()))
        {
            return Err(Miss::ExcludedStore);
        }
        if !self.channels.is_empty()
            && !self
                .channels
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&facts.trade.resource))
        {
            return Err(Miss::Channel);
        }
        if !known.payment_method && !self.payment_methods.is_empty() {
            let method = facts.trade.payment_method.as_str();
            if !self
                .payment_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
            {
                return Err(Miss::PaymentMethod);
            }
        }
        if !self.currencies.is_empty() && !self.currencies.contains(&facts.trade.currency) {
            return Err(Miss::Currency);
        }
        self.check_day_and_hours(facts.weekday, facts.minute)?;
        if !self.blackout_dates.is_empty()
            && self.blackout_dates.binary_search(&facts.earned_on).is_ok()
        {
            return Err(Miss::Blackout);
        }
        let spend = self.spend(facts);
        if spend < self.min_spend {
            return Err(Miss::MinSpend);
        }
        if self.max_spend.is_some_and(|max| spend > max) {
            return Err(Miss::MaxSpend);
        }
        if let Some(missing) = self.basket_missing(facts) {
            return Err(Miss::Basket(missing));
        }
        if !self.skus.is_empty() {
            let (_, units) = self.matching_lines(facts);
            if units < u64::from(self.min_quantity) {
                return Err(Miss::Units(units));
            }
        }
        Ok(())
    }

    /// The days and hours: a trade in one of the windows, on one of the days the window counts
    /// for (an overnight window, `22:00-02:00`, counts for the day it starts: 01:00 on Saturday
    /// is Friday night).
    fn check_day_and_hours(&self, weekday: u32, minute: u32) -> Result<(), Miss> {
        let on = |day: u32| self.days_of_week == 0 || self.days_of_week & (1 << day) != 0;
        if self.hours.is_empty() {
            return if on(weekday) {
                Ok(())
            } else {
                Err(Miss::Day(weekday))
            };
        }
        let mut miss = Miss::Hours;
        for &(from, to) in &self.hours {
            let day = match from < to {
                true => (from..to).contains(&minute).then_some(weekday),
                false if minute >= from => Some(weekday),
                false if minute < to => Some((weekday + 6) % 7),
                false => None,
            };
            match day {
                Some(day) if on(day) => return Ok(()),
                Some(day) => miss = Miss::Day(day),
                None => {}
            }
        }
        Err(miss)
    }

    /// The conditions on the member's history.
    fn check_member(
        &self,
        ctx: &MemberContext,
        tier: Option<usize>,
        sale_month: u32,
    ) -> Result<(), Miss> {
        if let Some(granted) = &ctx.only_campaigns {
            if !granted.contains(&self.code) {
                return Err(Miss::NotGranted);
            }
        }
        if ctx.repricing {
            return Ok(());
        }
        if self.first_trade && ctx.trades_before > 0 {
            return Err(Miss::NotFirst(ctx.trades_before));
        }
        if self.birthday_month {
            let month = ctx.birthday.map_or(0, |b| b.month);
            if month != sale_month {
                return Err(Miss::BirthMonth(month));
            }
        }
        if !self.tiers.is_empty() {
            let level = tier.unwrap_or(0);
            if !self.tiers.contains(&level) {
                return Err(Miss::Tier(level));
            }
        }
        if !self.genders.is_empty() {
            let gender = ctx.gender.unwrap_or(Gender::Unknown);
            if !self.genders.contains(&gender) {
                return Err(Miss::Gender(gender));
            }
        }
        if let Some(count) = self.trade_count {
            let nth = ctx.campaign(&self.code).trades_in_window + 1;
            if !count.holds(nth) {
                return Err(Miss::Nth(nth));
            }
        }
        if !self.has_budget() {
            return Ok(());
        }
        let used = ctx.campaign(&self.code);
        for (kind, budget, used) in [
            (BudgetKind::Whole, self.budget, used.budget_used),
            (BudgetKind::Day, self.budget_per_day, used.budget_day_used),
            (
                BudgetKind::Month,
                self.budget_per_month,
                used.budget_month_used,
            ),
        ] {
            if budget.is_some_and(|budget| used >= budget) {
                return Err(Miss::BudgetSpent(kind, used));
            }
        }
        Ok(())
    }

    /// The trade's lines that count for this campaign: neither the program nor the campaign
    /// excludes their SKU. Each with its SKU as characters.
    fn counted_lines<'f>(
        &'f self,
        facts: &'f Facts,
    ) -> impl Iterator<Item = (&'f crate::domain::TradeLine, &'f [char])> + 'f {
        facts
            .trade
            .lines
            .iter()
            .zip(&facts.skus)
            .zip(&facts.excluded)
            .filter(move |((_, sku), excluded)| {
                !**excluded && !self.excluded_skus.iter().any(|p| p.matches(sku))
            })
            .map(|((line, sku), _)| (line, sku.as_slice()))
    }

    /// The counted lines matching the campaign's SKUs.
    fn sku_lines<'f>(
        &'f self,
        facts: &'f Facts,
    ) -> impl Iterator<Item = &'f crate::domain::TradeLine> + 'f {
        self.counted_lines(facts)
            .filter(|(_, sku)| self.skus.iter().any(|p| p.matches(sku)))
            .map(|(line, _)| line)
    }

    fn has_budget(&self) -> bool {
        self.budget.is_some() || self.budget_per_day.is_some() || self.budget_per_month.is_some()
    }

    /// What pricing needs of it when it asks nothing of the member (no first-trade, birthday,
    /// tier, gender or trade-count condition), nothing caps, budgets or groups its award, it is
    /// not exclusive, and its award needs only the receipt's E points and spend. `None` otherwise.
    fn plain(&self) -> Option<Plain> {
        let plain = !self.first_trade
            && !self.birthday_month
            && self.tiers.is_empty()
            && self.genders.is_empty()
            && self.trade_count.is_none()
            && !self.has_budget()
            && self.max_points_per_trade.is_none()
            && self.member_limit.is_none()
            && self.group.is_none()
            && !self.exclusive
            && self.spends_the_receipt();
        Some(Plain {
            award: PlainAward::of(&self.award).filter(|_| plain)?,
            expire_type: self.expire_type,
            quarters_ahead: self.quarters_ahead,
        })
    }

    /// (lines, units) of the trade matching the campaign's SKUs.
    fn matching_lines(&self, facts: &Facts) -> (u64, u64) {
        self.sku_lines(facts).fold((0, 0), |(lines, units), line| {
            (lines + 1, units + u64::from(line.quantity))
        })
    }

    /// Whether the campaign's spend is the receipt's earning base as it is.
    fn spends_the_receipt(&self) -> bool {
        self.spend_base == SpendBase::Receipt && self.excluded_skus.is_empty()
    }

    /// What the campaign counts as spend, in base currency: the earning base less the lines it
    /// excludes, or the amount of the lines matching its SKUs.
    fn spend(&self, facts: &Facts) -> Decimal {
        match self.spend_base {
            _ if self.spends_the_receipt() => facts.spend_base,
            SpendBase::MatchingLines => {
                let amount: Decimal = self.sku_lines(facts).map(|l| l.amount.value()).sum();
                amount * facts.rate
            }
            SpendBase::Receipt => {
                let excluded: Decimal = facts
                    .trade
                    .lines
                    .iter()
                    .zip(&facts.skus)
                    .zip(&facts.excluded)
                    .filter(|((_, sku), program_excluded)| {
                        !**program_excluded && self.excluded_skus.iter().any(|p| p.matches(sku))
                    })
                    .map(|((line, _), _)| line.amount.value())
                    .sum();
                (facts.spend_base - excluded * facts.rate).max(Decimal::ZERO)
            }
        }
    }

    /// The E points of what the campaign counts as spend: the trade's own unless the campaign
    /// counts less (line by line when the program rounds lines).
    fn e_points(&self, facts: &Facts, program: &Program) -> Option<Points> {
        if self.spends_the_receipt() {
            return Some(facts.e_points);
        }
        if program.rounding_scope == RoundingScope::Line && !facts.trade.lines.is_empty() {
            let mut total = 0i64;
            let lines: Box<dyn Iterator<Item = &crate::domain::TradeLine>> = match self.spend_base {
                SpendBase::MatchingLines => Box::new(self.sku_lines(facts)),
                SpendBase::Receipt => Box::new(self.counted_lines(facts).map(|(line, _)| line)),
            };
            for line in lines {
                let base = line.amount.value().checked_mul(facts.rate)?;
                total = total.checked_add(program.e_points_of(base)?.value())?;
            }
            return Points::new(total).ok();
        }
        program.e_points_of(self.spend(facts))
    }

    /// The index of the first basket pattern no counted line matches.
    fn basket_missing(&self, facts: &Facts) -> Option<u32> {
        if self.basket.is_empty() {
            return None;
        }
        let position = self.basket.iter().position(|pattern| {
            !self
                .counted_lines(facts)
                .any(|(_, sku)| pattern.matches(sku))
        })?;
        Some(position as u32)
    }

    /// Whether pricing it needs the member's tier.
    fn asks_for_tier(&self) -> bool {
        !self.tiers.is_empty() || matches!(self.award, Award::MultiplierOfEByTier(_))
    }

    fn award_points(
        &self,
        facts: &Facts,
        program: &Program,
        tier: Option<usize>,
    ) -> Result<Points, EvaluateError> {
        match &self.award {
            Award::MultiplierOfEByTier(factors) => {
                match factors.get(tier.unwrap_or(0)).copied().flatten() {
                    None => Some(Points::ZERO),
                    Some(factor) => self
                        .e_points(facts, program)
                        .and_then(|e| Decimal::from(e.value()).checked_mul(factor))
                        .and_then(|v| program.rounding.to_points(v)),
                }
            }
            Award::MultiplierOfE(_) | Award::PerAmount(_) | Award::Fixed(_) => {
                PlainAward::of(&self.award).and_then(|award| {
                    award.points(
                        || self.e_points(facts, program),
                        || self.spend(facts),
                        program.rounding,
                    )
                })
            }
            Award::PerLine(points) | Award::PerUnit(points) => {
                let (lines, units) = self.matching_lines(facts);
                let count = if matches!(self.award, Award::PerLine(_)) {
                    lines
                } else {
                    units
                };
                i64::try_from(count)
                    .ok()
                    .and_then(|c| c.checked_mul(points.value()))
                    .and_then(|p| Points::new(p).ok())
            }
        }
        .ok_or(EvaluateError::PointsOverflow)
    }

    /// Caps `points` by the campaign's limits; the reason when a cap bit.
    fn capped(&self, points: i64, ctx: &MemberContext) -> (i64, Option<String>) {
        let uncapped = self.max_points_per_trade.is_none()
            && self.member_limit.is_none()
            && !self.has_budget();
        if ctx.repricing || uncapped {
            return (points, None);
        }
        let used = ctx.campaign(&self.code);
        let mut caps: Vec<(i64, String)> = Vec::new();
        if let Some(max) = self.max_points_per_trade {
            caps.push((max, format!("max_points_per_trade {max}")));
        }
        if let Some(limit) = self.member_limit {
            for (cap, used, name) in [
                (limit.total, used.points_total, "total"),
                (limit.per_day, used.points_day, "per_day"),
                (limit.per_week, used.points_week, "per_week"),
                (limit.per_month, used.points_month, "per_month"),
            ] {
                if let Some(cap) = cap {
                    caps.push((
                        cap - used,
                        format!("member_limit.{name} {cap} ({used} used)"),
                    ));
                }
            }
        }
        for (budget, used, name) in [
            (self.budget, used.budget_used, "budget"),
            (self.budget_per_day, used.budget_day_used, "budget_per_day"),
            (
                self.budget_per_month,
                used.budget_month_used,
                "budget_per_month",
            ),
        ] {
            if let Some(budget) = budget {
                caps.push((budget - used, format!("{name} {budget} ({used} used)")));
            }
        }
        let mut result = (points, None);
        for (cap, why) in caps {
            let cap = cap.max(0);
            if cap < result.0 {
                result = (cap, Some(why));
            }
        }
        result
    }
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The period of a per-day budget: the local date of the sale, "2026-12-02".
pub fn day_key(local: NaiveDate) -> String {
    local.format("%Y-%m-%d").to_string()
}

/// The period of a per-month budget: the local month of the sale, "2026-12".
pub fn month_key(local: NaiveDate) -> String {
    local.format("%Y-%m").to_string()
}

/// What happened to one campaign when a trade was priced: `explain`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CampaignOutcome {
    pub campaign_code: String,
    /// "granted", "capped" (granted less, or nothing, by a limit), "not_matched",
    /// "after_exclusive" (an exclusive campaign before it matched) or "lost_in_group".
    pub outcome: &'static str,
    pub points: i64,
    pub reason: String,
}

/// A trade's grants and, for each campaign, why it did or did not add points.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    pub e_points: i64,
    pub spend_base: String,
    /// The member's tier the trade is priced at (when the program has tiers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    pub campaigns: Vec<CampaignOutcome>,
}

/// A campaign as an index bucket holds it: what lets most campaigns be passed over without
/// touching the campaign itself (32 bytes, scanned in a tight loop).
#[derive(Debug, Clone, Copy)]
struct Entry {
    position: u32,
    /// `Known` flags: what the index checks exactly (`KNOWN_*`).
    known: u8,
    /// Its `min_spend` in whole millionths, checked in the scan against the trade's spend
    /// rounded down to millionths (the same answer as comparing the decimals: the minimum is
    /// whole). `i64::MIN` for a minimum that is not whole millionths: checked exactly later.
    min_spend_micros: i64,
    /// Bit per interned payment method the campaign takes (all bits: any method, or one the
    /// index could not intern: checked exactly later).
    methods: u64,
    /// The window in whole microseconds, widened outward: a trade outside it is outside the
    /// exact window; one inside is checked exactly.
    starts_us: i64,
    ends_us: i64,
}

const KNOWN_STORE: u8 = 1;
const KNOWN_METHOD: u8 = 2;
/// Its window is in whole microseconds: the scan's window check is exact.
const KNOWN_WINDOW: u8 = 4;
/// No trade condition but window, stores, payment methods and min_spend.
const KNOWN_REST: u8 = 8;
const KNOWN_ALL: u8 = KNOWN_STORE | KNOWN_METHOD | KNOWN_WINDOW | KNOWN_REST;
/// Nothing to check of the member and nothing to cap: `CampaignIndex::plain` holds its award.
const KNOWN_PLAIN: u8 = 16;
/// The payment-method bit of a method no campaign names.
const OTHER_METHOD: u64 = 1 << 63;
/// Payment methods interned as bits (the last bit is `OTHER_METHOD`).
const METHOD_BITS_MAX: usize = 63;
/// The most bytes a trade's payment method can have (four a character).
const METHOD_KEY_LEN_MAX: usize = 4 * crate::domain::PaymentMethod::LEN_MAX;

/// FNV-1a: a fast hash for the index's short keys (store codes, methods). The keys come from
/// the rule files; a caller's store code only looks them up.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// Campaigns indexed by store: exact store codes in one map, pattern prefixes (the characters
/// before the first wildcard) in another, each bucket in evaluation order. A trade looks up its
/// store code and each of its prefixes of a length some pattern has, passes over what its time
/// and payment method rule out, and checks only the rest. Built in one pass (linear).
#[derive(Debug, Clone, Default)]
pub struct CampaignIndex {
    exact: FnvMap<Box<str>, Bucket>,
    prefix: FnvMap<Box<str>, Bucket>,
    /// The byte lengths of the keys of `prefix`, ascending.
    prefix_lengths: Vec<usize>,
    /// Upper-cased payment method → its bit.
    methods: FnvMap<String, u64>,
    /// By position: what pricing needs of a plain campaign (`Campaign::plain`), side by side,
    /// so a trade that many plain campaigns grant reads this array, not each campaign.
    plain: Vec<Option<Plain>>,
}

/// A plain campaign's award and expiry (`Campaign::plain`).
#[derive(Debug, Clone, Copy)]
struct Plain {
    award: PlainAward,
    expire_type: ExpireType,
    quarters_ahead: u32,
}

/// The campaigns of one store key, in evaluation order: those taking exactly one payment method
/// apart by method, so a trade scans only its own method's and the rest.
#[derive(Debug, Clone, Default)]
struct Bucket {
    any: Vec<Entry>,
    by_method: Vec<(u64, Vec<Entry>)>,
}

impl Bucket {
    fn list(&mut self, methods: u64) -> &mut Vec<Entry> {
        if methods == u64::MAX || methods.count_ones() != 1 {
            return &mut self.any;
        }
        match self.by_method.iter().position(|(bit, _)| *bit == methods) {
            Some(i) => &mut self.by_method[i].1,
            None => {
                self.by_method.push((methods, Vec::new()));
                &mut self.by_method.last_mut().expect("just pushed").1
            }
        }
    }
}

/// An amount in whole millionths, if it is whole millionths and fits.
fn whole_micros_of(amount: Decimal) -> Option<i64> {
    use rust_decimal::prelude::ToPrimitive;
    let micros = amount.checked_mul(Decimal::from(1_000_000))?;
    micros.fract().is_zero().then(|| micros.to_i64()).flatten()
}

/// A spend in millionths, rounded down; beyond what fits, the nearest that does (a spend
/// above every minimum the index holds, or below every one).
fn floor_micros_of(amount: Decimal) -> i64 {
    use rust_decimal::prelude::ToPrimitive;
    let beyond = if amount.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    };
    amount
        .checked_mul(Decimal::from(1_000_000))
        .and_then(|micros| micros.floor().to_i64())
        .unwrap_or(beyond)
}

/// Whole microseconds since 1970, rounded down (`up`: rounded up).
fn micros(at: DateTime<Utc>, up: bool) -> i64 {
    let us = at.timestamp_micros();
    match up && !at.timestamp_subsec_nanos().is_multiple_of(1000) {
        true => us.saturating_add(1),
        false => us,
    }
}

impl CampaignIndex {
    pub fn build(campaigns: &[Campaign]) -> Self {
        let mut index = Self::default();
        for campaign in campaigns {
            for method in &campaign.payment_methods {
                let next = index.methods.len();
                if next < METHOD_BITS_MAX && !index.methods.contains_key(method) {
                    index.methods.insert(method.clone(), 1 << next);
                }
            }
        }
        let mut lengths = std::collections::BTreeSet::new();
        index.plain = campaigns.iter().map(Campaign::plain).collect();
        for (position, campaign) in campaigns.iter().enumerate() {
            let mut methods = 0u64;
            let mut method_known = !campaign.payment_methods.is_empty();
            for method in &campaign.payment_methods {
                match index.methods.get(method) {
                    Some(bit) => methods |= bit,
                    None => method_known = false,
                }
            }
            if !method_known {
                methods = u64::MAX;
            }
            let whole_micros = |at: DateTime<Utc>| at.timestamp_subsec_nanos().is_multiple_of(1000);
            let window_known = whole_micros(campaign.starts_at) && whole_micros(campaign.ends_at);
            // Lines may add up to more than the receipt's base: checked exactly later.
            let min_spend = match campaign.spend_base {
                SpendBase::Receipt => campaign.min_spend,
                SpendBase::MatchingLines => Decimal::ZERO,
            };
            let min_spend_micros = whole_micros_of(min_spend);
            let rest_known = min_spend_micros.is_some()
                && campaign.currencies.is_empty()
                && campaign.days_of_week == 0
                && campaign.hours.is_empty()
                && campaign.blackout_dates.is_empty()
                && campaign.max_spend.is_none()
                && campaign.skus.is_empty()
                && campaign.excluded_stores.is_empty()
                && campaign.channels.is_empty()
                && campaign.basket.is_empty()
                && campaign.spends_the_receipt();
            let method_known = method_known || campaign.payment_methods.is_empty();
            let entry = |known_store: bool| Entry {
                position: position as u32,
                known: if known_store { KNOWN_STORE } else { 0 }
                    | if method_known { KNOWN_METHOD } else { 0 }
                    | if window_known { KNOWN_WINDOW } else { 0 }
                    | if rest_known { KNOWN_REST } else { 0 }
                    | if index.plain[position].is_some() {
                        KNOWN_PLAIN
                    } else {
                        0
                    },
                min_spend_micros: min_spend_micros.unwrap_or(i64::MIN),
                methods,
                starts_us: micros(campaign.starts_at, false),
                ends_us: micros(campaign.ends_at, true),
            };
            if campaign.stores.is_empty() {
                let bucket = index.prefix.entry("".into()).or_default();
                bucket.list(methods).push(entry(true));
                lengths.insert(0);
                continue;
            }
            for pattern in &campaign.stores {
                let (literal, kind) = pattern.shape();
                let (map, known) = match kind {
                    GlobShape::Exact => (&mut index.exact, true),
                    GlobShape::Prefix => (&mut index.prefix, true),
                    GlobShape::Other => (&mut index.prefix, false),
                };
                if kind != GlobShape::Exact {
                    lengths.insert(literal.len());
                }
                let bucket = map
                    .entry(literal.into_boxed_str())
                    .or_default()
                    .list(methods);
                // One entry a campaign per bucket (two patterns may share a key).
                match bucket.last_mut() {
                    // Any pattern that guarantees the store guarantees it for the bucket.
                    Some(last) if last.position == position as u32 => {
                        last.known |= entry(known).known & KNOWN_STORE;
                    }
                    _ => bucket.push(entry(known)),
                }
            }
        }
        index.prefix_lengths = lengths.into_iter().collect();
        index
    }

    /// The bit of a payment method (any case).
    fn method_bit(&self, method: &str) -> u64 {
        // Upper-cased on the stack, without an allocation (every trade's method fits).
        let mut upper = [0u8; METHOD_KEY_LEN_MAX];
        let Some(upper) = upper.get_mut(..method.len()) else {
            return OTHER_METHOD;
        };
        upper.copy_from_slice(method.as_bytes());
        upper.make_ascii_uppercase();
        std::str::from_utf8(upper)
            .ok()
            .and_then(|key| self.methods.get(key))
            .copied()
            .unwrap_or(OTHER_METHOD)
    }

    /// Positions of the campaigns that could apply to this store, time and payment method, in
    /// evaluation order, each with what is known of it, into `out`.
    fn candidates(
        &self,
        store: &str,
        (at_us, method_bit, spend_micros): (i64, u64, i64),
        out: &mut Vec<(u32, u8)>,
    ) {
        out.clear();
        let mut runs = 0;
        let mut scan = |bucket: &Bucket, out: &mut Vec<(u32, u8)>| {
            let own = bucket
                .by_method
                .iter()
                .find(|(bit, _)| *bit == method_bit)
                .map(|(_, list)| list.as_slice());
            for list in [bucket.any.as_slice(), own.unwrap_or_default()] {
                let before = out.len();
                for e in list {
                    if at_us >= e.starts_us
                        && at_us < e.ends_us
                        && e.methods & method_bit != 0
                        && spend_micros >= e.min_spend_micros
                    {
                        out.push((e.position, e.known));
                    }
                }
                runs += usize::from(out.len() > before);
            }
        };
        if let Some(bucket) = self.exact.get(store) {
            scan(bucket, out);
        }
        for &length in &self.prefix_lengths {
            let Some(key) = store.get(..length) else {
                if length > store.len() {
                    break;
                }
                continue;
            };
            if let Some(bucket) = self.prefix.get(key) {
                scan(bucket, out);
            }
        }
        if runs > 1 {
            // Found through several lists: in order, once, with the most known.
            out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            out.dedup_by(|later, first| {
                if later.0 == first.0 {
                    first.1 |= later.1;
                    true
                } else {
                    false
                }
            });
        }
    }
}

/// How a pattern matches, for the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobShape {
    /// No wildcard: one code.
    Exact,
    /// Literal characters then one `*`: every code starting with them.
    Prefix,
    /// Anything else: indexed by its literal prefix, matched in full.
    Other,
}

/// A compiled, immutable ruleset. Campaigns are held in evaluation order: priority, highest
/// first, then code.
#[derive(Debug, Clone)]
pub struct Ruleset {
    pub program: Program,
    pub campaigns: Vec<Campaign>,
    pub objectives: Vec<Objective>,
    /// Example receipts with the points they must earn (`[[test]]`), run by `rules check`.
    pub tests: Vec<CampaignTest>,
    pub index: CampaignIndex,
    /// A content hash of the rule files: stored on every grant it computes.
    pub version: String,
}

impl Ruleset {
    /// The grants a trade earns for a member with no history (a first trade, nothing used):
    /// E first, then A in campaign order. Pure.
    pub fn evaluate(&self, trade: &Trade) -> Result<Vec<Grant>, EvaluateError> {
        Ok(self.price(trade, &MemberContext::default())?.grants)
    }

    /// Prices a trade for a member with this history: its grants, and what they take from
    /// budgets. Pure: reads nothing but its arguments.
    pub fn price(&self, trade: &Trade, ctx: &MemberContext) -> Result<Priced, EvaluateError> {
        let facts = self.facts(trade)?;
        // The candidates' buffer is kept a thread, so pricing does not allocate it each time.
        thread_local! {
            static FOUND: std::cell::Cell<Vec<(u32, u8)>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut found = FOUND.with(|f| f.take());
        self.candidates_of(&facts, &mut found);
        let result = self.run(
            &facts,
            ctx,
            found.iter().map(|&(p, known)| {
                (
                    p,
                    Known {
                        store: known & KNOWN_STORE != 0,
                        payment_method: known & KNOWN_METHOD != 0,
                        all: known & KNOWN_ALL == KNOWN_ALL,
                        plain: known & KNOWN_PLAIN != 0,
                    },
                )
            }),
            false,
        );
        found.clear();
        FOUND.with(|f| f.set(found));
        Ok(result?.0)
    }

    fn candidates_of(&self, facts: &Facts, out: &mut Vec<(u32, u8)>) {
        self.index.candidates(
            facts.trade.store_code.as_str(),
            (
                micros(facts.sales_at, false),
                self.index.method_bit(facts.trade.payment_method.as_str()),
                floor_micros_of(facts.spend_base),
            ),
            out,
        );
    }

    /// Prices a trade and says, for every campaign, why it did or did not add points.
    pub fn explain(
        &self,
        trade: &Trade,
        ctx: &MemberContext,
    ) -> Result<(Priced, Explanation), EvaluateError> {
        let facts = self.facts(trade)?;
        let all = (0..self.campaigns.len() as u32).map(|p| (p, Known::default()));
        let (priced, campaigns) = self.run(&facts, ctx, all, true)?;
        let tier = self
            .program
            .tiers
            .as_ref()
            .map(|tiers| tiers.name(self.member_tier(ctx).unwrap_or(0)).to_string());
        Ok((
            priced,
            Explanation {
                e_points: facts.e_points.value(),
                spend_base: facts.spend_base.normalize().to_string(),
                tier,
                campaigns,
            },
        ))
    }

    /// What pricing this trade needs to know about the member: asked only for the campaigns
    /// that could apply to it.
    pub fn needs(&self, trade: &Trade) -> Result<ContextNeeds, EvaluateError> {
        let facts = self.facts(trade)?;
        let mut needs = ContextNeeds::default();
        let mut found = Vec::new();
        self.candidates_of(&facts, &mut found);
        for (position, _) in found {
            let campaign = &self.campaigns[position as usize];
            let asks = campaign.first_trade
                || campaign.trade_count.is_some()
                || !campaign.genders.is_empty()
                || campaign.asks_for_tier()
                || campaign.birthday_month
                || campaign.member_limit.is_some()
                || campaign.has_budget();
            if !asks || campaign.check_trade(&facts, Known::default()).is_err() {
                continue;
            }
            needs.trades_before |= campaign.first_trade;
            needs.gender |= !campaign.genders.is_empty();
            needs.birthday |= campaign.birthday_month;
            if campaign.asks_for_tier() && needs.tier.is_none() {
                needs.tier = self.tier_need(facts.sales_at);
            }
            let local = facts.program_day;
            needs.campaigns.push(CampaignNeed {
                code: campaign.code.clone(),
                trades_in: campaign
                    .trade_count
                    .map(|_| (campaign.starts_at, campaign.ends_at)),
                member_points: campaign.member_limit.map(|_| self.member_windows(local)),
                budget: campaign.budget.is_some(),
                budget_day: campaign.budget_per_day.map(|_| day_key(local)),
                budget_month: campaign.budget_per_month.map(|_| month_key(local)),
            });
        }
        Ok(needs)
    }

    /// The member's tier level for this context: the one it names, or the one what qualified
    /// them reaches. `None` when the program has no tiers.
    pub fn member_tier(&self, ctx: &MemberContext) -> Option<usize> {
        let tiers = self.program.tiers.as_ref()?;
        Some(match (&ctx.tier, ctx.qualifying) {
            (Some(name), _) => tiers.position(name).unwrap_or(0),
            (None, Some(qualifying)) => tiers.level(qualifying),
            (None, None) => 0,
        })
    }

    /// The windows of sales times whose points (or spend) qualify a member for a tier at
    /// `at`: the current one, up to `at`, and the last review's.
    pub fn tier_need(&self, at: DateTime<Utc>) -> Option<TierNeed> {
        let tiers = self.program.tiers.as_ref()?;
        let tz = &self.program.time_zone;
        let local = tz.local_date(at);
        let (current, review) = match tiers.period {
            TierPeriod::CalendarYear => {
                let year = |y: i32| {
                    tz.start_of_day(NaiveDate::from_ymd_opt(y, 1, 1).expect("1 January exists"))
                };
                let this_year = year(local.year());
                ((this_year, at), (year(local.year() - 1), this_year))
            }
            TierPeriod::Rolling12Months => {
                let year_before = |d: NaiveDate| {
                    tz.start_of_day(d.checked_sub_months(chrono::Months::new(12)).unwrap_or(d))
                };
                let month_start = local.with_day(1).expect("day 1 exists");
                (
                    (year_before(local), at),
                    (year_before(month_start), tz.start_of_day(month_start)),
                )
            }
        };
        Some(TierNeed {
            basis: tiers.basis,
            current,
            review,
            rates: self.program.currency_rates.clone(),
        })
    }

    fn member_windows(&self, local: NaiveDate) -> MemberWindows {
        let tz = &self.program.time_zone;
        let month_start = local.with_day(1).expect("day 1 exists");
        let monday = local - chrono::Days::new(u64::from(local.weekday().num_days_from_monday()));
        let next_month = crate::domain::expiry::month_end(local, 0)
            .succ_opt()
            .expect("dates go on");
        MemberWindows {
            day: (
                tz.start_of_day(local),
                tz.start_of_day(local.succ_opt().expect("dates go on")),
            ),
            week: (
                tz.start_of_day(monday),
                tz.start_of_day(monday + chrono::Days::new(7)),
            ),
            month: (tz.start_of_day(month_start), tz.start_of_day(next_month)),
        }
    }

    fn facts<'t>(&self, trade: &'t Trade) -> Result<Facts<'t>, EvaluateError> {
        let program = &self.program;
        let rate = *program
            .currency_rates
            .get(&trade.currency)
            .ok_or(EvaluateError::UnsupportedCurrency(trade.currency))?;
        let overflow = || EvaluateError::PointsOverflow;
        let base = |amount: Decimal| amount.checked_mul(rate).ok_or_else(overflow);
        let skus: Vec<Vec<char>> = trade
            .lines
            .iter()
            .map(|l| l.sku.as_str().chars().collect())
            .collect();
        let excluded = |sku: &[char]| program.excluded_skus.iter().any(|p| p.matches(sku));
        let mut spend = match program.earn_base {
            EarnBase::PaymentAmount => trade.payment_amount.value(),
            EarnBase::TotalAmount => trade.total_amount.value(),
        };
        if program.exclude_post_fee {
            spend -= trade.post_fee.value();
        }
        // The payment is already net of the receipt's discount: only the total still holds it.
        if program.exclude_discount && program.earn_base == EarnBase::TotalAmount {
            spend -= trade.discount.value();
        }
        if let Some(value) = program.exclude_burned_at {
            spend -= Decimal::from(trade.burn_point.value())
                .checked_mul(value)
                .ok_or_else(overflow)?;
        }
        for (line, sku) in trade.lines.iter().zip(&skus) {
            if excluded(sku) {
                spend -= line.amount.value();
            }
        }
        let spend_base = base(spend.max(Decimal::ZERO))?;
        let e_of = |amount: Decimal| program.e_points_of(amount).ok_or_else(overflow);
        let e_points = if program.rounding_scope == RoundingScope::Line && !trade.lines.is_empty() {
            let mut total = 0i64;
            for (line, sku) in trade.lines.iter().zip(&skus) {
                if !excluded(sku) {
                    total = total
                        .checked_add(e_of(base(line.amount.value())?)?.value())
                        .ok_or_else(overflow)?;
                }
            }
            Points::new(total).map_err(|_| overflow())?
        } else {
            e_of(spend_base)?
        };
        let sales_at = trade.sales_instant();
        let zone = program.store_zone(trade.store_code.as_str());
        let local = program.zone(zone).local_time(sales_at);
        Ok(Facts {
            trade,
            store: std::cell::OnceCell::new(),
            sales_at,
            earned_on: local.date(),
            zone,
            program_day: match zone {
                None => local.date(),
                Some(_) => program.time_zone.local_date(sales_at),
            },
            excluded: skus.iter().map(|sku| excluded(sku)).collect(),
            weekday: local.weekday().num_days_from_monday(),
            minute: local.hour() * 60 + local.minute(),
            spend_base,
            rate,
            e_points,
            skus,
        })
    }

    /// Runs campaigns (by position in `campaigns`, in evaluation order) over a trade's facts.
    fn run(
        &self,
        facts: &Facts,
        ctx: &MemberContext,
        positions: impl Iterator<Item = (u32, Known)>,
        trace: bool,
    ) -> Result<(Priced, Vec<CampaignOutcome>), EvaluateError> {
        // The winners' buffer is kept a thread, so pricing does not allocate it each time.
        thread_local! {
            static WINNERS: std::cell::Cell<Vec<(u32, i64, usize)>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut outcomes = Vec::new();
        let outcome = |campaign: &Campaign, outcome, points, reason: String| CampaignOutcome {
            campaign_code: campaign.code.to_string(),
            outcome,
            points,
            reason,
        };
        let tier = self.member_tier(ctx);
        // (position, points, outcome index) of each campaign that grants, before groups.
        let mut winners = WINNERS.with(|w| w.take());
        winners.clear();
        let mut stopped_by: Option<&CampaignCode> = None;
        // A plain campaign the index proved every trade condition of is priced from
        // `index.plain` alone (unless explaining, or repricing only some campaigns).
        let plain_priced = !trace && ctx.only_campaigns.is_none();
        // Whether a winner is in a group (only then are the groups' best looked for).
        let mut grouped = false;
        let mut memo = AwardMemo::default();
        for (position, known) in positions {
            if plain_priced && known.all && known.plain && stopped_by.is_none() {
                if let Some(plain) = &self.index.plain[position as usize] {
                    let points = memo
                        .points(plain.award, facts, &self.program)
                        .ok_or(EvaluateError::PointsOverflow)?
                        .value();
                    if points > 0 {
                        winners.push((position, points, usize::MAX));
                    }
                    continue;
                }
            }
            let campaign = &self.campaigns[position as usize];
            if let Some(exclusive) = stopped_by {
                if trace {
                    outcomes.push(outcome(
                        campaign,
                        "after_exclusive",
                        0,
                        format!("exclusive campaign {exclusive} matched first"),
                    ));
                    continue;
                }
                break;
            }
            let matched = campaign
                .check_trade(facts, known)
                .and_then(|()| campaign.check_member(ctx, tier, facts.earned_on.month()));
            if let Err(miss) = matched {
                if trace {
                    let reason = miss.reason(campaign, facts, &self.program);
                    outcomes.push(outcome(campaign, "not_matched", 0, reason));
                }
                continue;
            }
            let points = campaign.award_points(facts, &self.program, tier)?.value();
            let (points, cap) = campaign.capped(points, ctx);
            if trace {
                let (kind, reason) = match cap {
                    Some(why) => ("capped", format!("capped by {why}")),
                    None => ("granted", "every condition holds".to_string()),
                };
                outcomes.push(outcome(campaign, kind, points, reason));
            }
            if points > 0 {
                winners.push((position, points, outcomes.len().wrapping_sub(1)));
                grouped |= campaign.group.is_some();
            }
            if campaign.exclusive {
                stopped_by = Some(&campaign.code);
            }
        }
        // Of each group, only the one granting the most (the first in order on a tie) applies.
        let mut best: HashMap<&str, (i64, &CampaignCode)> = HashMap::new();
        for &(position, points, _) in winners.iter().filter(|_| grouped) {
            let campaign = &self.campaigns[position as usize];
            if let Some(group) = &campaign.group {
                let slot = best.entry(group).or_insert((points, &campaign.code));
                if points > slot.0 {
                    *slot = (points, &campaign.code);
                }
            }
        }
        let mut priced = Priced {
            // Recorded when the member's tier was read (or given): a refund prices at it again.
            tier: match ctx.qualifying.is_some() || ctx.tier.is_some() {
                true => self
                    .program
                    .tiers
                    .as_ref()
                    .map(|tiers| tiers.name(tier.unwrap_or(0)).to_string()),
                false => None,
            },
            ..Priced::default()
        };
        priced.grants.reserve(winners.len() + 1);
        // Expiries by (type, quarters ahead), worked out once a trade: most grants share one.
        type Expiry = (Option<NaiveDate>, Option<DateTime<Utc>>);
        let mut expiries: [Option<((ExpireType, u32), Expiry)>; 4] = [None; 4];
        let mut expiry = |expire_type: ExpireType, ahead: u32| {
            let key = (expire_type, ahead);
            let known = expiries.iter().flatten().find(|(k, _)| *k == key);
            let (date, at) = match known {
                Some((_, found)) => *found,
                None => {
                    let found = self.expiry(expire_type, ahead, facts.earned_on, facts.zone);
                    if let Some(free) = expiries.iter_mut().find(|slot| slot.is_none()) {
                        *free = Some((key, found));
                    }
                    found
                }
            };
            (expire_type, date, at)
        };
        let available_at = self.available_at(facts.sales_at);
        if !facts.e_points.is_zero() {
            priced.grants.push(self.grant(
                PointType::E,
                facts.e_points,
                expiry(ExpireType::Kdp, 0),
                available_at,
                &self.program.earn_remark,
                None,
            ));
        }
        for &(position, points, at) in &winners {
            let campaign = &self.campaigns[position as usize];
            if let Some(plain) = &self.index.plain[position as usize] {
                // No group, no budget: its grant alone.
                debug_assert!(campaign.group.is_none() && !campaign.has_budget());
                priced.grants.push(self.grant(
                    PointType::A,
                    Points::new(points).map_err(|_| EvaluateError::PointsOverflow)?,
                    expiry(plain.expire_type, plain.quarters_ahead),
                    available_at,
                    &campaign.remark,
                    Some(&campaign.code),
                ));
                continue;
            }
            if let Some(group) = &campaign.group {
                let (_, winner) = best[group.as_str()];
                if winner != &campaign.code {
                    if trace {
                        outcomes[at] = outcome(
                            campaign,
                            "lost_in_group",
                            0,
                            format!("{winner} grants more in group {group:?}"),
                        );
                    }
                    continue;
                }
            }
            let points = Points::new(points).map_err(|_| EvaluateError::PointsOverflow)?;
            priced.grants.push(self.grant(
                PointType::A,
                points,
                expiry(campaign.expire_type, campaign.quarters_ahead),
                available_at,
                &campaign.remark,
                Some(&campaign.code),
            ));
            if !ctx.repricing && campaign.has_budget() {
                let code = || campaign.code.clone();
                let points = points.value();
                if let Some(cap) = campaign.budget {
                    priced
                        .budget_use
                        .push((BudgetKey::Whole(code()), cap, points));
                }
                if let Some(cap) = campaign.budget_per_day {
                    let day = BudgetKey::Period(code(), day_key(facts.program_day));
                    priced.budget_use.push((day, cap, points));
                }
                if let Some(cap) = campaign.budget_per_month {
                    let month = BudgetKey::Period(code(), month_key(facts.program_day));
                    priced.budget_use.push((month, cap, points));
                }
            }
        }
        WINNERS.with(|w| w.set(winners));
        Ok((priced, outcomes))
    }

    /// The grant for a completion of an objective: `None` for an unknown objective, or for a
    /// completion that is not an `every`th one. `completions_before` counts the member's
    /// earlier completions of it.
    pub fn objective_grant(
        &self,
        id: &ObjectiveId,
        completions_before: u64,
        completed_at: DateTime<Utc>,
    ) -> Option<Grant> {
        let objective = self.objectives.iter().find(|o| &o.id == id)?;
        if !(completions_before + 1).is_multiple_of(objective.every) {
            return None;
        }
        let earned_on = self.program.time_zone.local_date(completed_at);
        let (date, at) = self.expiry(
            objective.expire_type,
            objective.quarters_ahead,
            earned_on,
            None,
        );
        Some(self.grant(
            PointType::A,
            objective.points,
            (objective.expire_type, date, at),
            self.available_at(completed_at),
            &objective.remark,
            Some(&objective.code),
        ))
    }

    /// When points earned at `earned_at` become usable: after the program's pending days.
    fn available_at(&self, earned_at: DateTime<Utc>) -> DateTime<Utc> {
        earned_at + chrono::Duration::days(i64::from(self.program.pending_days))
    }

    /// The last usable day and the end instant of points earned on `earned_on`, in the zone
    /// `zone` names (`Program::zone`).
    fn expiry(
        &self,
        expire_type: ExpireType,
        quarters_ahead: u32,
        earned_on: NaiveDate,
        zone: Option<usize>,
    ) -> (Option<NaiveDate>, Option<DateTime<Utc>>) {
        let expire_date = match expire_type {
            ExpireType::Kdp => self.program.kdp.expiry_date(earned_on),
            ExpireType::Quarter => Some(quarter_end(earned_on, quarters_ahead)),
        };
        (
            expire_date,
            expire_date.map(|d| self.program.zone(zone).end_of_date(d)),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn grant(
        &self,
        point_type: PointType,
        points: Points,
        (expire_type, expire_date, expires_at): (
            ExpireType,
            Option<NaiveDate>,
            Option<DateTime<Utc>>,
        ),
        available_at: DateTime<Utc>,
        remark: &std::sync::Arc<str>,
        campaign_code: Option<&CampaignCode>,
    ) -> Grant {
        Grant {
            point_type,
            points,
            expire_type,
            expire_date,
            expires_at,
            available_at,
            remark: remark.clone(),
            campaign_code: campaign_code.cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;
    use rust_decimal::prelude::ToPrimitive;

    #[test]
    fn store_patterns() {
        let m = |pattern: &str, store: &str| {
            Glob::new(pattern).matches(&store.chars().collect::<Vec<_>>())
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
    fn ordinals() {
        let all: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .into();
        assert_eq!(
            all,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
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

    proptest::proptest! {
        /// Whole points by integer division agree with `rust_decimal`'s own rounding, for
        /// every mode, sign, scale and the halves.
        #[test]
        fn to_points_rounds_as_rust_decimal_does(
            mantissa in proptest::prop_oneof![
                -10_000i128..10_000,
                // Every mantissa a decimal can hold (96 bits).
                (1 - (1i128 << 96))..(1i128 << 96),
                (-1_000i128..1_000).prop_map(|half| half * 10 + 5),
            ],
            scale in proptest::prop_oneof![0u32..=3, 0u32..=28],
        ) {
            let value = Decimal::from_i128_with_scale(mantissa, scale);
            for mode in [
                Rounding::Floor,
                Rounding::Ceil,
                Rounding::HalfUp,
                Rounding::HalfEven,
                Rounding::HalfDown,
            ] {
                let expected = value
                    .round_dp_with_strategy(0, mode.strategy())
                    .to_i64()
                    .and_then(|whole| Points::new(whole).ok());
                proptest::prop_assert_eq!(mode.to_points(value), expected, "{:?} {}", mode, value);
            }
        }

        /// The index's spend check in millionths gives the decimals' answer for every minimum
        /// it holds as whole millionths; finer or larger minimums are left to the exact check.
        #[test]
        fn spend_in_millionths_compares_as_the_decimals_do(
            spend in (0i128..(1i128 << 96), 0u32..=28),
            min in (0i128..(1i128 << 70), 0u32..=9),
        ) {
            let spend = Decimal::from_i128_with_scale(spend.0, spend.1);
            let min = Decimal::from_i128_with_scale(min.0, min.1);
            match whole_micros_of(min) {
                Some(min_micros) => proptest::prop_assert_eq!(
                    floor_micros_of(spend) >= min_micros,
                    spend >= min,
                    "{} {}", spend, min
                ),
                None => proptest::prop_assert!(
                    min.scale() > 6 && !(min * Decimal::from(1_000_000)).fract().is_zero()
                        || min > Decimal::from(i64::MAX / 1_000_000),
                    "{}", min
                ),
            }
        }
    }

    #[test]
    fn amounts_in_millionths() {
        let d = |text: &str| text.parse::<Decimal>().unwrap();
        assert_eq!(whole_micros_of(d("12.34")), Some(12_340_000));
        assert_eq!(whole_micros_of(d("0.000001")), Some(1));
        assert_eq!(whole_micros_of(d("0.0000001")), None);
        assert_eq!(whole_micros_of(d("1.0000000")), Some(1_000_000));
        assert_eq!(whole_micros_of(d("10000000000000")), None);
        assert_eq!(floor_micros_of(d("0.0000019")), 1);
        assert_eq!(floor_micros_of(d("-0.0000001")), -1);
        assert_eq!(floor_micros_of(Decimal::MAX), i64::MAX);
        assert_eq!(floor_micros_of(Decimal::MIN), i64::MIN);
    }
}
