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
    pub fn fingerprint(&self) -> Fingerprint {
        let mut fields = FingerprintHasher::default();
        fields.text("vip_accountno", self.vip_accountno.as_str());
        fields.text("out_trade_no", self.out_trade_no.as_str());
        fields.text("store_code", self.store_code.as_str());
        fields.text("invoice_id", self.invoice_id.as_str());
        fields.shown("total_amount", self.total_amount.to_minor());
        fields.shown("payment_amount", self.payment_amount.to_minor());
        fields.text("payment_method", self.payment_method.as_str());
        fields.text("currency", self.currency.as_str());
        fields.instant("sales_time", &self.sales_time);
        fields.instant("submit_time", &self.submit_time);
        fields.instant("approval_time", &self.approval_time);
        fields.shown("burn_point", self.burn_point);
        fields.text("resource", &self.resource);
        fields.text("remark", &self.remark);
        for url in &self.receipt_image_urls {
            fields.text("receipt_image_url", url.as_str());
        }
        for url in &self.payment_image_urls {
            fields.text("payment_image_url", url.as_str());
        }
        // Added later: a trade without them hashes as it always did.
        for line in &self.lines {
            fields.text("line.sku", line.sku.as_str());
            fields.text("line.name", &line.name);
            fields.shown("line.quantity", line.quantity);
            fields.shown("line.amount", line.amount.to_minor());
        }
        if self.post_fee != Amount::ZERO {
            fields.shown("post_fee", self.post_fee.to_minor());
        }
        if self.discount != Amount::ZERO {
            fields.shown("discount", self.discount.to_minor());
        }
        fields.finish()
    }
}

/// A trade's fingerprint (`Trade::fingerprint`): its SHA-256 digest in lower-case hex, as the
/// ledger stores it. Held inline: a copy costs no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 64]);

impl Fingerprint {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::ops::Deref for Fingerprint {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Trade::fingerprint`'s hash, fed field by field: each field's name, a zero byte, the length
/// of its value as 8 little-endian bytes, then the value as text. Stored fingerprints depend
/// on every byte of it. Values that are not text are written into one reused buffer: a
/// fingerprint allocates once (a `String` a value before).
#[derive(Default)]
struct FingerprintHasher {
    hasher: Sha256,
    shown: String,
}

impl FingerprintHasher {
    fn text(&mut self, name: &str, value: &str) {
        Self::field(&mut self.hasher, name, value);
    }

    /// A value as its `Display` writes it.
    fn shown(&mut self, name: &str, value: impl std::fmt::Display) {
        use std::fmt::Write;
        self.shown.clear();
        write!(self.shown, "{value}").expect("a String takes any text");
        Self::field(&mut self.hasher, name, &self.shown);
    }

    /// An instant as `DateTime::to_rfc3339` writes it.
    fn instant(&mut self, name: &str, value: &DateTime<FixedOffset>) {
        self.shown.clear();
        write_rfc3339(&mut self.shown, value);
        Self::field(&mut self.hasher, name, &self.shown);
    }

    fn field(hasher: &mut Sha256, name: &str, value: &str) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.len().to_le_bytes());
        hasher.update(value.as_bytes());
    }

    /// The digest in lower-case hex.
    fn finish(self) -> Fingerprint {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let digest = self.hasher.finalize();
        let mut hex = [0; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        Fingerprint(hex)
    }
}

/// Appends `value` to `out` exactly as `DateTime::to_rfc3339` writes it (seconds with as many
/// fraction digits as they need, in threes; the offset as `+hh:mm`), without allocating. What
/// an RFC 3339 request cannot hold (a year past 9999, a leap second, an offset with seconds)
/// is left to chrono.
fn write_rfc3339(out: &mut String, value: &DateTime<FixedOffset>) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    let local = value.naive_local();
    let nano = local.nanosecond();
    let offset_s = value.offset().local_minus_utc();
    if !(0..=9999).contains(&local.year()) || nano >= 1_000_000_000 || offset_s % 60 != 0 {
        out.push_str(&value.to_rfc3339());
        return;
    }
    let written = (|| {
        write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second()
        )?;
        match nano {
            0 => {}
            _ if nano.is_multiple_of(1_000_000) => write!(out, ".{:03}", nano / 1_000_000)?,
            _ if nano.is_multiple_of(1_000) => write!(out, ".{:06}", nano / 1_000)?,
            _ => write!(out, ".{nano:09}")?,
        }
        let sign = if offset_s < 0 { '-' } else { '+' };
        let offset_min = offset_s.unsigned_abs() / 60;
        write!(out, "{sign}{:02}:{:02}", offset_min / 60, offset_min % 60)
    })();
    written.expect("a String takes any text");
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

    /// `Trade::fingerprint` as first written (each value formatted into a `String` of its
    /// own): stored fingerprints were made by it, so today's must agree byte for byte.
    fn fingerprint_as_first_written(trade: &Trade) -> String {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.len().to_le_bytes());
            hasher.update(value.as_bytes());
        };
        field("vip_accountno", trade.vip_accountno.as_str());
        field("out_trade_no", trade.out_trade_no.as_str());
        field("store_code", trade.store_code.as_str());
        field("invoice_id", trade.invoice_id.as_str());
        field("total_amount", &trade.total_amount.to_minor().to_string());
        field(
            "payment_amount",
            &trade.payment_amount.to_minor().to_string(),
        );
        field("payment_method", trade.payment_method.as_str());
        field("currency", trade.currency.as_str());
        field("sales_time", &trade.sales_time.to_rfc3339());
        field("submit_time", &trade.submit_time.to_rfc3339());
        field("approval_time", &trade.approval_time.to_rfc3339());
        field("burn_point", &trade.burn_point.to_string());
        field("resource", &trade.resource);
        field("remark", &trade.remark);
        for url in &trade.receipt_image_urls {
            field("receipt_image_url", url.as_str());
        }
        for url in &trade.payment_image_urls {
            field("payment_image_url", url.as_str());
        }
        for line in &trade.lines {
            field("line.sku", line.sku.as_str());
            field("line.name", &line.name);
            field("line.quantity", &line.quantity.to_string());
            field("line.amount", &line.amount.to_minor().to_string());
        }
        if trade.post_fee != Amount::ZERO {
            field("post_fee", &trade.post_fee.to_minor().to_string());
        }
        if trade.discount != Amount::ZERO {
            field("discount", &trade.discount.to_minor().to_string());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn the_seed_trade_keeps_its_fingerprint() {
        let trade = sample_trade();
        assert_eq!(
            trade.fingerprint().as_str(),
            fingerprint_as_first_written(&trade)
        );
        assert_eq!(
            trade.fingerprint().as_str(),
            "fdf2764a80af9196b2fb1abd1ca6948c6d8d593509e47e24c8cb9eac79d8099d"
        );
    }

    mod fingerprints {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn fingerprints_agree_with_the_first_ones(
                minor in prop::collection::vec(0i64..=99_999_999_999, 5),
                // Seconds up to the end of year 9999 and past it; nanoseconds past 10^9 make leap
                // seconds; offsets in seconds, whole minutes or not.
                secs in prop::collection::vec(-62_135_596_800i64..=260_000_000_000, 3),
                nanos in prop::collection::vec(prop_oneof![
                    Just(0u32),
                    (0u32..1_000).prop_map(|n| n * 1_000_000),
                    (0u32..1_000_000).prop_map(|n| n * 1_000),
                    0u32..2_000_000_000,
                ], 3),
                offsets_s in prop::collection::vec(prop_oneof![
                    (-1439i32..=1439).prop_map(|m| m * 60),
                    -86_399i32..=86_399,
                ], 3),
                burn in 0i64..=1_000_000,
                quantity in 1i64..=1_000_000,
                lines in 0usize..3,
            ) {
                let mut trade = sample_trade();
                let amount = |m: i64| Amount::from_minor(m).unwrap();
                trade.total_amount = amount(minor[0]);
                trade.payment_amount = amount(minor[1]);
                trade.post_fee = amount(minor[2] % 3 * minor[2]);
                trade.discount = amount(minor[3] % 2 * minor[3]);
                trade.burn_point = Points::new(burn).unwrap();
                let time = |i: usize| {
                    let offset = FixedOffset::east_opt(offsets_s[i]).unwrap();
                    // A leap second only at the end of a minute.
                    let secs = match nanos[i] >= 1_000_000_000 {
                        true => secs[i] - secs[i].rem_euclid(60) + 59,
                        false => secs[i],
                    };
                    DateTime::from_timestamp(secs, nanos[i]).map(|t| t.with_timezone(&offset))
                };
                let (Some(sales), Some(submit), Some(approval)) = (time(0), time(1), time(2)) else {
                    return Ok(());
                };
                trade.sales_time = sales;
                trade.submit_time = submit;
                trade.approval_time = approval;
                for _ in 0..lines {
                    let sku = Sku::parse("SKU-1").unwrap();
                    let line = TradeLine::new(sku, "tea", quantity, amount(minor[4])).unwrap();
                    trade.lines.push(line);
                }
                let fingerprint = trade.fingerprint();
                prop_assert_eq!(fingerprint.as_str(), fingerprint_as_first_written(&trade));
            }
        }
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
