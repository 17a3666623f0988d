//! Durations people type, in one grammar for every frontend (`/silence`, `/audit since`,
//! `/logs since`, the CLI's `--since`): one or more `<number><unit>` parts (`90s`, `30m`,
//! `1h30m`), the unit s, m, h or d in either case, whitespace around the whole ignored. Each
//! caller applies its own bounds ([`parse_age`] here; `/silence` its own). A leaf: it imports
//! nothing from the crate.

use std::time::Duration;

/// What is wrong with a typed duration, for the caller to word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("the duration is empty")]
    Empty,
    /// A part does not start with a number (`h`, `-5m`, `2h;`).
    #[error("not a duration")]
    NotADuration,
    /// A number without a unit (`30`).
    #[error("no unit")]
    NoUnit,
    /// A unit other than s, m, h or d (`5w`, `1.5h`, `5 m`).
    #[error("the unit must be s, m, h or d")]
    BadUnit,
    /// More seconds than fit in 64 bits.
    #[error("too long")]
    TooLong,
}

/// Parses a duration (see the module's grammar). Zero is a duration: bounds are the caller's.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::NotADuration);
        }
        let (num, after) = rest.split_at(digits);
        let mut chars = after.chars();
        let unit = chars.next().ok_or(DurationError::NoUnit)?;
        let secs_per = match unit.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(DurationError::BadUnit),
        };
        let n: u64 = num.parse().map_err(|_| DurationError::TooLong)?;
        total = n
            .checked_mul(secs_per)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::TooLong)?;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(total))
}

/// The longest age [`parse_age`] accepts: ten years.
pub const MAX_AGE: Duration = Duration::from_secs(3_650 * 86_400);

/// An age (`30m`, `12h`, `7d`, `1h30m`) in milliseconds, at most [`MAX_AGE`]: how far back
/// `/audit since`, `/logs since` and the CLI's `--since` look. The error is for the person.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let age = parse_duration(s).map_err(|e| match e {
        DurationError::Empty | DurationError::NotADuration => {
            format!("`{s}`: expected a number and a unit, like 30m, 12h or 7d")
        }
        DurationError::NoUnit | DurationError::BadUnit => {
            format!("`{s}`: the unit must be s, m, h or d")
        }
        DurationError::TooLong => format!("`{s}` is too long ago"),
    })?;
    if age > MAX_AGE {
        return Err(format!("`{s}` is too long ago"));
    }
    i64::try_from(age.as_millis()).map_err(|_| format!("`{s}` is too long ago"))
}

#[cfg(test)]
mod tests;
