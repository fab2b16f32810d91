//! Partitions are days. A `Day` is a count of days since 1970-01-01, so
//! lookback windows, ranges and chunking are integer arithmetic; it prints and
//! parses as Chronon's default partition format, `yyyy-MM-dd`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// Parses `yyyy-MM-dd`; `None` for anything else, including impossible
    /// dates such as `2024-02-30`.
    pub fn parse(text: &str) -> Option<Day> {
        Day::parse_checked(text).ok()
    }

    /// Parses `yyyy-MM-dd` (years 0000 to 9999), saying what is wrong: the
    /// shape, or which part of the date does not exist (checked by `jiff`).
    pub fn parse_checked(text: &str) -> Result<Day, String> {
        let bytes = text.as_bytes();
        let shaped = bytes.len() == 10
            && bytes[4] == b'-'
            && bytes[7] == b'-'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 4 || i == 7 || b.is_ascii_digit());
        if !shaped {
            return Err(format!("expected a yyyy-MM-dd date, got {text:?}"));
        }
        let number = |range: std::ops::Range<usize>| -> i16 {
            text[range].parse().expect("four or two ASCII digits")
        };
        let (year, month, day) = (number(0..4), number(5..7), number(8..10));
        let date = jiff::civil::Date::new(year, month as i8, day as i8)
            .map_err(|e| format!("{text:?} is not a day: {e}"))?;
        Ok(Day(days_from_civil(
            i32::from(date.year()),
            i32::from(date.month()),
            i32::from(date.day()),
        )))
    }

    /// Today in UTC.
    pub fn today() -> Day {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Day((secs / 86_400) as i32)
    }

    pub fn plus(self, days: i32) -> Day {
        Day(self.0 + days)
    }

    pub fn minus(self, days: i32) -> Day {
        Day(self.0 - days)
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_text().as_str())
    }
}

/// A day's `yyyy-MM-dd` text, held on the stack: plans format millions.
struct DayText([u8; 10]);

impl DayText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("digits and dashes are ASCII")
    }
}

impl Day {
    /// The `yyyy-MM-dd` text's bytes, as `Display` and serde write them.
    pub fn text_bytes(self) -> [u8; 10] {
        self.as_text().0
    }

    /// `yyyy-MM-dd`, for years 0..=9999 (the only years `parse` accepts).
    fn as_text(self) -> DayText {
        let (y, m, d) = civil_from_days(self.0);
        let y = y.clamp(0, 9999) as u32;
        let (m, d) = (m as u32, d as u32);
        let digit = |n: u32| b'0' + n as u8;
        DayText([
            digit(y / 1000),
            digit(y / 100 % 10),
            digit(y / 10 % 10),
            digit(y % 10),
            b'-',
            digit(m / 10),
            digit(m % 10),
            b'-',
            digit(d / 10),
            digit(d % 10),
        ])
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_text().as_str())
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
        let text = String::deserialize(d)?;
        Day::parse_checked(&text).map_err(serde::de::Error::custom)
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain), exact over the
// whole proleptic Gregorian range we care about.
pub(crate) fn days_from_civil(y: i32, m: i32, d: i32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn civil_from_days(z: i32) -> (i32, i32, i32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

/// A partition format: the subset of Java's `DateTimeFormatter` patterns a
/// daily partition can have (`yyyy`, `MM`, `dd`, other characters and
/// `'quoted'` text as literals), e.g. `yyyy-MM-dd` (Chronon's default) or
/// `yyyyMMdd`. Chronon reads it from `spark.chronon.partition.format`, which
/// airbnb's `spark_submit.sh` sets from `PARTITION_FORMAT`
/// (airbnb/chronon `api/py/test/sample/scripts/spark_submit.sh` line 57),
/// and per source from `Query.partitionFormat` (sardine-ai/zipline-chronon
/// `thrift/api.thrift` line 30).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DayFormat {
    pattern: String,
    parts: Vec<FormatPart>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FormatPart {
    Year,
    Month,
    Day,
    Literal(String),
}

impl Default for DayFormat {
    fn default() -> DayFormat {
        DayFormat::parse("yyyy-MM-dd").expect("the default format parses")
    }
}

impl DayFormat {
    /// Parses a pattern; the error says what is not a daily partition.
    pub fn parse(pattern: &str) -> Result<DayFormat, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let run = chars[i..].iter().take_while(|x| **x == c).count();
            if c == '\'' {
                let end = chars[i + 1..].iter().position(|x| *x == '\'');
                let Some(end) = end else {
                    return Err(format!("{pattern:?}: a quote is not closed"));
                };
                let text: String = chars[i + 1..i + 1 + end].iter().collect();
                literal.push_str(if text.is_empty() { "'" } else { &text });
                i += end + 2;
                continue;
            }
            let part = match (c, run) {
                ('y' | 'u', 4) => FormatPart::Year,
                ('M', 2) => FormatPart::Month,
                ('d', 2) => FormatPart::Day,
                (c, _) if c.is_ascii_alphabetic() => {
                    let field: String = chars[i..i + run].iter().collect();
                    return Err(format!(
                        "{pattern:?}: {field:?} is not supported; a daily partition format has \
                         yyyy, MM and dd, and literal characters"
                    ));
                }
                _ => {
                    literal.push(c);
                    i += 1;
                    continue;
                }
            };
            if !literal.is_empty() {
                parts.push(FormatPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            i += run;
        }
        if !literal.is_empty() {
            parts.push(FormatPart::Literal(literal));
        }
        for needed in [FormatPart::Year, FormatPart::Month, FormatPart::Day] {
            if parts.iter().filter(|p| **p == needed).count() != 1 {
                return Err(format!(
                    "{pattern:?}: a daily partition format has yyyy, MM and dd once each"
                ));
            }
        }
        Ok(DayFormat {
            pattern: pattern.to_string(),
            parts,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn is_default(&self) -> bool {
        self.pattern == "yyyy-MM-dd"
    }

    pub fn format(&self, day: Day) -> String {
        if self.is_default() {
            return day.to_string();
        }
        let (y, m, d) = civil_from_days(day.0);
        let mut out = String::new();
        for part in &self.parts {
            match part {
                FormatPart::Year => out.push_str(&format!("{:04}", y.clamp(0, 9999))),
                FormatPart::Month => out.push_str(&format!("{m:02}")),
                FormatPart::Day => out.push_str(&format!("{d:02}")),
                FormatPart::Literal(text) => out.push_str(text),
            }
        }
        out
    }

    /// The day a partition value names, or `None` when it does not match.
    pub fn parse_day(&self, text: &str) -> Option<Day> {
        if self.is_default() {
            return Day::parse(text);
        }
        let (mut year, mut month, mut day) = (None, None, None);
        let mut rest = text;
        for part in &self.parts {
            let width = match part {
                FormatPart::Literal(lit) => {
                    rest = rest.strip_prefix(lit.as_str())?;
                    continue;
                }
                FormatPart::Year => 4,
                FormatPart::Month | FormatPart::Day => 2,
            };
            let digits = rest.get(..width)?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: i32 = digits.parse().ok()?;
            rest = &rest[width..];
            match part {
                FormatPart::Year => year = Some(value),
                FormatPart::Month => month = Some(value),
                _ => day = Some(value),
            }
        }
        if !rest.is_empty() {
            return None;
        }
        Day::parse(&format!("{:04}-{:02}-{:02}", year?, month?, day?))
    }
}

impl Serialize for DayFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

impl fmt::Display for DayFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// An inclusive range of days; empty when `from > to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DayRange {
    pub from: Day,
    pub to: Day,
}

impl DayRange {
    pub fn new(from: Day, to: Day) -> DayRange {
        DayRange { from, to }
    }

    pub fn is_empty(&self) -> bool {
        self.from > self.to
    }

    pub fn len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            (self.to.0 - self.from.0 + 1) as usize
        }
    }

    pub fn contains(&self, day: Day) -> bool {
        self.from <= day && day <= self.to
    }

    pub fn intersect(&self, other: DayRange) -> DayRange {
        DayRange::new(self.from.max(other.from), self.to.min(other.to))
    }

    pub fn days(&self) -> impl Iterator<Item = Day> + use<> {
        (self.from.0..=self.to.0).map(Day)
    }

    /// Sorted days as the fewest ranges: `1, 2, 3, 7` is `1..3, 7`.
    pub fn runs(days: impl IntoIterator<Item = Day>) -> Vec<DayRange> {
        let mut out: Vec<DayRange> = Vec::new();
        for day in days {
            match out.last_mut() {
                Some(last) if last.to.plus(1) == day => last.to = day,
                Some(last) if last.contains(day) => {}
                _ => out.push(DayRange::new(day, day)),
            }
        }
        out
    }
}

impl fmt::Display for DayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}..{}", self.from, self.to)
        }
    }
}

/// How a target range is written after a label: `@D`, `@D1..D2`, or
/// nothing when unpartitioned.
pub fn at_range(from: Option<Day>, to: Option<Day>) -> String {
    match (from, to) {
        (Some(a), Some(b)) if a == b => format!("@{a}"),
        (Some(a), Some(b)) => format!("@{a}..{b}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates_across_leap_years_and_centuries() {
        for text in [
            "1970-01-01",
            "2000-02-29",
            "2024-02-29",
            "2025-09-30",
            "1900-03-01",
            "2100-12-31",
        ] {
            let day = Day::parse(text).unwrap();
            assert_eq!(day.to_string(), text);
        }
        assert_eq!(Day::parse("1970-01-01"), Some(Day(0)));
        assert_eq!(
            Day::parse("2024-03-01").unwrap().minus(1).to_string(),
            "2024-02-29"
        );
    }

    #[test]
    fn serializes_as_its_display_text() {
        for text in ["0001-01-01", "1999-12-31", "2024-02-29", "9999-12-31"] {
            let day = Day::parse(text).unwrap();
            assert_eq!(serde_json::to_string(&day).unwrap(), format!("\"{text}\""));
        }
    }

    #[test]
    fn rejects_impossible_or_malformed_dates() {
        for text in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "20240101",
            "2024-01-1x",
            "",
        ] {
            assert_eq!(Day::parse(text), None, "{text}");
        }
    }

    #[test]
    fn sorted_days_become_the_fewest_ranges() {
        let days = [1, 2, 3, 3, 7, 9, 10].map(Day);
        assert_eq!(
            DayRange::runs(days),
            vec![
                DayRange::new(Day(1), Day(3)),
                DayRange::new(Day(7), Day(7)),
                DayRange::new(Day(9), Day(10))
            ]
        );
        assert!(DayRange::runs([]).is_empty());
    }

    #[test]
    fn ranges_intersect_and_count() {
        let a = DayRange::new(Day(10), Day(20));
        assert_eq!(a.len(), 11);
        assert_eq!(
            a.intersect(DayRange::new(Day(15), Day(30))),
            DayRange::new(Day(15), Day(20))
        );
        assert!(a.intersect(DayRange::new(Day(21), Day(30))).is_empty());
        assert_eq!(DayRange::new(Day(5), Day(4)).len(), 0);
    }

    #[test]
    fn partition_formats_print_and_read_days() {
        let day = Day::parse("2025-09-01").unwrap();
        for (pattern, text) in [
            ("yyyy-MM-dd", "2025-09-01"),
            ("yyyyMMdd", "20250901"),
            ("yyyy/MM/dd", "2025/09/01"),
            ("dd.MM.yyyy", "01.09.2025"),
            ("yyyy'T'MMdd", "2025T0901"),
        ] {
            let format = DayFormat::parse(pattern).unwrap();
            assert_eq!(format.format(day), text, "{pattern}");
            assert_eq!(format.parse_day(text), Some(day), "{pattern}");
        }
        let compact = DayFormat::parse("yyyyMMdd").unwrap();
        for bad in ["2025-09-01", "2025090", "202509011", "20250231", "2025o901"] {
            assert_eq!(compact.parse_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn partition_formats_that_are_not_daily_are_refused() {
        for pattern in [
            "yyyy-MM-dd HH",
            "yyyy-MM",
            "yy-MM-dd",
            "yyyy-MM-dd-dd",
            "yyyy'MM-dd",
        ] {
            assert!(DayFormat::parse(pattern).is_err(), "{pattern}");
        }
    }
}
