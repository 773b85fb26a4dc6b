//! Domain types: values that cannot hold a bad value once constructed.
//!
//! Every constructor here is a parser; each rejection has a unit test.

pub mod expiry;
pub mod grant;
pub mod ids;
pub mod member;
pub mod money;
pub mod points;
pub mod pricing;
pub mod refund;
pub mod trade;

pub use expiry::{ExpireType, ProgramTz};
pub use grant::{Grant, PointType};
pub use ids::{
    CampaignCode, InvoiceId, ObjectiveId, OutRefundNo, OutTradeNo, PaymentMethod, Sku, StoreCode,
    TradeNo, VipAccountNo,
};
pub use member::{Birthday, Gender, Identity, IdentityKind, Profile};
pub use money::{Amount, CurrencyCode};
pub use points::Points;
pub use pricing::{
    BudgetKey, CampaignUse, ContextNeeds, EvaluateError, MemberContext, Priced, TierBasis, TierNeed,
};
pub use refund::{Refund, ShortfallPolicy};
pub use trade::{Fingerprint, ImageUrl, Trade, TradeLine};
