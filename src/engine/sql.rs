//! SQL as configs write it, run by SQLite: the Spark SQL functions SQLite
//! lacks, registered under their Spark names; `default.` (a keyword in
//! SQLite) quoted; the staging-query templates substituted; and a staging
//! query's reads checked against what it declares.
//!
//! Times are UTC: Spark uses the session time zone, which the local engine
//! takes to be UTC.

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, Error};

use std::collections::BTreeSet;

use super::EngineError;
use crate::config::{Layout, StagingQuery, sql_reads};
use crate::partition::{Day, civil_from_days, days_from_civil};

const DETERMINISTIC: FunctionFlags = FunctionFlags::SQLITE_UTF8
    .union(FunctionFlags::SQLITE_DETERMINISTIC)
    .union(FunctionFlags::SQLITE_INNOCUOUS);

/// Spark's default timestamp pattern.
const TIMESTAMP: &str = "yyyy-MM-dd HH:mm:ss";

/// The Spark functions the local engine provides, beyond SQLite's own.
pub const SPARK_FUNCTIONS: &[&str] = &[
    "if",
    "nvl",
    "concat",
    "concat_ws",
    "greatest",
    "least",
    "from_unixtime",
    "unix_timestamp",
    "date_format",
    "to_date",
    "date_add",
    "date_sub",
    "datediff",
    "base64",
    "unbase64",
    "decode",
];

pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_encodings(conn)?;
    register_choices(conn)?;
    register_strings(conn)?;
    register_extremes(conn)?;
    register_dates(conn)
}

fn register_encodings(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("base64", 1, DETERMINISTIC, |ctx| {
        use base64::Engine as _;
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Text(b) | ValueRef::Blob(b) => {
                Some(base64::prelude::BASE64_STANDARD.encode(b))
            }
            other => text_of(other).map(|t| base64::prelude::BASE64_STANDARD.encode(t)),
        })
    })?;
    // Spark's unbase64 gives NULL for text that is not base64.
    conn.create_scalar_function("unbase64", 1, DETERMINISTIC, |ctx| {
        use base64::Engine as _;
        Ok(text_of(ctx.get_raw(0))
            .and_then(|t| base64::prelude::BASE64_STANDARD.decode(t.trim()).ok()))
    })?;
    conn.create_scalar_function("decode", 2, DETERMINISTIC, |ctx| {
        let charset = text_of(ctx.get_raw(1))
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !matches!(charset.as_str(), "utf-8" | "utf8") {
            return Err(rusqlite::Error::UserFunctionError(
                format!("decode: the local engine decodes utf-8 only, not {charset:?}").into(),
            ));
        }
        Ok(match ctx.get_raw(0) {
            ValueRef::Null => None,
            ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
            other => text_of(other),
        })
    })
}

fn register_choices(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("if", 3, DETERMINISTIC, |ctx| {
        let pick = if truthy(ctx.get_raw(0)) { 1 } else { 2 };
        ctx.get::<Value>(pick)
    })?;
    conn.create_scalar_function("nvl", 2, DETERMINISTIC, |ctx| {
        match ctx.get::<Value>(0)? {
            Value::Null => ctx.get::<Value>(1),
            value => Ok(value),
        }
    })
}

fn register_strings(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("concat", -1, DETERMINISTIC, |ctx| {
        let mut out = String::new();
        for i in 0..ctx.len() {
            match text_of(ctx.get_raw(i)) {
                Some(text) => out.push_str(&text),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    })?;
    conn.create_scalar_function("concat_ws", -1, DETERMINISTIC, |ctx| {
        if ctx.is_empty() {
            return Err(user("concat_ws needs a separator"));
        }
        let Some(separator) = text_of(ctx.get_raw(0)) else {
            return Ok(None);
        };
        let parts: Vec<String> = (1..ctx.len())
            .filter_map(|i| text_of(ctx.get_raw(i)))
            .collect();
        Ok(Some(parts.join(&separator)))
    })
}

/// As Spark's, `greatest` and `least` skip nulls.
fn register_extremes(conn: &Connection) -> rusqlite::Result<()> {
    for (name, want) in [
        ("greatest", std::cmp::Ordering::Greater),
        ("least", std::cmp::Ordering::Less),
    ] {
        conn.create_scalar_function(name, -1, DETERMINISTIC, move |ctx| {
            let mut best: Option<Value> = None;
            for i in 0..ctx.len() {
                let value = ctx.get::<Value>(i)?;
                if value == Value::Null {
                    continue;
                }
                let better = best
                    .as_ref()
                    .is_none_or(|b| compare_values(&value, b) == want);
                if better {
                    best = Some(value);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        })?;
    }
    Ok(())
}

/// Date and time functions; times are UTC (see the module header).
fn register_dates(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function("from_unixtime", -1, DETERMINISTIC, |ctx| {
        let Some(seconds) = number_of(ctx.get_raw(0)) else {
            return Ok(None);
        };
        let pattern = pattern_arg(ctx, 1)?;
        format_millis((seconds * 1000.0).floor() as i64, &pattern)
            .map(Some)
            .map_err(user)
    })?;
    conn.create_scalar_function("unix_timestamp", -1, FunctionFlags::SQLITE_UTF8, |ctx| {
        if ctx.is_empty() {
            return Ok(Some(crate::clock::unix_now()));
        }
        let Some(text) = text_of(ctx.get_raw(0)) else {
            return Ok(None);
        };
        let pattern = pattern_arg(ctx, 1)?;
        // Spark returns null for text that does not match.
        Ok(parse_millis(&text, &pattern)
            .ok()
            .map(|ms| ms.div_euclid(1000)))
    })?;
    conn.create_scalar_function("date_format", 2, DETERMINISTIC, |ctx| {
        let Some(millis) = timestamp_of(ctx.get_raw(0)) else {
            return Ok(None);
        };
        let pattern = pattern_arg(ctx, 1)?;
        format_millis(millis, &pattern).map(Some).map_err(user)
    })?;
    conn.create_scalar_function("to_date", 1, DETERMINISTIC, |ctx| {
        Ok(
            timestamp_of(ctx.get_raw(0))
                .map(|ms| Day(ms.div_euclid(86_400_000) as i32).to_string()),
        )
    })?;
    for (name, sign) in [("date_add", 1), ("date_sub", -1)] {
        conn.create_scalar_function(name, 2, DETERMINISTIC, move |ctx| {
            let day = timestamp_of(ctx.get_raw(0)).map(|ms| ms.div_euclid(86_400_000) as i32);
            let days = number_of(ctx.get_raw(1)).map(|n| n as i32);
            Ok(day
                .zip(days)
                .map(|(day, n)| Day(day + sign * n).to_string()))
        })?;
    }
    conn.create_scalar_function("datediff", 2, DETERMINISTIC, |ctx| {
        let day = |i| timestamp_of(ctx.get_raw(i)).map(|ms| ms.div_euclid(86_400_000));
        Ok(day(0).zip(day(1)).map(|(a, b)| a - b))
    })?;
    Ok(())
}

fn user(message: impl Into<String>) -> Error {
    Error::UserFunctionError(message.into().into())
}

fn pattern_arg(ctx: &Context, index: usize) -> rusqlite::Result<String> {
    if ctx.len() <= index {
        return Ok(TIMESTAMP.to_string());
    }
    text_of(ctx.get_raw(index)).ok_or_else(|| user("the format pattern is null"))
}

fn truthy(value: ValueRef) -> bool {
    match value {
        ValueRef::Null => false,
        ValueRef::Integer(i) => i != 0,
        ValueRef::Real(r) => r != 0.0,
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .is_some_and(|n| n != 0.0),
        ValueRef::Blob(b) => !b.is_empty(),
    }
}

fn text_of(value: ValueRef) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(r) => Some(r.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

fn number_of(value: ValueRef) -> Option<f64> {
    match value {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(r) => Some(r),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// A timestamp argument: text as Spark casts it (`yyyy-MM-dd` or
/// `yyyy-MM-dd HH:mm:ss`), or a number of epoch seconds.
fn timestamp_of(value: ValueRef) -> Option<i64> {
    match value {
        ValueRef::Text(t) => {
            let text = std::str::from_utf8(t).ok()?.trim();
            if text.len() == 10 {
                parse_millis(text, "yyyy-MM-dd").ok()
            } else {
                parse_millis(text, TIMESTAMP)
                    .or_else(|_| parse_millis(text, "yyyy-MM-dd HH:mm:ss.SSS"))
                    .ok()
            }
        }
        other => number_of(other).map(|s| (s * 1000.0).floor() as i64),
    }
}

/// Orders SQL values as Spark compares them: numbers numerically, text
/// lexicographically, numbers before text.
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Integer(x), Value::Real(y)) => (*x as f64).total_cmp(y),
        (Value::Real(x), Value::Integer(y)) => x.total_cmp(&(*y as f64)),
        (Value::Real(x), Value::Real(y)) => x.total_cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Integer(_) | Value::Real(_), _) => Ordering::Less,
        (_, Value::Integer(_) | Value::Real(_)) => Ordering::Greater,
        (Value::Text(_), Value::Blob(_)) => Ordering::Less,
        (Value::Blob(_), Value::Text(_)) => Ordering::Greater,
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
    }
}

/// One piece of a Spark datetime pattern.
#[derive(Debug, PartialEq)]
enum Piece {
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
    Literal(String),
}

/// Splits a Spark pattern (`yyyy-MM-dd HH:mm:ss`); pattern letters other
/// than y, M, d, H, m, s and S are refused rather than misread.
fn pieces(pattern: &str) -> Result<Vec<Piece>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let piece = match (c, run) {
            ('y', 4) => Piece::Year4,
            ('y', 2) => Piece::Year2,
            ('M', 2) => Piece::Month,
            ('d', 2) => Piece::Day,
            ('H', 2) => Piece::Hour,
            ('m', 2) => Piece::Minute,
            ('s', 2) => Piece::Second,
            ('S', 3) => Piece::Millis,
            ('\'', _) => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&x| x == '\'')
                    .ok_or_else(|| format!("unclosed quote in the pattern {pattern:?}"))?;
                out.push(Piece::Literal(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
                continue;
            }
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "the pattern letter {:?} in {pattern:?} is not supported by the local engine \
                     (supported: yyyy, yy, MM, dd, HH, mm, ss, SSS)",
                    chars[i..i + run].iter().collect::<String>()
                ));
            }
            (c, _) => Piece::Literal(c.to_string()),
        };
        out.push(piece);
        i += if matches!(out.last(), Some(Piece::Literal(_))) {
            1
        } else {
            run
        };
    }
    Ok(out)
}

pub fn format_millis(millis: i64, pattern: &str) -> Result<String, String> {
    let day = millis.div_euclid(86_400_000);
    let in_day = millis.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(day as i32);
    let mut out = String::new();
    for piece in pieces(pattern)? {
        match piece {
            Piece::Year4 => out.push_str(&format!("{y:04}")),
            Piece::Year2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Piece::Month => out.push_str(&format!("{m:02}")),
            Piece::Day => out.push_str(&format!("{d:02}")),
            Piece::Hour => out.push_str(&format!("{:02}", in_day / 3_600_000)),
            Piece::Minute => out.push_str(&format!("{:02}", in_day / 60_000 % 60)),
            Piece::Second => out.push_str(&format!("{:02}", in_day / 1000 % 60)),
            Piece::Millis => out.push_str(&format!("{:03}", in_day % 1000)),
            Piece::Literal(text) => out.push_str(&text),
        }
    }
    Ok(out)
}

pub fn parse_millis(text: &str, pattern: &str) -> Result<i64, String> {
    let mismatch = || format!("{text:?} does not match the pattern {pattern:?}");
    let (mut y, mut m, mut d, mut hh, mut mm, mut ss, mut ms) = (1970, 1, 1, 0, 0, 0, 0);
    let mut rest = text;
    for piece in pieces(pattern)? {
        let width = match &piece {
            Piece::Year4 => 4,
            Piece::Millis => 3,
            Piece::Literal(lit) => {
                rest = rest.strip_prefix(lit.as_str()).ok_or_else(mismatch)?;
                continue;
            }
            _ => 2,
        };
        let digits = rest.get(..width).ok_or_else(mismatch)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(mismatch());
        }
        let n: i64 = digits.parse().map_err(|_| mismatch())?;
        rest = &rest[width..];
        match piece {
            Piece::Year4 => y = n,
            Piece::Year2 => y = 2000 + n,
            Piece::Month => m = n,
            Piece::Day => d = n,
            Piece::Hour => hh = n,
            Piece::Minute => mm = n,
            Piece::Second => ss = n,
            Piece::Millis => ms = n,
            Piece::Literal(_) => {}
        }
    }
    if !rest.is_empty() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(mismatch());
    }
    let day = days_from_civil(y as i32, m as i32, d as i32) as i64;
    Ok(day * 86_400_000 + hh * 3_600_000 + mm * 60_000 + ss * 1000 + ms)
}

/// Quotes `default` where SQL uses it as a namespace (`default.t`): it is a
/// keyword in SQLite. String literals and quoted names are left alone.
pub fn quote_default_namespace(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' || c == b'"' || c == b'`' {
            let close = sql[i + 1..]
                .find(c as char)
                .map_or(sql.len(), |p| i + 1 + p + 1);
            out.push_str(&sql[i..close]);
            i = close;
            continue;
        }
        let word_start = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if word_start && sql[i..].len() >= 8 && sql[i..i + 8].eq_ignore_ascii_case("default.") {
            out.push_str("\"default\".");
            i += 8;
            continue;
        }
        let len = sql[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&sql[i..i + len]);
        i += len;
    }
    out
}

/// Substitutes the staging-query templates: `{{ start_date }}`,
/// `{{ end_date }}`, `{{ latest_date }}` (and `{{ max_date(table=...) }}`
/// is refused by the caller as unsupported when it remains).
pub fn substitute_dates(sql: &str, start: Day, end: Day, latest: Day) -> String {
    let mut out = sql.to_string();
    for (name, day) in [
        ("start_date", start),
        ("end_date", end),
        ("latest_date", latest),
    ] {
        let mut search = 0;
        while let Some(open) = out[search..].find("{{").map(|p| p + search) {
            let Some(close) = out[open..].find("}}").map(|p| p + open) else {
                break;
            };
            if out[open + 2..close].trim() == name {
                out.replace_range(open..close + 2, &day.to_string());
                search = open;
            } else {
                search = close + 2;
            }
        }
    }
    out
}

/// Refuses a staging query that read a table it does not declare: its
/// keys are made of what it declares, so a change to that table would never
/// rerun it (`config::sql_reads` finds the same in the SQL, for CI). `reads`
/// are the tables SQLite's authorizer saw it read. A query that declares
/// nothing is let through, as the loader does: the graph notes it.
pub fn check_declared(
    sq: &StagingQuery,
    layout: Layout,
    reads: &BTreeSet<String>,
) -> Result<(), EngineError> {
    let declared = sql_reads::declared_tables(sq);
    if declared.is_empty() {
        return Ok(());
    }
    let undeclared: Vec<String> = reads
        .iter()
        .filter(|table| !sql_reads::is_declared(table, &declared))
        .map(|table| {
            format!(
                "query: {}",
                sql_reads::undeclared_message(table, sq, layout)
            )
        })
        .collect();
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(EngineError::failed(undeclared.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_round_trip() {
        let ms = parse_millis("2025-03-04 05:06:07", TIMESTAMP).unwrap();
        assert_eq!(ms, 1_741_064_767_000);
        assert_eq!(format_millis(ms, TIMESTAMP).unwrap(), "2025-03-04 05:06:07");
        assert_eq!(format_millis(ms, "yyyyMMdd'T'HH").unwrap(), "20250304T05");
        assert!(format_millis(ms, "EEE").is_err());
        assert!(parse_millis("2025-13-01", "yyyy-MM-dd").is_err());
    }

    #[test]
    fn default_namespace_is_quoted_outside_literals() {
        assert_eq!(
            quote_default_namespace("SELECT a FROM default.t WHERE b = 'default.x' AND xdefault.y"),
            "SELECT a FROM \"default\".t WHERE b = 'default.x' AND xdefault.y"
        );
    }

    #[test]
    fn templates_are_substituted() {
        let d = |s| Day::parse(s).unwrap();
        assert_eq!(
            substitute_dates(
                "ds BETWEEN '{{ start_date }}' AND '{{end_date}}' -- {{ latest_date }} {{ other }}",
                d("2025-01-01"),
                d("2025-01-02"),
                d("2025-01-03")
            ),
            "ds BETWEEN '2025-01-01' AND '2025-01-02' -- 2025-01-03 {{ other }}"
        );
    }
}
