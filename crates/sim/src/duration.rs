//! Durations as people type them on a command line or in a fault string: `500ms`, `2s`,
//! `1.5s`, `3m`, `1h`, or `0`. One parser, so `--dms-delay`, `--faults delay=…` and the
//! control API all accept the same spellings.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number with a unit, e.g. 250ms, 2s, 1.5s, 3m, 1h")]
pub struct DurationError(pub String);

/// Parses `text` into a [`Duration`]. A bare `0` is accepted; any other number needs a unit
/// (`ms`, `s`, `m`, `h`), because a unitless `5` is too easy to misread.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let error = || DurationError(text.to_owned());
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(error)?;
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| error())?;
    let nanos_per_unit = match unit.trim() {
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return Err(error()),
    };
    // Rounding to whole nanoseconds keeps `0.5ms` exactly 500µs rather than 499.999…µs.
    let nanos = (number * nanos_per_unit).round();
    if !nanos.is_finite() || nanos >= u64::MAX as f64 {
        return Err(error());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// Writes a duration back in the form [`parse_duration`] reads: milliseconds below a second,
/// seconds above, with no trailing zeros.
pub fn format_duration(duration: Duration) -> String {
    fn decimals(whole: u128, fraction: u128, digits: usize) -> String {
        let text = format!("{whole}.{fraction:0digits$}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
    let nanos = duration.as_nanos();
    if nanos == 0 {
        "0".to_owned()
    } else if nanos < 1_000_000_000 {
        format!("{}ms", decimals(nanos / 1_000_000, nanos % 1_000_000, 6))
    } else {
        format!(
            "{}s",
            decimals(nanos / 1_000_000_000, nanos % 1_000_000_000, 9)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit() {
        for (text, expected) in [
            ("0", Duration::ZERO),
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("1.5s", Duration::from_millis(1500)),
            (" 3m ", Duration::from_secs(180)),
            ("1h", Duration::from_secs(3600)),
            ("0.5ms", Duration::from_micros(500)),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in ["", "5", "ms", "1.2.3s", "2 days", "-1s", "1e3s", "fast"] {
            assert!(parse_duration(text).is_err(), "{text} should not parse");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for duration in [
            Duration::ZERO,
            Duration::from_millis(7),
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_micros(2500),
            Duration::from_secs(5),
        ] {
            let text = format_duration(duration);
            assert_eq!(parse_duration(&text), Ok(duration), "{text}");
        }
    }
}
