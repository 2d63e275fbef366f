//! Parsing `TIMESTAMP` (nanoseconds, no time zone) text fast, with exactly
//! the results of arrow's CSV and JSON readers.
//!
//! # Algorithm
//!
//! Arrow's readers parse each timestamp with `string_to_datetime`, which
//! builds chrono dates and applies a time zone: about a tenth of decoding
//! a Nexmark bid. Most files write one form, `YYYY-MM-DD[T ]HH:MM:SS` with
//! an optional fraction of 1 to 9 digits, so the fast path reads exactly
//! that: fixed-position digits, range checks, and the day number from the
//! days-from-civil formula (proleptic Gregorian, as chrono), computed once
//! for a run of rows with the same date. Anything else
//! (time zones, leap seconds, other layouts, years outside what
//! nanoseconds since 1970 hold, errors) goes to arrow's own parser, so the
//! result or error is arrow's whatever the input.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, TimestampNanosecondArray};
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The type the fast path parses.
pub const NANOS: DataType = DataType::Timestamp(TimeUnit::Nanosecond, None);

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Nanoseconds since 1970 of `text`, as arrow's readers parse it; `None`
/// where they would fail.
pub fn parse_nanos(text: &str) -> Option<i64> {
    canonical(text.as_bytes(), &mut None).or_else(|| string_to_timestamp_nanos(text).ok())
}

/// The strings of `column` as timestamps (nulls stay null); `None` if a
/// value does not parse.
pub fn parse_column(column: &StringArray) -> Option<ArrayRef> {
    let mut values = Vec::with_capacity(column.len());
    // Neighbouring rows mostly share their day: its number is kept.
    let mut last_day = None;
    for row in 0..column.len() {
        values.push(match column.is_null(row) {
            true => 0,
            false => {
                let text = column.value(row);
                canonical(text.as_bytes(), &mut last_day).or_else(|| string_to_timestamp_nanos(text).ok())?
            }
        });
    }
    Some(Arc::new(TimestampNanosecondArray::new(values.into(), column.nulls().cloned())))
}

/// A date (`YYYY-MM-DD`) and its days since 1970.
type Day = ([u8; 10], i64);

/// `YYYY-MM-DD[Tt ]HH:MM:SS[.F{1,9}]` with every field in range; `None`
/// for anything else. `last_day` is the day parsed before, if any; it is
/// reused when the date is the same and replaced otherwise.
fn canonical(bytes: &[u8], last_day: &mut Option<Day>) -> Option<i64> {
    if bytes.len() < 19 || bytes[13] != b':' || bytes[16] != b':' || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let fraction = match bytes.len() {
        19 => 0,
        20..=29 if bytes[19] == b'.' => {
            let digits = bytes.len() - 20;
            number(&bytes[20..])? * 10_i64.pow(9 - digits as u32)
        }
        _ => return None,
    };
    let (hour, minute, second) = (number(&bytes[11..13])?, number(&bytes[14..16])?, number(&bytes[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = match last_day {
        Some((date, days)) if bytes[..10] == *date => *days,
        _ => {
            let days = days_of(&bytes[..10])?;
            *last_day = Some((bytes[..10].try_into().ok()?, days));
            days
        }
    };
    let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second;
    Some(seconds * NANOS_PER_SECOND + fraction)
}

/// Days since 1970 of a valid `YYYY-MM-DD`.
fn days_of(date: &[u8]) -> Option<i64> {
    if date[4] != b'-' || date[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(&date[..4])?, number(&date[5..7])?, number(&date[8..10])?);
    // Nanoseconds since 1970 reach from 1677-09-21 to 2262-04-11: the
    // years at either end are left to arrow.
    let valid =
        (1678..=2261).contains(&year) && (1..=12).contains(&month) && (1..=days_in_month(year, month)).contains(&day);
    valid.then(|| days_from_civil(year, month, day))
}

/// The decimal number `digits` spell (all ASCII digits, at least one).
fn number(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0_i64, |value, digit| {
        let digit = digit.wrapping_sub(b'0');
        (digit < 10).then_some(value * 10 + i64::from(digit))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year-month-day` (Howard Hinnant's
/// `days_from_civil`: years counted from March, in 400-year eras).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(text: &str) -> Option<i64> {
        string_to_timestamp_nanos(text).ok()
    }

    #[test]
    fn agrees_with_arrow_on_every_day_and_many_times() {
        let mut checked = 0;
        for year in (1677..=2262).step_by(7).chain([1900, 2000, 2016, 2024, 2100]) {
            for month in 1..=12 {
                for day in [1, 15, 27, 28, 29, 30, 31] {
                    let date = format!("{year:04}-{month:02}-{day:02}");
                    for time in ["T00:00:00", " 23:59:59.999999999", "t08:58:35.0004", "T12:30:00.5"] {
                        let text = format!("{date}{time}");
                        assert_eq!(parse_nanos(&text), arrow(&text), "{text}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn unusual_forms_get_arrows_answer() {
        for text in [
            "2016-12-06T08:58:35.000400",
            "2016-12-06T08:58:35.",
            "2016-12-06T08:58:35.1234567891",
            "2016-12-06T08:58:60",
            "2016-12-06T24:00:00",
            "2016-02-30T00:00:00",
            "2016-12-06",
            "2016-12-06T08:58:35Z",
            "2016-12-06T08:58:35+01:00",
            "2016-12-06T085835",
            " 2016-12-06T08:58:35",
            "2016-12-06T08:58:35 ",
            "+016-12-06T08:58:35",
            "2016-1a-06T08:58:35",
            "1677-09-21T00:12:43.145224192",
            "1677-09-21T00:12:43.145224191",
            "2262-04-11T23:47:16.854775807",
            "2262-04-11T23:47:16.854775808",
            "",
            "not a time",
        ] {
            assert_eq!(parse_nanos(text), arrow(text), "{text:?}");
        }
        assert_eq!(canonical(b"2016-12-06T08:58:35.000400", &mut None), arrow("2016-12-06T08:58:35.000400"));
    }

    #[test]
    fn a_column_reuses_a_day_only_when_the_date_is_the_same() {
        let texts = ["2016-12-06T08:58:35", "2016-12-06 23:00:00.1", "2016-12-07T00:00:00", "2016-02-30T00:00:00"];
        let parsed = parse_column(&StringArray::from(texts[..3].to_vec())).unwrap();
        let parsed = parsed.as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        assert_eq!(parsed.iter().collect::<Vec<_>>(), texts[..3].iter().map(|text| arrow(text)).collect::<Vec<_>>());
        assert!(parse_column(&StringArray::from(vec![texts[0], texts[3]])).is_none());
    }

    #[test]
    fn columns_keep_their_nulls() {
        let strings = StringArray::from(vec![Some("1970-01-01T00:00:01"), None, Some("1970-01-01 00:00:00.5")]);
        let parsed = parse_column(&strings).unwrap();
        let parsed = parsed.as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
        assert_eq!(parsed.iter().collect::<Vec<_>>(), vec![Some(1_000_000_000), None, Some(500_000_000)]);
        assert!(parse_column(&StringArray::from(vec!["yesterday"])).is_none());
    }
}
