//! `INTERVAL '...' <unit>` literals in nanoseconds: window sizes, session
//! gaps, WATERMARK delays, EMIT EVERY periods.

use datafusion::sql::sqlparser::ast::{DateTimeField, Expr, Spanned, Value};

use crate::error::{PlanError, Result};

/// The length of an `INTERVAL '...' <unit>` literal in nanoseconds.
pub fn interval_nanos(expr: &Expr) -> Result<i64> {
    let invalid = || PlanError::invalid("expected an interval such as INTERVAL '2' SECOND").at(expr.span());
    let Expr::Interval(interval) = expr else {
        return Err(invalid());
    };
    let text = match interval.value.as_ref() {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(text) | Value::Number(text, _) => text.clone(),
            _ => return Err(invalid()),
        },
        _ => return Err(invalid()),
    };
    let (amount, unit) = match &interval.leading_field {
        Some(field) => (text.trim().to_string(), unit_nanos_of_field(field).ok_or_else(invalid)?),
        None => {
            let mut parts = text.split_whitespace();
            let amount = parts.next().ok_or_else(invalid)?.to_string();
            let unit = parts.next().and_then(unit_nanos_of_word).ok_or_else(invalid)?;
            if parts.next().is_some() {
                return Err(
                    PlanError::unsupported("compound intervals are not supported; use one unit").at(expr.span())
                );
            }
            (amount, unit)
        }
    };
    let amount: f64 = amount.parse().map_err(|_| invalid())?;
    let nanos = amount * unit as f64;
    if !nanos.is_finite() || nanos.abs() > i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(nanos.round() as i64)
}

const SECOND: i64 = 1_000_000_000;

fn unit_nanos_of_field(field: &DateTimeField) -> Option<i64> {
    Some(match field {
        DateTimeField::Nanosecond | DateTimeField::Nanoseconds => 1,
        DateTimeField::Microsecond | DateTimeField::Microseconds => 1_000,
        DateTimeField::Millisecond | DateTimeField::Milliseconds => 1_000_000,
        DateTimeField::Second | DateTimeField::Seconds => SECOND,
        DateTimeField::Minute | DateTimeField::Minutes => 60 * SECOND,
        DateTimeField::Hour | DateTimeField::Hours => 3600 * SECOND,
        DateTimeField::Day | DateTimeField::Days => 86_400 * SECOND,
        DateTimeField::Week(_) | DateTimeField::Weeks => 7 * 86_400 * SECOND,
        _ => return None,
    })
}

fn unit_nanos_of_word(word: &str) -> Option<i64> {
    Some(match word.to_ascii_lowercase().trim_end_matches('s') {
        "nanosecond" | "n" => 1,
        "microsecond" | "u" => 1_000,
        "millisecond" | "m" => 1_000_000,
        "second" | "sec" => SECOND,
        "minute" | "min" => 60 * SECOND,
        "hour" | "h" => 3600 * SECOND,
        "day" | "d" => 86_400 * SECOND,
        "week" | "w" => 7 * 86_400 * SECOND,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;
    use crate::dialect::SluiceDialect;

    fn interval(sql: &str) -> Result<i64> {
        let expr = Parser::new(&SluiceDialect::default()).try_with_sql(sql)?.parse_expr()?;
        interval_nanos(&expr)
    }

    #[test]
    fn intervals() {
        assert_eq!(interval("INTERVAL '2' SECOND").unwrap(), 2 * SECOND);
        assert_eq!(interval("INTERVAL '1.5' MINUTE").unwrap(), 90 * SECOND);
        assert_eq!(interval("INTERVAL '10 seconds'").unwrap(), 10 * SECOND);
        assert_eq!(interval("INTERVAL '250' MILLISECOND").unwrap(), SECOND / 4);
        assert!(interval("5").is_err());
    }
}
