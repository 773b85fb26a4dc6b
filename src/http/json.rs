//! Answers written by hand, byte for byte as serde_json writes them, where serde_json's call a
//! key and a text costs: a history page's hundreds of keys and texts, a balance's lots (a kept
//! page took 70 µs of server CPU with serde, 50 µs so). Each answer written so is checked
//! against serde_json's by a property test where it is written.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use serde::Serialize;

/// Appends `text` as a JSON string, as serde_json writes it: as it is when nothing in it needs
/// escaping (the ledger's own words and numbers, nearly always), through serde_json otherwise.
pub fn text(out: &mut Vec<u8>, text: &str) {
    match text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        true => {
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
        false => value(out, text),
    }
}

pub fn number(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends what serde_json writes for `v`.
pub fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    serde_json::to_writer(&mut *out, v).expect("JSON of owned data writes to memory")
}

/// Appends `at` as a JSON string, as `to_rfc3339_opts(format, true)` writes it.
pub fn instant(out: &mut Vec<u8>, at: DateTime<Utc>, format: SecondsFormat) {
    match instant_text(at, format) {
        Some((written, len)) => {
            out.push(b'"');
            out.extend_from_slice(&written[..len]);
            out.push(b'"');
        }
        None => text(out, &at.to_rfc3339_opts(format, true)),
    }
}

/// `at` as RFC 3339 in UTC to the second (`2026-12-05T06:22:09Z`) or the millisecond
/// (`2026-12-05T06:22:09.120Z`), chrono's `to_rfc3339_opts(format, true)` without its
/// allocation and formatting machinery; `None` (chrono's own text) for another format, a year
/// beyond four digits or a leap second.
fn instant_text(at: DateTime<Utc>, format: SecondsFormat) -> Option<([u8; 24], usize)> {
    let millis = match format {
        SecondsFormat::Secs => false,
        SecondsFormat::Millis => true,
        _ => return None,
    };
    let (date, time) = (at.date_naive(), at.time());
    let year = u32::try_from(date.year()).ok().filter(|y| *y <= 9999)?;
    let ms = Some(time.nanosecond() / 1_000_000).filter(|ms| *ms < 1000)?;
    let mut written = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, digits: usize, mut value: u32| {
        for i in (at..at + digits).rev() {
            written[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, date.month());
    put(8, 2, date.day());
    put(11, 2, time.hour());
    put(14, 2, time.minute());
    put(17, 2, time.second());
    match millis {
        true => {
            put(20, 3, ms);
            Some((written, 24))
        }
        false => {
            written[19] = b'Z';
            Some((written, 20))
        }
    }
}

/// An instant serialized as RFC 3339 in UTC to the millisecond, as `instant` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcMillis(pub DateTime<Utc>);

impl Serialize for UtcMillis {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match instant_text(self.0, SecondsFormat::Millis) {
            Some((written, len)) => serializer.serialize_str(
                std::str::from_utf8(&written[..len])
                    .map_err(<S::Error as serde::ser::Error>::custom)?,
            ),
            None => serializer.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true)),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(at: DateTime<Utc>, format: SecondsFormat) -> String {
        let mut out = Vec::new();
        instant(&mut out, at, format);
        String::from_utf8(out).unwrap()
    }

    fn chrono(at: DateTime<Utc>, format: SecondsFormat) -> String {
        format!("\"{}\"", at.to_rfc3339_opts(format, true))
    }

    /// Texts of every kind: codes, anything, and what needs escaping.
    pub fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_-]{0,12}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}é😀a]{0,6}"
        ]
    }

    proptest! {
        #[test]
        fn an_instant_is_written_as_chrono_writes_it(
            ms in -62_167_219_200_000i64..=253_402_300_799_999,
            format in prop_oneof![Just(SecondsFormat::Secs), Just(SecondsFormat::Millis)],
        ) {
            let at = DateTime::<Utc>::from_timestamp_millis(ms).unwrap();
            prop_assert_eq!(written(at, format), chrono(at, format));
            if format == SecondsFormat::Millis {
                prop_assert_eq!(serde_json::to_string(&UtcMillis(at)).unwrap(), chrono(at, format));
            }
        }

        #[test]
        fn a_text_is_written_as_serde_json_writes_it(t in any_text()) {
            let mut out = Vec::new();
            text(&mut out, &t);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&t).unwrap());
        }
    }

    #[test]
    fn years_beyond_four_digits_and_other_formats_are_written_by_chrono() {
        let beyond = [-62_167_219_200_001, 253_402_300_800_000]
            .map(|ms| DateTime::<Utc>::from_timestamp_millis(ms).unwrap());
        for at in beyond
            .into_iter()
            .chain([DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC])
        {
            for format in [SecondsFormat::Secs, SecondsFormat::Millis] {
                assert_eq!(written(at, format), chrono(at, format), "{at:?}");
            }
            assert_eq!(
                serde_json::to_string(&UtcMillis(at)).unwrap(),
                chrono(at, SecondsFormat::Millis)
            );
        }
        let at = DateTime::<Utc>::from_timestamp_millis(1_796_451_221_725).unwrap();
        assert_eq!(
            written(at, SecondsFormat::Millis),
            "\"2026-12-05T06:13:41.725Z\""
        );
        assert_eq!(written(at, SecondsFormat::Secs), "\"2026-12-05T06:13:41Z\"");
        assert_eq!(
            written(at, SecondsFormat::Micros),
            chrono(at, SecondsFormat::Micros)
        );
    }
}
