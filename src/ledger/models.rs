//! Rows as the ledger stores them.

use super::schema::{
    debt_movements, entries, lots, members, refund_lines, refunds, rulesets, trade_lines, trades,
};
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = trades)]
pub struct TradeRow {
    pub id: i64,
    pub trade_no: String,
    pub out_trade_no: String,
    pub request_fingerprint: String,
    pub member_id: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = trades)]
pub struct TradeDetailRow {
    pub id: i64,
    pub trade_no: String,
    pub out_trade_no: String,
    pub store_code: String,
    pub invoice_id: String,
    pub currency: String,
    pub total_amount_minor: i64,
    pub payment_amount_minor: i64,
    pub payment_method: String,
    pub sales_time: String,
    pub submit_time: String,
    pub approval_time: String,
    pub burn_point: i64,
    pub resource: String,
    pub remark: String,
    pub receipt_image_urls: String,
    pub payment_image_urls: String,
    pub ruleset_version: String,
    pub created_at_ms: i64,
    pub member_id: i64,
    pub post_fee_minor: i64,
    pub discount_minor: i64,
    pub tier: String,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = members, treat_none_as_default_value = false)]
pub struct NewMember<'a> {
    pub vip_accountno: &'a str,
    pub created_at_ms: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = trades, treat_none_as_default_value = false)]
pub struct NewTrade<'a> {
    pub trade_no: &'a str,
    pub out_trade_no: &'a str,
    pub request_fingerprint: &'a str,
    pub member_id: i64,
    pub store_code: &'a str,
    pub invoice_id: &'a str,
    pub currency: &'a str,
    pub total_amount_minor: i64,
    pub payment_amount_minor: i64,
    pub payment_method: &'a str,
    pub sales_time: String,
    pub sales_at_ms: i64,
    pub submit_time: String,
    pub approval_time: String,
    pub burn_point: i64,
    pub resource: &'a str,
    pub remark: &'a str,
    pub receipt_image_urls: String,
    pub payment_image_urls: String,
    pub ruleset_version: &'a str,
    pub created_at_ms: i64,
    pub post_fee_minor: i64,
    pub discount_minor: i64,
    pub tier: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = trade_lines, treat_none_as_default_value = false)]
pub struct TradeLineRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub trade_id: i64,
    pub line_no: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = lots)]
pub struct LotRow {
    pub id: i64,
    pub member_id: i64,
    pub trade_id: i64,
    pub point_type: String,
    pub campaign_code: String,
    pub remark: String,
    pub expire_type: String,
    pub expire_date: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub available_at_ms: i64,
    pub points: i64,
    pub remaining: i64,
    pub ruleset_version: String,
    pub created_at_ms: i64,
}

/// An open lot (points left) as a balance shows it: no remark, no points first granted.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = lots)]
pub struct ShownLot {
    pub id: i64,
    pub point_type: String,
    pub campaign_code: String,
    pub expire_type: String,
    pub expire_date: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub available_at_ms: i64,
    pub remaining: i64,
}

/// An open lot as a burn takes from it: its order, what it has left, and what its burn
/// entries show of it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = lots)]
pub struct BurnableLot {
    pub id: i64,
    pub expires_at_ms: Option<i64>,
    pub available_at_ms: i64,
    pub remaining: i64,
    pub point_type: String,
    pub campaign_code: String,
}

impl NewTrade<'_> {
    pub fn numbers(&self) -> TradeNumbers<'_> {
        TradeNumbers {
            trade_no: self.trade_no,
            out_trade_no: self.out_trade_no,
        }
    }
}

impl LotRow {
    /// When the lot's expiry is booked: the end of its last usable day in the program's zone
    /// (the millisecond before `expires_at`), so points that expire at the end of 31 March
    /// leave March's closing liability and show in March's movements, whenever the expiry task
    /// runs; or the lot's creation, if it was recorded after that (a receipt posted late).
    /// `None`: it never expires.
    pub fn expiry_effective_at_ms(&self) -> Option<i64> {
        self.expires_at_ms
            .map(|at| (at - 1).max(self.created_at_ms))
    }
}

// Every insert binds NULL for `None` (`treat_none_as_default_value = false`) instead of writing
// DEFAULT: the SQL then never depends on the values, so diesel keeps the prepared statement
// (with DEFAULT it prepares every insert again).
#[derive(Debug, Insertable)]
#[diesel(table_name = lots, treat_none_as_default_value = false)]
pub struct NewLot<'a> {
    pub member_id: i64,
    pub trade_id: i64,
    pub point_type: &'a str,
    pub campaign_code: &'a str,
    pub remark: &'a str,
    pub expire_type: &'a str,
    pub expire_date: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub available_at_ms: i64,
    pub points: i64,
    pub remaining: i64,
    pub ruleset_version: &'a str,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct EntryRow {
    pub id: i64,
    pub member_id: i64,
    pub lot_id: i64,
    pub trade_id: Option<i64>,
    pub refund_id: Option<i64>,
    pub kind: String,
    pub points: i64,
    pub effective_at_ms: i64,
    pub created_at_ms: i64,
}

/// An entry as a history shows it: what it moved, its lot's point type and campaign, its
/// trade's numbers, all carried by the entry (`NewEntry`) and read from one index.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct ShownEntryRow {
    pub id: i64,
    pub kind: String,
    pub points: i64,
    pub point_type: String,
    pub campaign_code: String,
    pub trade_no: String,
    pub out_trade_no: String,
    pub effective_at_ms: i64,
    pub created_at_ms: i64,
}

impl ShownEntryRow {
    /// The bytes of its texts.
    pub fn text_len(&self) -> usize {
        self.kind.len()
            + self.point_type.len()
            + self.campaign_code.len()
            + self.trade_no.len()
            + self.out_trade_no.len()
    }
}

/// A trade's two numbers, as its entries show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeNumbers<'a> {
    pub trade_no: &'a str,
    pub out_trade_no: &'a str,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = entries, treat_none_as_default_value = false)]
pub struct NewEntry<'a> {
    pub member_id: i64,
    pub lot_id: i64,
    pub trade_id: Option<i64>,
    pub refund_id: Option<i64>,
    pub kind: &'a str,
    pub points: i64,
    pub effective_at_ms: i64,
    pub created_at_ms: i64,
    /// The lot's.
    pub point_type: &'a str,
    /// The lot's.
    pub campaign_code: &'a str,
    /// The trade's (`trade_id`).
    pub trade_no: &'a str,
    /// The trade's (`trade_id`).
    pub out_trade_no: &'a str,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = rulesets, treat_none_as_default_value = false)]
pub struct NewRuleset<'a> {
    pub version: &'a str,
    pub sources: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refunds, treat_none_as_default_value = false)]
pub struct RefundRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub out_refund_no: String,
    pub request_fingerprint: String,
    pub trade_id: i64,
    pub member_id: i64,
    pub refund_amount_minor: i64,
    pub refund_time: String,
    pub burn_returned: i64,
    pub shortfall_policy: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refund_lines, treat_none_as_default_value = false)]
pub struct RefundLineRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub refund_id: i64,
    pub lot_id: i64,
    pub points: i64,
    pub shortfall: i64,
    pub owed: i64,
    /// Of `points`, what was taken from the grant's own lot when the refund was made.
    pub from_grant: i64,
    /// Of `points`, what had expired from the grant's own lot before the refund was made: no
    /// entry moves for it.
    pub from_expired: i64,
}

/// A debt movement as the audit reads it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct DebtMovementRow {
    pub id: i64,
    pub refund_line_id: i64,
    pub kind: String,
    pub points: i64,
    pub paid_by_lot_id: Option<i64>,
    /// Of a payment, what a settlement gave back to the paying lot.
    pub restored: i64,
}

/// A movement of what a member owes: `owed` by a refund line, `paid` by a later lot.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = debt_movements, treat_none_as_default_value = false)]
pub struct NewDebtMovement<'a> {
    pub refund_line_id: i64,
    pub kind: &'a str,
    pub points: i64,
    pub paid_by_lot_id: Option<i64>,
    pub effective_at_ms: i64,
    pub created_at_ms: i64,
}

/// An entry as reports read it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct MovementRow {
    pub lot_id: i64,
    pub trade_id: Option<i64>,
    pub kind: String,
    pub points: i64,
    pub effective_at_ms: i64,
}
