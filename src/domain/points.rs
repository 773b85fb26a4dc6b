//! Points are whole numbers. A `Points` value is never negative and never above `Points::MAX`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Points(i64);

impl Points {
    /// The most points one value may hold: far above any real grant, far below `i64::MAX`, so
    /// that sums of many grants cannot overflow.
    pub const MAX: i64 = 1_000_000_000_000;
    pub const ZERO: Points = Points(0);

    pub fn new(value: i64) -> Result<Self, String> {
        if value < 0 {
            return Err(format!("must not be negative, got {value}"));
        }
        if value > Self::MAX {
            return Err(format!("must be at most {}, got {value}", Self::MAX));
        }
        Ok(Self(value))
    }

    /// Parses a whole number of points from text such as `"250"`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value: i64 = raw
            .trim()
            .parse()
            .map_err(|_| format!("must be a whole number of points, got {raw:?}"))?;
        Self::new(value)
    }

    pub fn value(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Points {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zero_and_positive() {
        assert_eq!(Points::new(0).unwrap(), Points::ZERO);
        assert_eq!(Points::parse("250").unwrap().value(), 250);
    }

    #[test]
    fn rejects_negative() {
        assert_eq!(Points::new(-1).unwrap_err(), "must not be negative, got -1");
    }

    #[test]
    fn rejects_above_max() {
        assert!(Points::new(Points::MAX + 1).is_err());
    }

    #[test]
    fn rejects_non_integers() {
        assert_eq!(
            Points::parse("2.5").unwrap_err(),
            "must be a whole number of points, got \"2.5\""
        );
        assert!(Points::parse("abc").is_err());
        assert!(Points::parse("").is_err());
    }
}
