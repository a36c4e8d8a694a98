//! Expected rows against captured ones: cells compared by the type of the
//! actual value (numbers numerically, with the precision the expected
//! number is written with; datetimes as instants; records and arrays as
//! JSON), rows matched as a multiset (or in order), and the leftovers shown
//! as a readable diff of missing, unexpected and changed rows.

use std::fmt::Write as _;

use iotql_engine::arrow::array::{Array, ArrayRef, AsArray};
use iotql_engine::arrow::compute::cast;
use iotql_engine::arrow::datatypes::{
    DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use iotql_engine::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::run::{Captured, Outcome};
use super::{Data, JobTest, TestError, TestFile, listed};

/// An expected cell, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// An empty CSV field: NULL (CSV cannot tell it from an empty text).
    Empty,
    /// JSON `null`.
    Null,
    /// A CSV field or a JSON string.
    Text(String),
    /// A JSON number, boolean, object or array.
    Json(Value),
}

impl Cell {
    fn shown(&self) -> String {
        match self {
            Cell::Empty | Cell::Null => "NULL".into(),
            Cell::Text(t) if t.is_empty() => "\"\"".into(),
            Cell::Text(t) => t.clone(),
            Cell::Json(v) => v.to_string(),
        }
    }

    /// The text of a scalar (a CSV field, a JSON string, number or boolean).
    fn text(&self) -> Option<String> {
        match self {
            Cell::Text(t) => Some(t.clone()),
            Cell::Json(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            _ => None,
        }
    }
}

/// An actual value, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Actual {
    Null,
    Int(i128),
    Float(f64),
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Time(i64),
    Text(String),
    Json(Value),
    /// A type compared by its text.
    Other(String),
}

impl Actual {
    fn shown(&self) -> String {
        match self {
            Actual::Null => "NULL".into(),
            Actual::Int(i) => i.to_string(),
            // As the CSV output writes it: 25.0, not 25.
            Actual::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 => {
                format!("{f:.1}")
            }
            Actual::Float(f) => f.to_string(),
            Actual::Bool(b) => b.to_string(),
            Actual::Time(us) => show_time(*us),
            Actual::Text(t) if t.is_empty() => "\"\"".into(),
            Actual::Text(t) | Actual::Other(t) => t.clone(),
            Actual::Json(v) => v.to_string(),
        }
    }
}

fn show_time(us: i64) -> String {
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) if us % 1000 == 0 => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{us}us"),
    }
}

/// Parses a datetime as written in expected rows: RFC 3339; without a
/// zone, or a date alone, it is UTC.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(t, format) {
            return Some(d.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_micros())
}

/// A datetime written as `text` against an actual instant: to the
/// millisecond (what CSV and JSON outputs write), or finer when the text
/// has more fractional digits.
pub fn time_matches(text: &str, actual: i64) -> bool {
    let Some(expected) = parse_time(text) else {
        return false;
    };
    // Fractional digits of the seconds: after the `.` that follows the time.
    let digits = text
        .trim()
        .split_once('T')
        .or_else(|| text.trim().split_once(' '))
        .and_then(|(_, time)| time.split_once('.'))
        .map_or(0, |(_, f)| {
            f.chars().take_while(char::is_ascii_digit).count()
        });
    let unit: i64 = match digits {
        0..=3 => 1000,
        4 => 100,
        5 => 10,
        _ => 1,
    };
    expected == actual.div_euclid(unit) * unit
}

/// Digits after the decimal point of a plain decimal number (`4.33` -> 2);
/// `None` for an integer or exponent notation.
fn decimals(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.contains(['e', 'E']) {
        return None;
    }
    let (_, fraction) = t.split_once('.')?;
    let d = fraction.chars().take_while(char::is_ascii_digit).count();
    (d >= 1).then(|| i32::try_from(d).unwrap_or(i32::MAX))
}

/// A float written as `text` against an actual value: within half a unit
/// of the last decimal written (`4.33` matches 4.333333), else within a
/// relative 1e-9.
pub fn float_matches(text: &str, actual: f64) -> bool {
    let Ok(expected) = text.trim().parse::<f64>() else {
        return false;
    };
    if expected.is_nan() || actual.is_nan() {
        return expected.is_nan() && actual.is_nan();
    }
    if expected.is_infinite() || actual.is_infinite() {
        return expected == actual;
    }
    let scale = expected.abs().max(actual.abs());
    // A few units in the last place, so a decimal written exactly at the
    // half-way point still matches.
    let slack = scale * 4.0 * f64::EPSILON;
    let tolerance = match decimals(text) {
        Some(d) => 0.5 * 10f64.powi(-d),
        None => 1e-9 * scale,
    };
    (expected - actual).abs() <= tolerance + slack
}

fn json_number_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => false,
        },
    }
}

/// JSON values equal: numbers numerically, objects whatever their key order.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => json_number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Whether an expected cell matches an actual value.
pub fn cell_matches(expected: &Cell, actual: &Actual) -> bool {
    match (expected, actual) {
        (Cell::Empty, Actual::Null) | (Cell::Null, Actual::Null) => true,
        (Cell::Empty, Actual::Text(t)) => t.is_empty(),
        (Cell::Empty | Cell::Null, _) | (_, Actual::Null) => false,
        (e, Actual::Int(i)) => e.text().is_some_and(|t| match t.trim().parse::<i128>() {
            Ok(x) => x == *i,
            Err(_) => float_matches(&t, *i as f64),
        }),
        (e, Actual::Float(f)) => e.text().is_some_and(|t| float_matches(&t, *f)),
        (Cell::Json(Value::Bool(b)), Actual::Bool(a)) => a == b,
        (e, Actual::Bool(a)) => {
            e.text()
                .is_some_and(|t| match t.trim().to_ascii_lowercase().as_str() {
                    "true" | "1" => *a,
                    "false" | "0" => !*a,
                    _ => false,
                })
        }
        (e, Actual::Time(us)) => e.text().is_some_and(|t| time_matches(&t, *us)),
        (Cell::Json(v), Actual::Text(t)) => &v.to_string() == t,
        (Cell::Text(e), Actual::Text(t)) => e == t,
        (Cell::Text(e), Actual::Json(v)) => {
            serde_json::from_str::<Value>(e).is_ok_and(|x| json_eq(&x, v))
        }
        (Cell::Json(e), Actual::Json(v)) => json_eq(e, v),
        (e, Actual::Other(t)) => e.text().is_some_and(|x| &x == t),
    }
}

/// Nested values (records, arrays, maps) as JSON, one per row.
fn nested_json(array: &ArrayRef) -> Result<Vec<Value>, String> {
    let field = iotql_engine::arrow::datatypes::Field::new("v", array.data_type().clone(), true);
    let batch = RecordBatch::try_new(
        std::sync::Arc::new(iotql_engine::arrow::datatypes::Schema::new(vec![field])),
        vec![array.clone()],
    )
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    {
        let mut w = iotql_engine::arrow::json::ArrayWriter::new(&mut buf);
        w.write(&batch).map_err(|e| e.to_string())?;
        w.finish().map_err(|e| e.to_string())?;
    }
    let rows: Vec<Value> = serde_json::from_slice(&buf).map_err(|e| e.to_string())?;
    Ok(rows
        .into_iter()
        .map(|r| r.get("v").cloned().unwrap_or(Value::Null))
        .collect())
}

/// The values of an output column, by kind.
pub fn actual_cells(array: &ArrayRef) -> Result<Vec<Actual>, String> {
    let n = array.len();
    let cast_to = |t: &DataType| cast(array, t).map_err(|e| e.to_string());
    let mut cells: Vec<Actual> = match array.data_type() {
        DataType::Null => vec![Actual::Null; n],
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Actual::Null, Actual::Bool))
            .collect(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let a = cast_to(&DataType::Int64)?;
            a.as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map_or(Actual::Null, |x| Actual::Int(i128::from(x))))
                .collect()
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            let a = cast_to(&DataType::UInt64)?;
            a.as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.map_or(Actual::Null, |x| Actual::Int(i128::from(x))))
                .collect()
        }
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => {
            let a = cast_to(&DataType::Float64)?;
            a.as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map_or(Actual::Null, Actual::Float))
                .collect()
        }
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => {
            let a = cast_to(&DataType::Timestamp(TimeUnit::Microsecond, None))?;
            a.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| v.map_or(Actual::Null, Actual::Time))
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = cast_to(&DataType::Utf8)?;
            a.as_string::<i32>()
                .iter()
                .map(|v| v.map_or(Actual::Null, |t| Actual::Text(t.to_string())))
                .collect()
        }
        DataType::Struct(_)
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..) => nested_json(array)?.into_iter().map(Actual::Json).collect(),
        _ => {
            let format = iotql_engine::arrow::util::display::FormatOptions::default();
            let formatter = iotql_engine::arrow::util::display::ArrayFormatter::try_new(
                array.as_ref(),
                &format,
            )
            .map_err(|e| e.to_string())?;
            (0..n)
                .map(|i| Actual::Other(formatter.value(i).to_string()))
                .collect()
        }
    };
    for (i, c) in cells.iter_mut().enumerate() {
        if array.is_null(i) {
            *c = Actual::Null;
        }
    }
    Ok(cells)
}

/// Expected rows: the column names and the cells of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Reads CSV text: a header row, then rows; an empty field is NULL.
pub fn parse_csv(text: &str) -> Result<Table, String> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err("the CSV has no header row (the column names come first)".into());
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => format!("line {}: {e}", p.line()),
            None => e.to_string(),
        })?;
        rows.push(
            record
                .iter()
                .map(|f| {
                    if f.is_empty() {
                        Cell::Empty
                    } else {
                        Cell::Text(f.to_string())
                    }
                })
                .collect(),
        );
    }
    Ok(Table { columns, rows })
}

/// Reads JSON lines: one object per line; a key a line lacks is NULL.
pub fn parse_jsonl(text: &str) -> Result<Table, String> {
    let mut objects = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| format!("line {}: not a JSON object: {e}", i + 1))?;
        for key in object.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push(object);
    }
    let rows = objects
        .iter()
        .map(|o| {
            columns
                .iter()
                .map(|c| match o.get(c) {
                    None | Some(Value::Null) => Cell::Null,
                    Some(Value::String(s)) => Cell::Text(s.clone()),
                    Some(v) => Cell::Json(v.clone()),
                })
                .collect()
        })
        .collect();
    Ok(Table { columns, rows })
}

/// The expected rows of `data`.
pub fn expected_table(data: &Data) -> Result<Table, String> {
    match data {
        Data::Csv(t) => parse_csv(t),
        Data::JsonLines(t) => parse_jsonl(t),
        Data::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let csv = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            if csv {
                parse_csv(&text)
            } else {
                parse_jsonl(&text)
            }
            .map_err(|e| format!("{}: {e}", path.display()))
        }
        Data::Sql(_) => Err("expected rows are csv, jsonl or a file, not sql".into()),
    }
}

/// A row the output got where another was expected: the expected row and
/// its differing cells (column, expected, got).
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    pub row: Vec<String>,
    pub cells: Vec<(String, String, String)>,
}

/// How one output's rows differ from the expected ones.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDiff {
    pub output: String,
    /// The compared columns (the expected ones).
    pub columns: Vec<String>,
    pub expected_rows: usize,
    pub actual_rows: usize,
    pub ordered: bool,
    /// Expected rows the output did not get (cells as shown).
    pub missing: Vec<Vec<String>>,
    /// Rows the output got that were not expected.
    pub unexpected: Vec<Vec<String>>,
    pub changed: Vec<Changed>,
}

impl OutputDiff {
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.changed.is_empty()
    }
}

/// How the dead letters differ from the expected ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LetterDiff {
    /// Whether the test lists dead letters (without: none may come).
    pub listed: bool,
    /// Expected entries no dead letter starts with.
    pub missing: Vec<String>,
    /// Dead letters no entry matches.
    pub unexpected: Vec<String>,
}

/// The result of comparing a run with a test's expectations.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outputs: Vec<OutputDiff>,
    pub dead_letters: LetterDiff,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.outputs.iter().all(OutputDiff::passed)
            && self.dead_letters.missing.is_empty()
            && self.dead_letters.unexpected.is_empty()
    }

    /// The differences as indented text (empty when passed); `colour` adds
    /// ANSI colours (red missing, green unexpected, yellow changed).
    pub fn render(&self, colour: bool) -> String {
        let mut out = String::new();
        for d in self.outputs.iter().filter(|d| !d.passed()) {
            render_output(&mut out, d, colour);
        }
        render_letters(&mut out, &self.dead_letters, colour);
        out
    }
}

/// At most this many rows of each kind are shown.
const SHOWN: usize = 20;

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn counts(parts: &[(usize, &str)]) -> String {
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A row's cells and, for a changed row, its differences.
type ShownRow<'a> = (&'a [String], String);

fn render_output(out: &mut String, d: &OutputDiff, colour: bool) {
    let _ = writeln!(
        out,
        "  output `{}`: {} ({} expected row{}, {} produced{})",
        d.output,
        counts(&[
            (d.missing.len(), "missing"),
            (d.unexpected.len(), "unexpected"),
            (d.changed.len(), "changed"),
        ]),
        d.expected_rows,
        if d.expected_rows == 1 { "" } else { "s" },
        d.actual_rows,
        if d.ordered { ", compared in order" } else { "" },
    );
    // One aligned table: the header, then - missing, + unexpected, ~ changed.
    let changed: Vec<ShownRow> = d
        .changed
        .iter()
        .map(|c| {
            let cells = c
                .cells
                .iter()
                .map(|(col, e, g)| format!("{col}: expected {e}, got {g}"))
                .collect::<Vec<_>>()
                .join("; ");
            (c.row.as_slice(), cells)
        })
        .collect();
    let kinds: [(&str, &str, Vec<ShownRow>); 3] = [
        (
            "-",
            "missing",
            d.missing
                .iter()
                .map(|r| (r.as_slice(), String::new()))
                .collect(),
        ),
        (
            "+",
            "unexpected",
            d.unexpected
                .iter()
                .map(|r| (r.as_slice(), String::new()))
                .collect(),
        ),
        ("~", "changed", changed),
    ];
    let mut widths: Vec<usize> = d.columns.iter().map(|c| c.chars().count()).collect();
    for (_, _, rows) in &kinds {
        for (row, _) in rows.iter().take(SHOWN) {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &[String], pad_last: bool| -> String {
        let mut s = String::new();
        for (i, (cell, &w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 < cells.len() || pad_last {
                let _ = write!(s, "{cell:<w$}  ");
            } else {
                s.push_str(cell);
            }
        }
        s
    };
    let _ = writeln!(out, "        {}", line(&d.columns, false));
    for (mark, kind, rows) in &kinds {
        let code = match *mark {
            "-" => "31",
            "+" => "32",
            _ => "33",
        };
        for (row, note) in rows.iter().take(SHOWN) {
            let text = if note.is_empty() {
                format!("{mark}   {}", line(row, false))
            } else {
                format!("{mark}   {}  {note}", line(row, true))
            };
            let _ = writeln!(out, "    {}", paint(&text, code, colour));
        }
        if rows.len() > SHOWN {
            let _ = writeln!(out, "    ... {} more {kind}", rows.len() - SHOWN);
        }
    }
    let _ = writeln!(
        out,
        "    (- expected, not produced; + produced, not expected; ~ produced with other values)"
    );
}

fn render_letters(out: &mut String, d: &LetterDiff, colour: bool) {
    if d.missing.is_empty() && d.unexpected.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  dead letters: {}{}",
        counts(&[
            (d.missing.len(), "missing"),
            (d.unexpected.len(), "unexpected")
        ]),
        if d.listed {
            ""
        } else {
            " (the test expects none; list the expected ones in dead_letters = [...])"
        }
    );
    for (mark, lines, code) in [("-", &d.missing, "31"), ("+", &d.unexpected, "32")] {
        for l in lines.iter().take(SHOWN) {
            let _ = writeln!(out, "    {}", paint(&format!("{mark}   {l}"), code, colour));
        }
        if lines.len() > SHOWN {
            let _ = writeln!(out, "    ... {} more", lines.len() - SHOWN);
        }
    }
    let _ = writeln!(
        out,
        "    (- expected, no dead letter starts with it; + a dead letter not expected)"
    );
}

/// Matches expected rows with actual ones; returns the unmatched indices
/// of each side. In order: the longest common subsequence; else as a
/// multiset, each expected row taking the first equal actual row.
fn match_rows(
    expected: &[Vec<Cell>],
    actual: &[Vec<Actual>],
    ordered: bool,
) -> (Vec<usize>, Vec<usize>) {
    let eq = |e: &Vec<Cell>, a: &Vec<Actual>| e.iter().zip(a).all(|(x, y)| cell_matches(x, y));
    let (n, m) = (expected.len(), actual.len());
    let mut used_e = vec![false; n];
    let mut used_a = vec![false; m];
    if ordered {
        // lcs[i][j]: the longest common subsequence of expected[i..], actual[j..].
        let mut lcs = vec![vec![0u32; m + 1]; n + 1];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i][j] = if eq(&expected[i], &actual[j]) {
                    lcs[i + 1][j + 1] + 1
                } else {
                    lcs[i + 1][j].max(lcs[i][j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if eq(&expected[i], &actual[j]) && lcs[i][j] == lcs[i + 1][j + 1] + 1 {
                used_e[i] = true;
                used_a[j] = true;
                i += 1;
                j += 1;
            } else if lcs[i + 1][j] >= lcs[i][j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    } else {
        for (i, e) in expected.iter().enumerate() {
            if let Some(j) = (0..m).find(|&j| !used_a[j] && eq(e, &actual[j])) {
                used_e[i] = true;
                used_a[j] = true;
            }
        }
    }
    let left = |used: &[bool]| {
        used.iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(i, _)| i)
            .collect()
    };
    (left(&used_e), left(&used_a))
}

/// Compares `actual` rows (cells of the compared columns) with `expected`.
pub fn diff_rows(
    output: &str,
    columns: &[String],
    expected: &[Vec<Cell>],
    actual: &[Vec<Actual>],
    ordered: bool,
) -> OutputDiff {
    let (left_e, left_a) = match_rows(expected, actual, ordered);
    // Leftovers that share at least half of the compared cells are the
    // same row changed: pair them greedily, most equal cells first.
    let width = columns.len();
    let mut candidates = Vec::new();
    for &i in &left_e {
        for &j in &left_a {
            let same = expected[i]
                .iter()
                .zip(&actual[j])
                .filter(|(x, y)| cell_matches(x, y))
                .count();
            if width > 0 && same * 2 >= width && same < width {
                candidates.push((same, i, j));
            }
        }
    }
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut paired_e = std::collections::HashSet::new();
    let mut paired_a = std::collections::HashSet::new();
    let mut changed = Vec::new();
    for (_, i, j) in candidates {
        if paired_e.contains(&i) || paired_a.contains(&j) {
            continue;
        }
        paired_e.insert(i);
        paired_a.insert(j);
        changed.push((i, j));
    }
    changed.sort_unstable();
    let changed = changed
        .into_iter()
        .map(|(i, j)| Changed {
            row: expected[i].iter().map(Cell::shown).collect(),
            cells: columns
                .iter()
                .zip(expected[i].iter().zip(&actual[j]))
                .filter(|(_, (x, y))| !cell_matches(x, y))
                .map(|(c, (x, y))| (c.clone(), x.shown(), y.shown()))
                .collect(),
        })
        .collect();
    OutputDiff {
        output: output.to_string(),
        columns: columns.to_vec(),
        expected_rows: expected.len(),
        actual_rows: actual.len(),
        ordered,
        missing: left_e
            .iter()
            .filter(|i| !paired_e.contains(i))
            .map(|&i| expected[i].iter().map(Cell::shown).collect())
            .collect(),
        unexpected: left_a
            .iter()
            .filter(|j| !paired_a.contains(j))
            .map(|&j| actual[j].iter().map(Actual::shown).collect())
            .collect(),
        changed,
    }
}

/// Matches dead letters with the expected entries (each entry the start
/// of one dead letter); `None` expects none.
pub fn diff_letters(expected: Option<&[String]>, actual: &[String]) -> LetterDiff {
    let Some(expected) = expected else {
        return LetterDiff {
            listed: false,
            missing: Vec::new(),
            unexpected: actual.to_vec(),
        };
    };
    // The longest (most specific) entries choose first.
    let mut entries: Vec<&String> = expected.iter().collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.len()));
    let mut used = vec![false; actual.len()];
    let mut missing = Vec::new();
    for e in entries {
        match (0..actual.len()).find(|&j| !used[j] && actual[j].starts_with(e.as_str())) {
            Some(j) => used[j] = true,
            None => missing.push(e.clone()),
        }
    }
    // Back in the order written.
    missing.sort_by_key(|m| expected.iter().position(|e| e == m));
    LetterDiff {
        listed: true,
        missing,
        unexpected: actual
            .iter()
            .zip(&used)
            .filter(|(_, u)| !**u)
            .map(|(a, _)| a.clone())
            .collect(),
    }
}

/// The cells of `captured`'s columns at `indices`, row by row.
fn actual_rows(captured: &Captured, indices: &[usize]) -> Result<Vec<Vec<Actual>>, String> {
    let mut rows = Vec::new();
    for batch in &captured.batches {
        let columns = indices
            .iter()
            .map(|&i| actual_cells(batch.column(i)))
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    Ok(rows)
}

/// Compares a run of `test` with what the test expects.
pub fn check(file: &TestFile, test: &JobTest, outcome: &Outcome) -> Result<Verdict, TestError> {
    let fail = |message: String| TestError::Test {
        file: file.path.clone(),
        test: test.name.clone(),
        message,
    };
    let mut outputs = Vec::new();
    for (name, expected) in &test.outputs {
        let Some((real, captured)) = outcome
            .outputs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        else {
            let names: Vec<String> = outcome.outputs.iter().map(|(n, _)| n.clone()).collect();
            return Err(fail(format!(
                "the job has no output `{name}` (its outputs: {})",
                listed(&names)
            )));
        };
        let table =
            expected_table(&expected.rows).map_err(|e| fail(format!("output `{name}`: {e}")))?;
        let fields: Vec<String> = captured
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let mut indices = Vec::new();
        for column in &table.columns {
            let i = fields
                .iter()
                .position(|f| f == column)
                .or_else(|| fields.iter().position(|f| f.eq_ignore_ascii_case(column)))
                .ok_or_else(|| {
                    fail(format!(
                        "output `{real}` has no column `{column}` (its columns: {})",
                        listed(&fields)
                    ))
                })?;
            indices.push(i);
        }
        for (n, row) in table.rows.iter().enumerate() {
            if row.len() != table.columns.len() {
                return Err(fail(format!(
                    "output `{name}`: expected row {} has {} cells for {} columns",
                    n + 1,
                    row.len(),
                    table.columns.len()
                )));
            }
        }
        let actual =
            actual_rows(captured, &indices).map_err(|e| fail(format!("output `{real}`: {e}")))?;
        outputs.push(diff_rows(
            real,
            &table.columns,
            &table.rows,
            &actual,
            expected.ordered,
        ));
    }
    Ok(Verdict {
        outputs,
        dead_letters: diff_letters(test.dead_letters.as_deref(), &outcome.dead_letters),
    })
}
