//! Money: exact decimals in memory (`rust_decimal`), integer minor units in the database.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// A non-negative amount with at most `Amount::SCALE_MAX` decimal places and at most
/// `Amount::MAX` in value. Stored as integer minor units (hundredths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(Decimal);

impl Amount {
    pub const SCALE_MAX: u32 = 2;
    /// Ten billion: no receipt comes near it, and every product with a rate stays exact.
    pub const MAX: Decimal = Decimal::from_parts(1_410_065_408, 2, 0, false, 0);
    pub const ZERO: Amount = Amount(Decimal::ZERO);

    /// Parses an amount from its decimal text, e.g. `"1000.00"`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        let ok_chars = !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
        let value = if ok_chars {
            Decimal::from_str(text).ok()
        } else {
            None
        }
        .ok_or_else(|| format!("must be a decimal amount such as \"1000.00\", got {raw:?}"))?;
        Self::new(value)
    }

    pub fn new(value: Decimal) -> Result<Self, String> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(format!("must not be negative, got {value}"));
        }
        if value.normalize().scale() > Self::SCALE_MAX {
            return Err(format!(
                "must have at most {} decimal places, got {value}",
                Self::SCALE_MAX
            ));
        }
        if value > Self::MAX {
            return Err(format!("must be at most {}, got {value}", Self::MAX));
        }
        Ok(Self(value.abs()))
    }

    /// From integer minor units (hundredths), as the ledger stores amounts.
    pub fn from_minor(minor: i64) -> Result<Self, String> {
        Self::new(Decimal::new(minor, Self::SCALE_MAX))
    }

    /// In integer minor units (hundredths). Exact: the scale is bounded by construction.
    pub fn to_minor(self) -> i64 {
        let mut minor = self.0;
        minor.rescale(Self::SCALE_MAX);
        i64::try_from(minor.mantissa()).expect("an Amount is bounded by Amount::MAX")
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0;
        shown.rescale(Self::SCALE_MAX);
        write!(f, "{shown}")
    }
}

/// An ISO 4217 style currency code: three ASCII letters, kept upper case, held inline (no
/// allocation, and pricing reads it without following a pointer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        match <[u8; 3]>::try_from(text.as_bytes()) {
            Ok(code) if code.iter().all(u8::is_ascii_alphabetic) => {
                Ok(Self(code.map(|b| b.to_ascii_uppercase())))
            }
            _ => Err(format!(
                "must be a three-letter currency code such as \"HKD\", got {raw:?}"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a currency code is ASCII letters")
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CurrencyCode").field(&self.as_str()).finish()
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips_minor_units() {
        let amount = Amount::parse("1000.00").unwrap();
        assert_eq!(amount.to_minor(), 100_000);
        assert_eq!(Amount::from_minor(100_000).unwrap(), amount);
        assert_eq!(amount.to_string(), "1000.00");
        assert_eq!(Amount::parse("14.1").unwrap().to_minor(), 1_410);
        assert_eq!(Amount::parse("0").unwrap(), Amount::ZERO);
    }

    #[test]
    fn trailing_zeros_beyond_the_scale_are_fine() {
        assert_eq!(Amount::parse("1.2300").unwrap().to_minor(), 123);
    }

    #[test]
    fn rejects_more_than_two_decimal_places() {
        assert_eq!(
            Amount::parse("1.005").unwrap_err(),
            "must have at most 2 decimal places, got 1.005"
        );
    }

    #[test]
    fn rejects_negative() {
        assert_eq!(
            Amount::parse("-1.00").unwrap_err(),
            "must not be negative, got -1.00"
        );
    }

    #[test]
    fn rejects_non_numbers() {
        for raw in ["", "abc", "1e3", "1,000.00", " ", "NaN", "+5"] {
            assert!(Amount::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn rejects_above_max() {
        assert_eq!(Amount::MAX.to_string(), "10000000000");
        assert!(Amount::parse("10000000000.00").is_ok());
        assert!(Amount::parse("10000000000.01").is_err());
    }

    #[test]
    fn currency_codes() {
        assert_eq!(CurrencyCode::parse("hkd").unwrap().as_str(), "HKD");
        assert!(CurrencyCode::parse("HK").is_err());
        assert!(CurrencyCode::parse("HKDD").is_err());
        assert!(CurrencyCode::parse("H1D").is_err());
        // Three bytes, but not three letters.
        assert!(CurrencyCode::parse("ÅB").is_err());
        assert_eq!(CurrencyCode::parse(" usd ").unwrap().to_string(), "USD");
    }
}
