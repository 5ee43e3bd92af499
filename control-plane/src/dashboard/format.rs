//! How values read on screen: money exact from integer micro-USD, counts with separators,
//! durations in ms, instants in UTC.

use chrono::{DateTime, Utc};

/// Integer micro-USD as dollars, exact: at least 2 decimals, at most 6, trailing zeros trimmed.
pub fn usd(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let whole = m / 1_000_000;
    let frac = format!("{:06}", m % 1_000_000);
    let trimmed = frac.trim_end_matches('0');
    let frac = if trimmed.len() < 2 {
        &frac[..2]
    } else {
        trimmed
    };
    format!("{sign}${}.{frac}", count(whole as i64))
}

/// A count with thin thousands separators (`12,345`).
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as milliseconds with one decimal under 100 ms.
pub fn ms(us: i64) -> String {
    if us < 100_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{} ms", count(us / 1000))
    }
}

pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Unix milliseconds as an instant.
pub fn when_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| when(&t))
        .unwrap_or_else(|| ms.to_string())
}

/// `part` of `whole` as a percentage with one decimal (0 when `whole` is 0).
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "0%".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact_and_counts_are_grouped() {
        assert_eq!(usd(0), "$0.00");
        assert_eq!(usd(1), "$0.000001");
        assert_eq!(usd(1_500_000), "$1.50");
        assert_eq!(usd(1_234_567_890), "$1,234.56789");
        assert_eq!(usd(-250_000), "-$0.25");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1_234_567), "-1,234,567");
        assert_eq!(ms(1_500), "1.5 ms");
        assert_eq!(ms(1_500_000), "1,500 ms");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "0%");
    }
}
