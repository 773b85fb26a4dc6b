//! Expiry arithmetic. Dates are calendar dates in the program's time zone; a grant is usable
//! through the whole of its expiry date and stops at the next local midnight.

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, LocalResult, Months, NaiveDate, TimeZone, Utc,
};
use std::fmt;
use std::str::FromStr;

/// The program's time zone: a fixed offset such as `+08:00`, or an IANA name such as
/// `Asia/Hong_Kong`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramTz {
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

impl ProgramTz {
    pub const UTC: Self = Self::Fixed(FixedOffset::east_opt(0).expect("0 is an offset"));

    pub fn parse(raw: &str) -> Result<Self, String> {
        let text = raw.trim();
        if let Some(offset) = parse_offset(text) {
            return Ok(Self::Fixed(offset));
        }
        chrono_tz::Tz::from_str(text).map(Self::Named).map_err(|_| {
            format!("must be an offset such as \"+08:00\" or a zone such as \"Asia/Hong_Kong\", got {raw:?}")
        })
    }

    /// The calendar date of an instant, in this zone.
    pub fn local_date(&self, instant: DateTime<Utc>) -> NaiveDate {
        match self {
            Self::Fixed(tz) => instant.with_timezone(tz).date_naive(),
            Self::Named(tz) => instant.with_timezone(tz).date_naive(),
        }
    }

    /// The local wall-clock date and time of an instant in this zone.
    pub fn local_time(&self, instant: DateTime<Utc>) -> chrono::NaiveDateTime {
        match self {
            Self::Fixed(tz) => instant.with_timezone(tz).naive_local(),
            Self::Named(tz) => instant.with_timezone(tz).naive_local(),
        }
    }

    /// An instant as people in the program read it: local date and time with the offset,
    /// `2023-01-20 10:00:00 +08:00`.
    pub fn readable(&self, instant: DateTime<Utc>) -> String {
        const FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";
        match self {
            Self::Fixed(tz) => instant.with_timezone(tz).format(FORMAT).to_string(),
            Self::Named(tz) => instant.with_timezone(tz).format(FORMAT).to_string(),
        }
    }

    /// The first instant of a calendar date in this zone (local midnight, or the first instant
    /// after a daylight-saving gap that swallows midnight).
    pub fn start_of_day(&self, date: NaiveDate) -> DateTime<Utc> {
        let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
        let resolve = |result: LocalResult<DateTime<Utc>>| match result {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
            LocalResult::None => None,
        };
        // A gap is at most a few hours; step forward until the local time exists.
        (0..=24)
            .find_map(|hour| {
                let local = midnight + Duration::hours(hour);
                match self {
                    Self::Fixed(tz) => resolve(tz.from_local_datetime(&local).map(|t| t.to_utc())),
                    Self::Named(tz) => resolve(tz.from_local_datetime(&local).map(|t| t.to_utc())),
                }
            })
            .expect("every calendar day has a first instant")
    }

    /// A wall-clock time in this zone as an instant with its offset: `None` for a time a
    /// daylight-saving gap skips; the earlier of two in an overlap.
    pub fn from_local(&self, local: chrono::NaiveDateTime) -> Option<DateTime<FixedOffset>> {
        match self {
            Self::Fixed(tz) => tz.from_local_datetime(&local).earliest(),
            Self::Named(tz) => tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.fixed_offset()),
        }
    }

    /// The instant a grant expiring on `date` stops being available: the next local midnight.
    pub fn end_of_date(&self, date: NaiveDate) -> DateTime<Utc> {
        self.start_of_day(
            date.succ_opt()
                .expect("expiry dates are far from the calendar's end"),
        )
    }
}

impl fmt::Display for ProgramTz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(tz) => write!(f, "{tz}"),
            Self::Named(tz) => write!(f, "{}", tz.name()),
        }
    }
}

fn parse_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" || text == "UTC" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// How a grant expires, as the wire contract names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpireType {
    /// The program's KDP policy.
    Kdp,
    /// The end of a calendar quarter.
    Quarter,
}

impl ExpireType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kdp => "KDP",
            Self::Quarter => "QUARTER",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "KDP" => Ok(Self::Kdp),
            "QUARTER" => Ok(Self::Quarter),
            other => Err(format!("must be \"KDP\" or \"QUARTER\", got {other:?}")),
        }
    }
}

/// The last day of the quarter that holds `date`, moved `quarters_ahead` quarters on.
pub fn quarter_end(date: NaiveDate, quarters_ahead: u32) -> NaiveDate {
    let quarter_start_month = (date.month0() / 3) * 3 + 1;
    let quarter_start = NaiveDate::from_ymd_opt(date.year(), quarter_start_month, 1)
        .expect("the first of a month exists");
    let next_quarter_start = quarter_start
        .checked_add_months(Months::new(3 * (quarters_ahead + 1)))
        .expect("quarter ends stay within the calendar");
    next_quarter_start
        .pred_opt()
        .expect("a day before a quarter start exists")
}

/// The last day of the month `months_ahead` months after the month that holds `date`.
pub fn month_end(date: NaiveDate, months_ahead: u32) -> NaiveDate {
    let month_start = date.with_day(1).expect("day 1 exists");
    month_start
        .checked_add_months(Months::new(months_ahead + 1))
        .and_then(|d| d.pred_opt())
        .expect("month ends stay within the calendar")
}

/// The program's KDP expiry policy. Each variant gives the last calendar day a grant is usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdpPolicy {
    /// The same calendar day `months` months later (the month's last day where that day does
    /// not exist, e.g. 31 January + 1 month = 28/29 February).
    RollingMonths(u32),
    /// The last day of the month `months` months after the earning month (0: the same month).
    EndOfNthMonth(u32),
    /// 31 December of the year `years` years after the earning year (0: the same year).
    EndOfNthYear(u32),
    /// KDP points never expire.
    Never,
}

impl KdpPolicy {
    /// Policies reach at most this far, so that every expiry date stays a real date.
    pub const MONTHS_MAX: u32 = 1200;
    pub const YEARS_MAX: u32 = 100;

    /// The KDP expiry date of points earned on `earned_on` (a local date), or `None` for never.
    pub fn expiry_date(self, earned_on: NaiveDate) -> Option<NaiveDate> {
        match self {
            Self::RollingMonths(months) => Some(
                earned_on
                    .checked_add_months(Months::new(months))
                    .expect("bounded by MONTHS_MAX"),
            ),
            Self::EndOfNthMonth(months) => Some(month_end(earned_on, months)),
            Self::EndOfNthYear(years) => {
                NaiveDate::from_ymd_opt(earned_on.year() + years as i32, 12, 31)
            }
            Self::Never => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn quarter_ends() {
        assert_eq!(quarter_end(date(2023, 1, 20), 0), date(2023, 3, 31));
        assert_eq!(quarter_end(date(2023, 3, 31), 0), date(2023, 3, 31));
        assert_eq!(quarter_end(date(2023, 4, 1), 0), date(2023, 6, 30));
        assert_eq!(quarter_end(date(2023, 8, 15), 0), date(2023, 9, 30));
        assert_eq!(quarter_end(date(2023, 12, 31), 0), date(2023, 12, 31));
        assert_eq!(quarter_end(date(2023, 1, 20), 1), date(2023, 6, 30));
        assert_eq!(quarter_end(date(2023, 11, 2), 1), date(2024, 3, 31));
        assert_eq!(quarter_end(date(2023, 11, 2), 4), date(2024, 12, 31));
    }

    #[test]
    fn local_dates_follow_the_program_zone() {
        let hk = ProgramTz::parse("+08:00").unwrap();
        // The last second of Q1 in Hong Kong time.
        assert_eq!(
            hk.local_date(utc("2023-03-31T23:59:59+08:00")),
            date(2023, 3, 31)
        );
        // 16:00 UTC on 31 March is already 1 April in +08:00.
        assert_eq!(hk.local_date(utc("2023-03-31T16:00:00Z")), date(2023, 4, 1));
        assert_eq!(
            hk.local_date(utc("2023-03-31T15:59:59Z")),
            date(2023, 3, 31)
        );
        let named = ProgramTz::parse("Asia/Hong_Kong").unwrap();
        assert_eq!(
            named.local_date(utc("2023-03-31T16:00:00Z")),
            date(2023, 4, 1)
        );
    }

    #[test]
    fn end_of_date_is_the_next_local_midnight() {
        let hk = ProgramTz::parse("+08:00").unwrap();
        assert_eq!(
            hk.end_of_date(date(2023, 3, 31)),
            utc("2023-03-31T16:00:00Z")
        );
        let utc_tz = ProgramTz::parse("Z").unwrap();
        assert_eq!(
            utc_tz.end_of_date(date(2023, 3, 31)),
            utc("2023-04-01T00:00:00Z")
        );
    }

    #[test]
    fn start_of_day_skips_a_dst_gap_at_midnight() {
        // Santiago moved clocks from 00:00 to 01:00 on 2022-09-11: midnight does not exist.
        let tz = ProgramTz::parse("America/Santiago").unwrap();
        assert_eq!(
            tz.start_of_day(date(2022, 9, 11)),
            utc("2022-09-11T04:00:00Z")
        );
    }

    #[test]
    fn time_zone_rejections() {
        for raw in [
            "",
            "8",
            "+8:00",
            "+15:00",
            "+08:60",
            "Mars/Olympus",
            "08:00",
        ] {
            assert!(ProgramTz::parse(raw).is_err(), "{raw:?} should be rejected");
        }
        assert_eq!(ProgramTz::parse("-03:30").unwrap().to_string(), "-03:30");
    }

    #[test]
    fn kdp_policies() {
        let earned = date(2023, 1, 31);
        assert_eq!(
            KdpPolicy::RollingMonths(1).expiry_date(earned),
            Some(date(2023, 2, 28))
        );
        assert_eq!(
            KdpPolicy::RollingMonths(12).expiry_date(earned),
            Some(date(2024, 1, 31))
        );
        assert_eq!(
            KdpPolicy::EndOfNthMonth(0).expiry_date(date(2024, 2, 3)),
            Some(date(2024, 2, 29))
        );
        assert_eq!(
            KdpPolicy::EndOfNthMonth(12).expiry_date(earned),
            Some(date(2024, 1, 31))
        );
        assert_eq!(
            KdpPolicy::EndOfNthYear(0).expiry_date(earned),
            Some(date(2023, 12, 31))
        );
        assert_eq!(
            KdpPolicy::EndOfNthYear(2).expiry_date(earned),
            Some(date(2025, 12, 31))
        );
        assert_eq!(KdpPolicy::Never.expiry_date(earned), None);
    }

    #[test]
    fn expire_types() {
        assert_eq!(ExpireType::parse("KDP").unwrap(), ExpireType::Kdp);
        assert_eq!(ExpireType::parse("QUARTER").unwrap().as_str(), "QUARTER");
        assert!(ExpireType::parse("quarter").is_err());
    }
}
