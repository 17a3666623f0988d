//! Unit tests of the duration grammar: every input `/silence`, `/audit since` and the CLI's
//! `--since` accepted before they shared it still parses to the same value.

use super::*;

#[test]
fn the_union_of_the_earlier_grammars_parses() {
    let ok = [
        // `/audit since` and the CLI: one part, lower-case unit.
        ("90s", 90),
        ("30m", 1800),
        ("12h", 43_200),
        ("7d", 7 * 86_400),
        ("0m", 0),
        // `/silence`: sums, either case, surrounding whitespace.
        ("1h30m", 5400),
        (" 7d ", 7 * 86_400),
        ("2H", 7200),
        ("0s0m", 0),
    ];
    for (input, secs) in ok {
        assert_eq!(
            parse_duration(input),
            Ok(Duration::from_secs(secs)),
            "{input}"
        );
    }
}

#[test]
fn what_is_wrong_is_told() {
    use DurationError::*;
    let bad = [
        ("", Empty),
        ("   ", Empty),
        ("30", NoUnit),
        ("1h30", NoUnit),
        ("h", NotADuration),
        ("-5m", NotADuration),
        ("2h;", NotADuration),
        ("5 m", BadUnit),
        ("5w", BadUnit),
        ("1.5h", BadUnit),
        ("99999999999999999999999d", TooLong),
        ("18446744073709551615m", TooLong),
    ];
    for (input, why) in bad {
        assert_eq!(parse_duration(input), Err(why), "{input}");
    }
}

#[test]
fn ages_are_bounded_and_in_milliseconds() {
    assert_eq!(parse_age("30m"), Ok(1_800_000));
    assert_eq!(parse_age("2d"), Ok(172_800_000));
    assert_eq!(parse_age("1h30m"), Ok(5_400_000));
    assert_eq!(parse_age("3650d"), Ok(3_650 * 86_400_000));
    for (bad, why) in [
        ("", "expected a number"),
        ("m", "expected a number"),
        ("-5m", "expected a number"),
        ("5", "the unit must be"),
        ("5w", "the unit must be"),
        ("3651d", "too long ago"),
        ("99999999999999d", "too long ago"),
    ] {
        let e = parse_age(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
}
