//! A trade: one receipt, parsed. Every field holds a valid value by construction.

use super::{
    Amount, CurrencyCode, InvoiceId, OutTradeNo, PaymentMethod, Points, Sku, StoreCode,
    VipAccountNo,
};
use chrono::{DateTime, FixedOffset, Utc};
use sha2::{Digest, Sha256};

/// An http(s) URL of a receipt or payment image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrl(String);

impl ImageUrl {
    pub const LEN_MAX: usize = 2048;
    /// At most this many images of each kind on one trade.
    pub const PER_TRADE_MAX: usize = 20;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        let lower = text.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"))
            .ok_or_else(|| format!("must be an http(s) URL, got {raw:?}"))?;
        if rest.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("must be an http(s) URL, got {raw:?}"));
        }
        if text.len() > Self::LEN_MAX {
            return Err(format!("must be at most {} characters long", Self::LEN_MAX));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text fields (`resource`, `remark`): bounded, may be empty, no control characters but
/// tabs and line breaks (a NUL, for one, cannot be stored in PostgreSQL text).
pub fn parse_free_text(raw: &str, len_max: usize) -> Result<String, String> {
    let len = raw.chars().count();
    if len > len_max {
        return Err(format!("must be at most {len_max} characters, got {len}"));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err("must not contain control characters (tabs and line breaks may)".into());
    }
    Ok(raw.to_string())
}

/// An RFC 3339 instant such as `2023-01-20T10:00:00+08:00`; the offset as sent is kept.
pub fn parse_rfc3339(raw: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(raw.trim()).map_err(|_| {
        format!("must be an RFC 3339 time such as \"2023-01-20T10:00:00+08:00\", got {raw:?}")
    })
}

/// One line of a receipt: a product, how many, and what the line cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeLine {
    pub sku: Sku,
    /// Free text (≤ `NAME_LEN_MAX`), may be empty.
    pub name: String,
    /// At least 1, at most `QUANTITY_MAX`.
    pub quantity: u32,
    /// What the whole line cost the customer, after its own discounts.
    pub amount: Amount,
}

impl TradeLine {
    pub const NAME_LEN_MAX: usize = 256;
    pub const QUANTITY_MAX: u32 = 1_000_000;
    /// At most this many lines on one trade.
    pub const PER_TRADE_MAX: usize = 500;

    pub fn new(sku: Sku, name: &str, quantity: i64, amount: Amount) -> Result<Self, String> {
        let name = parse_free_text(name, Self::NAME_LEN_MAX).map_err(|e| format!("name {e}"))?;
        if !(1..=i64::from(Self::QUANTITY_MAX)).contains(&quantity) {
            return Err(format!(
                "quantity must be from 1 to {}, got {quantity}",
                Self::QUANTITY_MAX
            ));
        }
        Ok(Self {
            sku,
            name,
            quantity: quantity as u32,
            amount,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    pub vip_accountno: VipAccountNo,
    pub out_trade_no: OutTradeNo,
    pub store_code: StoreCode,
    pub invoice_id: InvoiceId,
    pub total_amount: Amount,
    pub payment_amount: Amount,
    pub payment_method: PaymentMethod,
    pub currency: CurrencyCode,
    pub sales_time: DateTime<FixedOffset>,
    pub submit_time: DateTime<FixedOffset>,
    pub approval_time: DateTime<FixedOffset>,
    pub burn_point: Points,
    pub resource: String,
    pub remark: String,
    pub receipt_image_urls: Vec<ImageUrl>,
    pub payment_image_urls: Vec<ImageUrl>,
    /// The receipt's lines, when the store system sends them (the native contract does not).
    pub lines: Vec<TradeLine>,
    /// Delivery charged on the receipt (part of its amounts; a program may leave it out of
    /// the earning base).
    pub post_fee: Amount,
    /// Discounts on the receipt as a whole.
    pub discount: Amount,
}

impl Trade {
    pub const RESOURCE_LEN_MAX: usize = 64;
    pub const REMARK_LEN_MAX: usize = 512;

    pub fn sales_instant(&self) -> DateTime<Utc> {
        self.sales_time.to_utc()
    }

    /// The trade as if `refunded` of its payment had never been paid: the payment less the
    /// refunds, and the total reduced in the same proportion (rounded down to the cent), so a
    /// full refund leaves nothing to earn on either base. `refunded` is at most the payment.
    pub fn net_of_refunds(&self, refunded: Amount) -> Trade {
        let payment = self.payment_amount.to_minor();
        let refunded = refunded.to_minor();
        assert!(
            (0..=payment).contains(&refunded),
            "refunds never exceed the payment"
        );
        let net_payment = payment - refunded;
        let net_total = if payment == 0 {
            self.total_amount.to_minor()
        } else {
            let scaled = i128::from(self.total_amount.to_minor()) * i128::from(net_payment)
                / i128::from(payment);
            i64::try_from(scaled).expect("at most the total")
        };
        let amount = |minor| Amount::from_minor(minor).expect("between zero and an Amount");
        Trade {
            total_amount: amount(net_total),
            payment_amount: amount(net_payment),
            ..self.clone()
        }
    }

    /// A digest of everything the trade says, in canonical form: two requests with the same
    /// fingerprint are the same request (`"1000.00"` and `1000` included), so a replay is
    /// answered, and the same `out_trade_no` with another fingerprint is a conflict.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.len().to_le_bytes());
            hasher.update(value.as_bytes());
        };
        field("vip_accountno", self.vip_accountno.as_str());
        field("out_trade_no", self.out_trade_no.as_str());
        field("store_code", self.store_code.as_str());
        field("invoice_id", self.invoice_id.as_str());
        field("total_amount", &self.total_amount.to_minor().to_string());
        field(
            "payment_amount",
            &self.payment_amount.to_minor().to_string(),
        );
        field("payment_method", self.payment_method.as_str());
        field("currency", self.currency.as_str());
        field("sales_time", &self.sales_time.to_rfc3339());
        field("submit_time", &self.submit_time.to_rfc3339());
        field("approval_time", &self.approval_time.to_rfc3339());
        field("burn_point", &self.burn_point.to_string());
        field("resource", &self.resource);
        field("remark", &self.remark);
        for url in &self.receipt_image_urls {
            field("receipt_image_url", url.as_str());
        }
        for url in &self.payment_image_urls {
            field("payment_image_url", url.as_str());
        }
        // Added later: a trade without them hashes as it always did.
        for line in &self.lines {
            field("line.sku", line.sku.as_str());
            field("line.name", &line.name);
            field("line.quantity", &line.quantity.to_string());
            field("line.amount", &line.amount.to_minor().to_string());
        }
        if self.post_fee != Amount::ZERO {
            field("post_fee", &self.post_fee.to_minor().to_string());
        }
        if self.discount != Amount::ZERO {
            field("discount", &self.discount.to_minor().to_string());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_trade() -> Trade {
        Trade {
            vip_accountno: VipAccountNo::parse("040xxxx").unwrap(),
            out_trade_no: OutTradeNo::parse("XXXX").unwrap(),
            store_code: StoreCode::parse("DP01XXXX").unwrap(),
            invoice_id: InvoiceId::parse("123456").unwrap(),
            total_amount: Amount::parse("1000.00").unwrap(),
            payment_amount: Amount::parse("1000.00").unwrap(),
            payment_method: PaymentMethod::parse("Visa").unwrap(),
            currency: CurrencyCode::parse("HKD").unwrap(),
            sales_time: parse_rfc3339("2023-01-20T10:00:00+08:00").unwrap(),
            submit_time: parse_rfc3339("2023-01-20T10:00:00+08:00").unwrap(),
            approval_time: parse_rfc3339("2023-01-20T10:00:00+08:00").unwrap(),
            burn_point: Points::ZERO,
            resource: String::new(),
            remark: String::new(),
            receipt_image_urls: vec![ImageUrl::parse("https://xxxx").unwrap()],
            payment_image_urls: vec![],
            lines: vec![],
            post_fee: Amount::ZERO,
            discount: Amount::ZERO,
        }
    }

    #[test]
    fn trade_lines_are_bounded() {
        let sku = || Sku::parse("SKU-1").unwrap();
        let amount = Amount::parse("12").unwrap();
        assert!(TradeLine::new(sku(), "tea", 1, amount).is_ok());
        assert!(TradeLine::new(sku(), "tea", 0, amount).is_err());
        assert!(TradeLine::new(sku(), "tea", 1_000_001, amount).is_err());
        assert!(TradeLine::new(sku(), &"x".repeat(257), 1, amount).is_err());
        assert!(Sku::parse("").is_err());
    }

    #[test]
    fn fingerprint_ignores_spelling_but_not_meaning() {
        let a = sample_trade();
        let mut b = sample_trade();
        b.total_amount = Amount::parse("1000").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.total_amount = Amount::parse("1000.01").unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        let mut c = sample_trade();
        c.receipt_image_urls.clear();
        c.payment_image_urls = vec![ImageUrl::parse("https://xxxx").unwrap()];
        assert_ne!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn net_of_refunds_scales_the_total_with_the_payment() {
        let mut trade = sample_trade();
        trade.total_amount = Amount::parse("1000.00").unwrap();
        trade.payment_amount = Amount::parse("900.00").unwrap();
        let net = trade.net_of_refunds(Amount::parse("300.00").unwrap());
        assert_eq!(net.payment_amount, Amount::parse("600.00").unwrap());
        assert_eq!(net.total_amount, Amount::parse("666.66").unwrap());
        let none = trade.net_of_refunds(Amount::parse("900").unwrap());
        assert_eq!(none.payment_amount, Amount::ZERO);
        assert_eq!(none.total_amount, Amount::ZERO);
        assert_eq!(trade.net_of_refunds(Amount::ZERO), trade);
    }

    #[test]
    fn image_urls() {
        assert!(ImageUrl::parse("https://xxxx").is_ok());
        assert!(ImageUrl::parse("HTTP://EXAMPLE.COM/a.png").is_ok());
        for raw in [
            "",
            "ftp://x",
            "https://",
            "xxxx",
            "https://a b",
            "javascript:alert(1)",
        ] {
            assert!(ImageUrl::parse(raw).is_err(), "{raw:?} should be rejected");
        }
        let long = format!("https://{}", "a".repeat(ImageUrl::LEN_MAX));
        assert!(ImageUrl::parse(&long).is_err());
    }

    #[test]
    fn rfc3339_times() {
        assert!(parse_rfc3339("2023-01-20T10:00:00+08:00").is_ok());
        assert!(parse_rfc3339("2023-01-20T02:00:00Z").is_ok());
        for raw in [
            "2023-01-20 10:00:00",
            "2023-01-20",
            "2023-02-30T10:00:00+08:00",
            "",
        ] {
            assert!(parse_rfc3339(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn free_text_is_bounded() {
        assert_eq!(parse_free_text("", 4).unwrap(), "");
        assert!(parse_free_text("abcde", 4).is_err());
        assert_eq!(parse_free_text("a\tb\n", 8).unwrap(), "a\tb\n");
        assert_eq!(
            parse_free_text("a\u{0}", 8).unwrap_err(),
            "must not contain control characters (tabs and line breaks may)"
        );
    }
}
