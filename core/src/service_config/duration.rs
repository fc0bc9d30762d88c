//! Durations in protobuf's JSON form: a decimal number of seconds with an `s`, as `"10s"`,
//! `"0.5s"` or `"1.000340012s"`.
//!
//! Up to nine fractional digits (nanoseconds) are taken; either the whole or the fractional part
//! may be left out (`".5s"`, `"3.s"`), not both. Every duration in a service config is a length
//! of time, so a negative one is refused rather than read as zero, and so is one longer than
//! protobuf's largest (315,576,000,000 s, about 10,000 years).

use std::fmt;
use std::time::Duration;

/// protobuf's `google.protobuf.Duration` holds at most this many seconds.
pub(crate) const MAX_SECONDS: u64 = 315_576_000_000;

/// Why a string is not a duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DurationProblem {
    /// It does not end in `s`.
    NoUnit,
    /// It starts with `-`.
    Negative,
    /// It is not digits with at most one `.` (or has none at all).
    Malformed,
    /// More than nine digits after the point.
    TooPrecise,
    /// More than protobuf's largest duration.
    TooLong,
}

impl fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationProblem::NoUnit => "a duration must end in \"s\", as in \"1.5s\"",
            DurationProblem::Negative => "a duration must not be negative",
            DurationProblem::Malformed => {
                "a duration must be a decimal number of seconds, as in \"1.5s\""
            }
            DurationProblem::TooPrecise => {
                "a duration has at most 9 digits after the point (nanoseconds)"
            }
            DurationProblem::TooLong => "a duration is at most 315576000000s",
        })
    }
}

/// Reads `text` as a protobuf JSON duration.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationProblem> {
    let number = text.strip_suffix('s').ok_or(DurationProblem::NoUnit)?;
    if number.starts_with('-') {
        return Err(DurationProblem::Negative);
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(DurationProblem::Malformed);
    }
    if fraction.len() > 9 {
        return Err(DurationProblem::TooPrecise);
    }
    // Leading zeros are harmless; anything with more significant digits than the maximum is
    // too long without parsing it.
    let significant = whole.trim_start_matches('0');
    if significant.len() > 12 {
        return Err(DurationProblem::TooLong);
    }
    let seconds: u64 = if significant.is_empty() {
        0
    } else {
        significant
            .parse()
            .map_err(|_| DurationProblem::Malformed)?
    };
    let mut nanos: u32 = 0;
    for position in 0..9 {
        let digit = fraction.as_bytes().get(position).map_or(0, |b| b - b'0');
        nanos = nanos * 10 + u32::from(digit);
    }
    if seconds > MAX_SECONDS || (seconds == MAX_SECONDS && nanos > 0) {
        return Err(DurationProblem::TooLong);
    }
    Ok(Duration::new(seconds, nanos))
}

/// Writes `duration` the way [`parse_duration`] reads it: seconds, then 3, 6 or 9 fractional
/// digits as needed, then `s`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let nanos = duration.subsec_nanos();
    if nanos == 0 {
        format!("{seconds}s")
    } else if nanos % 1_000_000 == 0 {
        format!("{seconds}.{:03}s", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{seconds}.{:06}s", nanos / 1_000)
    } else {
        format!("{seconds}.{nanos:09}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_seconds_and_up_to_nine_fractional_digits() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("1.000340012s"),
            Ok(Duration::new(1, 340_012))
        );
        assert_eq!(parse_duration(".25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3.s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("000012s"), Ok(Duration::from_secs(12)));
        assert_eq!(
            parse_duration("315576000000s"),
            Ok(Duration::from_secs(MAX_SECONDS))
        );
    }

    #[test]
    fn refuses_what_protobuf_refuses() {
        assert_eq!(parse_duration("10"), Err(DurationProblem::NoUnit));
        assert_eq!(parse_duration("10ms"), Err(DurationProblem::Malformed));
        assert_eq!(parse_duration("-1s"), Err(DurationProblem::Negative));
        assert_eq!(parse_duration("s"), Err(DurationProblem::Malformed));
        assert_eq!(parse_duration(".s"), Err(DurationProblem::Malformed));
        assert_eq!(parse_duration("+1s"), Err(DurationProblem::Malformed));
        assert_eq!(parse_duration("1.2.3s"), Err(DurationProblem::Malformed));
        assert_eq!(parse_duration("1e3s"), Err(DurationProblem::Malformed));
        assert_eq!(
            parse_duration("0.0000000001s"),
            Err(DurationProblem::TooPrecise)
        );
        assert_eq!(
            parse_duration("315576000000.1s"),
            Err(DurationProblem::TooLong)
        );
        assert_eq!(
            parse_duration("99999999999999999999999s"),
            Err(DurationProblem::TooLong)
        );
    }

    #[test]
    fn formatting_reads_back_the_same() {
        for duration in [
            Duration::ZERO,
            Duration::from_secs(7),
            Duration::from_millis(1500),
            Duration::from_micros(2_000_001),
            Duration::new(1, 340_012),
        ] {
            assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.500s");
    }
}
