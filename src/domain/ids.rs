//! Identifier types. Each is a trimmed, non-empty, length-bounded string of printable characters.

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
    /// Derives point-engine's order number from the store's: stable, so a replay can never mint
    /// a second one, and 80 bits of SHA-256 so that distinct orders do not collide in practice.
    pub fn for_out_trade_no(out_trade_no: &OutTradeNo) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("trade:{}", out_trade_no.as_str()).as_bytes());
        let hex: String = digest[..10].iter().map(|b| format!("{b:02X}")).collect();
        Self(format!("PE{hex}").into())
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
    fn trade_no_is_stable_and_distinct() {
        let a = OutTradeNo::parse("A-1").unwrap();
        let b = OutTradeNo::parse("A-2").unwrap();
        assert_eq!(TradeNo::for_out_trade_no(&a), TradeNo::for_out_trade_no(&a));
        assert_ne!(TradeNo::for_out_trade_no(&a), TradeNo::for_out_trade_no(&b));
        assert_eq!(TradeNo::for_out_trade_no(&a).as_str().len(), 22);
    }
}
