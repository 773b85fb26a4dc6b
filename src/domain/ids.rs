//! Identifier types. Each is a trimmed, non-empty, length-bounded string of printable characters.

use chrono::{DateTime, Utc};
use std::fmt;

/// Shared parser for the identifier newtypes: non-empty after trimming, at most `len_max`
/// characters, no control characters.
fn parse_text(raw: &str, len_max: usize) -> Result<String, String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("must not be empty".to_string());
    }
    let len = value.chars().count();
    if len > len_max {
        return Err(format!("must be at most {len_max} characters, got {len}"));
    }
    if value.chars().any(char::is_control) {
        return Err("must not contain control characters".to_string());
    }
    Ok(value.to_string())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $len_max:expr) => {
        $(#[$doc])*
        /// Shared text: a copy (a grant naming its campaign, say) costs no allocation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            pub const LEN_MAX: usize = $len_max;

            pub fn parse(raw: &str) -> Result<Self, String> {
                parse_text(raw, Self::LEN_MAX).map(|text| Self(text.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// A member's account number (`vip_accountno`).
    VipAccountNo,
    64
);
text_id!(
    /// The store system's own order number; unique across the program (`out_trade_no`).
    OutTradeNo,
    64
);
text_id!(
    /// The store system's own refund number; unique across the program (`out_refund_no`).
    OutRefundNo,
    64
);
text_id!(
    /// Point-engine's own order number (`trade_no`).
    TradeNo,
    64
);
text_id!(
    /// A store's code (`store_code`), matched by campaign store patterns.
    StoreCode,
    32
);
text_id!(
    /// The receipt number printed by the till (`invoice_id`).
    InvoiceId,
    64
);
text_id!(
    /// How the customer paid (`payment_method`), e.g. `Visa`.
    PaymentMethod,
    32
);
text_id!(
    /// A product's id on a trade line (`goods_id`, `product_id`), matched by SKU patterns.
    Sku,
    64
);
text_id!(
    /// An objective's id (discount-card `objective_id`), completed by members.
    ObjectiveId,
    64
);
text_id!(
    /// A campaign's code, carried by every A grant it makes.
    CampaignCode,
    64
);

impl TradeNo {
    /// Point-engine's number for the store's order `out_trade_no` posted at `posted_at`: `PE`,
    /// the posting time (milliseconds since 1970, 11 hex digits), and 52 bits of SHA-256 of
    /// `out_trade_no` (13 hex digits).
    ///
    /// Minted once, when the trade is first recorded; a replay answers the recorded number.
    /// Two orders share one only if posted in the same millisecond with the same 52 bits
    /// (odds about 1 in 4.5 * 10^15 a pair). New numbers sort in posting order, so the
    /// ledger's unique index on them grows at its end: a number drawn only from a hash lands
    /// on a random page of that index, and on a ledger of a million trades every trade wrote
    /// a page of it nobody else had (measured: a third of the writer's time a trade).
    pub fn mint(out_trade_no: &OutTradeNo, posted_at: DateTime<Utc>) -> Self {
        use sha2::{Digest, Sha256};
        const MS_MAX: i64 = 0xFFF_FFFF_FFFF;
        let ms = posted_at.timestamp_millis().clamp(0, MS_MAX);
        let digest = Sha256::digest(format!("trade:{}", out_trade_no.as_str()).as_bytes());
        let hash = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 12;
        Self(format!("PE{ms:011X}{hash:013X}").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_trims_a_normal_id() {
        assert_eq!(
            VipAccountNo::parse(" 040xxxx ").unwrap().as_str(),
            "040xxxx"
        );
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(VipAccountNo::parse("").unwrap_err(), "must not be empty");
        assert_eq!(StoreCode::parse("   ").unwrap_err(), "must not be empty");
    }

    #[test]
    fn rejects_too_long() {
        let long = "x".repeat(65);
        assert_eq!(
            OutTradeNo::parse(&long).unwrap_err(),
            "must be at most 64 characters, got 65"
        );
        assert!(OutTradeNo::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn counts_characters_not_bytes() {
        assert!(InvoiceId::parse(&"票".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_control_characters() {
        assert_eq!(
            InvoiceId::parse("12\u{0}34").unwrap_err(),
            "must not contain control characters"
        );
    }

    #[test]
    fn trade_no_sorts_by_posting_time_and_tells_orders_apart() {
        let a = OutTradeNo::parse("A-1").unwrap();
        let b = OutTradeNo::parse("A-2").unwrap();
        let at = |rfc3339: &str| DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
        let first = at("2026-12-03T10:00:00.001Z");
        let later = at("2026-12-03T10:00:00.002Z");
        assert_eq!(TradeNo::mint(&a, first), TradeNo::mint(&a, first));
        assert_ne!(TradeNo::mint(&a, first), TradeNo::mint(&b, first));
        assert!(TradeNo::mint(&b, first).as_str() < TradeNo::mint(&a, later).as_str());
        assert_eq!(
            &TradeNo::mint(&a, first).as_str()[..13],
            format!("PE{:011X}", first.timestamp_millis())
        );
        assert_eq!(TradeNo::mint(&a, first).as_str().len(), 26);
        // docs/api.md's example.
        let seed = OutTradeNo::parse("XXXX").unwrap();
        assert_eq!(
            TradeNo::mint(&seed, at("2026-12-03T10:00:00Z")).as_str(),
            "PE1A23B58B900A0DB191A416FD"
        );
        let before_1970 = at("1969-12-31T00:00:00Z");
        assert!(TradeNo::mint(&a, before_1970)
            .as_str()
            .starts_with("PE00000000000"));
    }
}
