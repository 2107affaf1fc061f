//! The one implementation of the units several silo crates read and write
//! (Go durations, docker byte sizes, RFC 3339 times): the copies of these in
//! the CLI, the engine, storage, compute and the runtime had drifted apart.
//!
//! A leaf crate without dependencies: it knows nothing of the CLI, the
//! engine, images or containers. Callers keep their own error messages;
//! [`ParseError`] says what was wrong for those that pass it on.
//!
//! - [`parse_go_duration`]: Go's `time.ParseDuration` syntax, in exact
//!   integer nanoseconds.
//! - [`parse_size`]: docker's byte sizes (`RAMInBytes`: "512m", "1g").
//! - [`format_rfc3339`], [`parse_rfc3339`], [`now_rfc3339`], [`UtcTime`]:
//!   unix times as RFC 3339 text and back.
//! - [`parse_rate`]: tc's bandwidth rates ("10mbit"), in bytes a second.
//! - [`human_duration`]: docker's "About a minute", "2 hours".

mod duration;
mod human;
mod rate;
mod size;
mod time;

pub use duration::parse_go_duration;
pub use human::{bytes_size, human_duration, human_size};
pub use rate::parse_rate;
pub use size::parse_size;
pub use time::{format_rfc3339, now_rfc3339, parse_rfc3339, UtcTime};

use std::fmt;

/// A value that could not be parsed: what it was meant to be, the input
/// itself, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: Kind,
    input: String,
    problem: Problem,
}

/// What kind of value was being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Duration,
    Size,
    Time,
    Rate,
}

/// What was wrong with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Not the expected syntax.
    Syntax,
    /// A number without a unit where one is needed ("5" as a duration).
    MissingUnit,
    /// A unit that is not one of the allowed ones ("5x").
    UnknownUnit,
    /// A negative size.
    Negative,
    /// Well formed but beyond what an `i64` holds, or a date or time field
    /// out of its range (month 13, 25 o'clock).
    OutOfRange,
}

impl ParseError {
    fn new(kind: Kind, input: &str, problem: Problem) -> Self {
        ParseError {
            kind,
            input: input.to_string(),
            problem,
        }
    }

    /// The text that was refused, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// What was wrong with it.
    pub fn problem(&self) -> Problem {
        self.problem
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Duration => "duration",
            Kind::Size => "size",
            Kind::Time => "RFC 3339 time",
            Kind::Rate => "rate",
        };
        let why = match self.problem {
            Problem::Syntax => "bad syntax",
            Problem::MissingUnit => "missing unit",
            Problem::UnknownUnit => "unknown unit",
            Problem::Negative => "negative",
            Problem::OutOfRange => "out of range",
        };
        write!(f, "invalid {what} {:?}: {why}", self.input)
    }
}

impl std::error::Error for ParseError {}

/// Table-driven checks shared by the parsers' tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Asserts that `parse` gives each value for its input.
    pub(crate) fn assert_parses<T: PartialEq + fmt::Debug>(
        parse: impl Fn(&str) -> Result<T, ParseError>,
        cases: &[(&str, T)],
    ) {
        for (input, want) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&got, want, "{input:?}");
        }
    }

    /// Asserts that `parse` refuses each input for that problem, and that
    /// the error names the input.
    pub(crate) fn assert_refused<T: fmt::Debug>(
        parse: impl Fn(&str) -> Result<T, ParseError>,
        cases: &[(&str, Problem)],
    ) {
        for &(bad, problem) in cases {
            let e = parse(bad).expect_err(bad);
            assert_eq!((e.problem(), e.input()), (problem, bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_input() {
        let e = parse_go_duration("5x").unwrap_err();
        assert_eq!(e.to_string(), "invalid duration \"5x\": unknown unit");
        assert_eq!((e.input(), e.problem()), ("5x", Problem::UnknownUnit));
        let e = parse_size("-5m").unwrap_err();
        assert_eq!(e.to_string(), "invalid size \"-5m\": negative");
        let e = parse_rfc3339("2024-13-01T00:00:00Z").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid RFC 3339 time \"2024-13-01T00:00:00Z\": out of range"
        );
    }
}
