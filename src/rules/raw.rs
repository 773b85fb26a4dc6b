//! Rule files as written: serde shapes of the TOML, before any validation.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub program: Option<Spanned<RawProgram>>,
    #[serde(default)]
    pub campaign: Vec<Spanned<RawCampaign>>,
    #[serde(default)]
    pub objective: Vec<Spanned<RawObjective>>,
    #[serde(default)]
    pub test: Vec<Spanned<RawTest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub name: String,
    pub time_zone: String,
    pub base_currency: String,
    pub rounding: String,
    #[serde(default)]
    pub pending_days: i64,
    pub earn: RawEarn,
    pub kdp: RawKdp,
    pub currencies: BTreeMap<String, DecimalText>,
    /// Named lists of store patterns that campaigns refer to with `store_groups`.
    #[serde(default)]
    pub store_groups: BTreeMap<String, Vec<String>>,
    /// Named lists of local dates ("YYYY-MM-DD") that campaigns black out by name.
    #[serde(default)]
    pub holidays: BTreeMap<String, Vec<String>>,
    /// Member tiers, qualified by points or spend over a period.
    pub tiers: Option<RawTiers>,
    /// Store group → the time zone its stores are in, when not the program's.
    #[serde(default)]
    pub store_time_zones: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiers {
    /// "points" (E and A granted, less refunds) or "spend" (paid, in base currency, less refunds).
    pub qualify_on: String,
    /// "calendar_year" or "rolling_12_months".
    pub period: String,
    /// Lowest first; the first from 0.
    pub levels: Vec<RawTierLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTierLevel {
    pub name: String,
    pub from: DecimalText,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEarn {
    pub base: String,
    pub points: i64,
    pub per_amount: DecimalText,
    #[serde(default)]
    pub remark: String,
    /// What the earning base leaves out: "post_fee", "discount", "burned_points".
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Lines whose SKU matches one of these patterns earn nothing.
    #[serde(default)]
    pub excluded_skus: Vec<String>,
    /// The money one burned point stands for, in base currency (for `exclude = ["burned_points"]`).
    pub burned_point_value: Option<DecimalText>,
    /// "receipt" (default): round the receipt's E points once; "line": round each line's.
    pub rounding_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKdp {
    pub policy: String,
    pub months: Option<i64>,
    pub years: Option<i64>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub code: String,
    /// `false`: paused. The campaign is still checked, but grants nothing until set back.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub remark: String,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(default)]
    pub stores: Vec<String>,
    #[serde(default)]
    pub payment_methods: Vec<String>,
    #[serde(default)]
    pub currencies: Vec<String>,
    #[serde(default)]
    pub store_groups: Vec<String>,
    /// Stores it never applies at, though `stores` or `store_groups` name them.
    #[serde(default)]
    pub excluded_stores: Vec<String>,
    /// Names of `program.store_groups` whose stores it never applies at.
    #[serde(default)]
    pub excluded_store_groups: Vec<String>,
    /// `resource` values (the channel a trade came through) it applies to, in any case.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The member's gender as their profile holds it: "male", "female" or "unknown".
    #[serde(default)]
    pub genders: Vec<String>,
    /// Names of `program.tiers` levels the member must be at.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Only in the member's birthday month (local month of the sale).
    #[serde(default)]
    pub birthday_month: bool,
    /// "mon" … "sun", in the program time zone.
    #[serde(default)]
    pub days_of_week: Vec<String>,
    /// "HH:MM-HH:MM" local windows, start included, end excluded; one that ends before it
    /// starts runs past midnight and belongs to the day it starts.
    #[serde(default)]
    pub hours: Vec<String>,
    /// Local dates ("YYYY-MM-DD") or names of `program.holidays` on which it does not apply.
    #[serde(default)]
    pub blackout_dates: Vec<String>,
    pub min_spend: Option<DecimalText>,
    pub max_spend: Option<DecimalText>,
    /// The trade needs lines whose SKU matches one of these patterns.
    #[serde(default)]
    pub skus: Vec<String>,
    /// With `skus`: the matching lines' quantities must add up to at least this (default 1).
    pub min_quantity: Option<i64>,
    /// Lines whose SKU matches one of these count for nothing in this campaign: not for
    /// `skus` or `basket`, not in its spend.
    #[serde(default)]
    pub excluded_skus: Vec<String>,
    /// The receipt must hold a line of each of these patterns (bought X and Y together).
    #[serde(default)]
    pub basket: Vec<String>,
    /// What the campaign counts as spend (`min_spend`, `max_spend`, its award): "receipt" (the
    /// earning base, default) or "matching_lines" (the amount of the lines matching `skus`).
    pub spend_base: Option<String>,
    /// Only the member's first trade ever.
    #[serde(default)]
    pub first_trade: bool,
    /// Only the member's nth trade sold in the campaign's window.
    pub nth_trade: Option<i64>,
    /// Every nth trade of the member's in the campaign's window (the nth, the 2nth…).
    pub every_nth_trade: Option<i64>,
    /// The member's nth trade in the campaign's window and every one after it.
    pub from_nth_trade: Option<i64>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub exclusive: bool,
    /// Of the matching campaigns of one group, only the one granting the most applies.
    pub group: Option<String>,
    pub expiry: String,
    #[serde(default)]
    pub quarters_ahead: i64,
    pub award: RawAward,
    pub max_points_per_trade: Option<i64>,
    pub member_limit: Option<RawMemberLimit>,
    /// Points the campaign may grant in all, to every member together.
    pub budget: Option<i64>,
    /// Points it may grant each local day of sale (program time), to every member together.
    pub budget_per_day: Option<i64>,
    /// Points it may grant each local month of sale.
    pub budget_per_month: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemberLimit {
    pub total: Option<i64>,
    pub per_day: Option<i64>,
    /// In the local week of the sale, Monday to Sunday.
    pub per_week: Option<i64>,
    pub per_month: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjective {
    /// The objective as the discount-card platform names it (`objective_id`).
    pub id: String,
    /// The campaign code its A points carry.
    pub code: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub remark: String,
    pub points: i64,
    /// Grant every `every`th completion (default 1: each one).
    pub every: Option<i64>,
    pub expiry: String,
    #[serde(default)]
    pub quarters_ahead: i64,
}

/// An example receipt beside the campaigns, with the points it must earn: `rules check` runs it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: String,
    pub trade: RawTestTrade,
    /// The member's trades before this one (default 0: this is their first).
    #[serde(default)]
    pub trades_before: i64,
    /// The member's gender as their profile holds it (default: not given).
    pub gender: Option<String>,
    /// The member's tier (default: the lowest).
    pub tier: Option<String>,
    /// The member's birthday, "YYYY-MM-DD" or "MM-DD" (default: not given).
    pub birthday: Option<String>,
    /// What the member (and the budget) already got from campaigns, by campaign code.
    #[serde(default)]
    pub history: BTreeMap<String, RawHistory>,
    /// The total points the trade must earn.
    pub total: i64,
    /// Optionally, each grant: `{ campaign = "CODE" or "" for E, points = N }`, in order.
    pub grants: Option<Vec<RawTestGrant>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    #[serde(default)]
    pub trades_in_window: i64,
    #[serde(default)]
    pub points_total: i64,
    #[serde(default)]
    pub points_day: i64,
    #[serde(default)]
    pub points_week: i64,
    #[serde(default)]
    pub points_month: i64,
    #[serde(default)]
    pub budget_used: i64,
    #[serde(default)]
    pub budget_day_used: i64,
    #[serde(default)]
    pub budget_month_used: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTestTrade {
    pub store_code: String,
    pub payment_amount: DecimalText,
    pub total_amount: Option<DecimalText>,
    #[serde(default = "default_payment_method")]
    pub payment_method: String,
    pub currency: Option<String>,
    pub sales_time: String,
    #[serde(default)]
    pub burn_point: i64,
    /// The channel the trade came through (`resource`).
    #[serde(default)]
    pub resource: String,
    pub post_fee: Option<DecimalText>,
    pub discount: Option<DecimalText>,
    #[serde(default)]
    pub lines: Vec<RawTestLine>,
}

fn default_payment_method() -> String {
    "Cash".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTestLine {
    pub sku: String,
    #[serde(default = "one")]
    pub quantity: i64,
    pub amount: DecimalText,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTestGrant {
    pub campaign: String,
    pub points: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAward {
    pub multiplier_of_e: Option<DecimalText>,
    /// A multiple of the E points for each tier named; other tiers get nothing.
    pub multiplier_of_e_by_tier: Option<BTreeMap<String, DecimalText>>,
    pub points: Option<i64>,
    pub per_amount: Option<DecimalText>,
    pub rounding: Option<String>,
    pub fixed: Option<i64>,
    /// Points for each line whose SKU matches the campaign's `skus`.
    pub points_per_line: Option<i64>,
    /// Points for each unit (quantity) on lines whose SKU matches the campaign's `skus`.
    pub points_per_unit: Option<i64>,
}

/// A decimal written as a string (`"7.8"`) or an integer (`10`). Floats are refused: a binary
/// float cannot hold most decimal fractions exactly.
#[derive(Debug, Clone)]
pub struct DecimalText(pub String);

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DecimalVisitor;
        impl Visitor<'_> for DecimalVisitor {
            type Value = DecimalText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal as a string such as \"7.8\", or an integer")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DecimalText, E> {
                Ok(DecimalText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DecimalText, E> {
                Err(E::custom(format!(
                    "write decimals as strings, e.g. \"{v}\": a float is not exact"
                )))
            }
        }
        deserializer.deserialize_any(DecimalVisitor)
    }
}
