//! Strings: CHARINDEX, PATINDEX, REGEXMATCH, SUBSTRING, LEFT, RIGHT, LTRIM,
//! RTRIM, TRIM, REPLACE, CONCAT, UPPER, LOWER. (LEN is written out by the
//! compiler.)
//!
//! Positions are 1-based and count characters; a position is 0 when
//! nothing is found. Arguments that are not text (numbers, bits,
//! datetimes) are converted as CAST to nvarchar(max) converts them.
//! Where ASA leaves a choice open, iotql decides:
//! - CHARINDEX, PATINDEX and REPLACE compare case-sensitively (ordinal),
//!   as `=` and LIKE do in iotql; T-SQL's default collation would not.
//!   REGEXMATCH is case-insensitive, as ASA documents.
//! - REGEXMATCH takes Rust `regex` syntax, which is ECMAScript's without
//!   look-around and back-references; such a pattern, like any invalid
//!   one, gives 0 (ASA documents 0 for an invalid pattern). `.` matches
//!   line ends (ASA's "single-line").
//! - PATINDEX takes T-SQL LIKE patterns: `%`, `_`, `[abc]`, `[a-f]`,
//!   `[^a]`; a pattern without a leading `%` must match at the start, one
//!   without a trailing `%` at the end.
//! - SUBSTRING, LEFT and RIGHT refuse a negative length (an evaluation
//!   error; ASA: "an error is generated"). SUBSTRING with a start below 1
//!   returns `start + length - 1` characters from the first.
//! - The TRIM functions remove Unicode white space (ASA documents .NET's
//!   `char.IsWhiteSpace`, which is the same set), not only blanks.
//! - CONCAT reads NULL as empty text and so never gives NULL.
//! - UPPER and LOWER map characters one to one: a character whose
//!   case mapping is several characters (`ß` -> `SS`) is kept, as .NET's
//!   invariant culture does.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};
use regex::{Regex, RegexBuilder};

use super::cast::to_text;
use super::{AsaFunction, downcast, integer_arg, run, type_error, udf, value_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum StringFunction {
    CharIndex,
    PatIndex,
    RegexMatch,
    Substring,
    Left,
    Right,
    LTrim,
    RTrim,
    Trim,
    Replace,
    Concat,
    Upper,
    Lower,
}

use StringFunction as S;

pub(super) fn udfs() -> Vec<ScalarUDF> {
    [
        S::CharIndex,
        S::PatIndex,
        S::RegexMatch,
        S::Substring,
        S::Left,
        S::Right,
        S::LTrim,
        S::RTrim,
        S::Trim,
        S::Replace,
        S::Concat,
        S::Upper,
        S::Lower,
    ]
    .into_iter()
    .map(udf)
    .collect()
}

impl StringFunction {
    fn asa(self) -> &'static str {
        match self {
            S::CharIndex => "CHARINDEX",
            S::PatIndex => "PATINDEX",
            S::RegexMatch => "REGEXMATCH",
            S::Substring => "SUBSTRING",
            S::Left => "LEFT",
            S::Right => "RIGHT",
            S::LTrim => "LTRIM",
            S::RTrim => "RTRIM",
            S::Trim => "TRIM",
            S::Replace => "REPLACE",
            S::Concat => "CONCAT",
            S::Upper => "UPPER",
            S::Lower => "LOWER",
        }
    }

    /// Whether argument `i` is a number (else text).
    fn numeric_arg(self, i: usize) -> bool {
        match self {
            S::CharIndex => i == 2,
            S::Substring => i >= 1,
            S::Left | S::Right => i == 1,
            _ => false,
        }
    }

    fn arity(self) -> (usize, usize) {
        match self {
            S::CharIndex => (2, 3),
            S::PatIndex | S::RegexMatch | S::Left | S::Right => (2, 2),
            S::Substring | S::Replace => (3, 3),
            S::LTrim | S::RTrim | S::Trim | S::Upper | S::Lower => (1, 1),
            S::Concat => (2, usize::MAX),
        }
    }
}

/// Text arguments keep their type, converted at run time by [`texts`] as
/// CAST to nvarchar(max) converts them; other string types become `Utf8`.
fn text_arg(t: &DataType) -> DataType {
    match t {
        DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => DataType::Utf8,
        t => t.clone(),
    }
}

impl AsaFunction for StringFunction {
    fn name(&self) -> &'static str {
        match self {
            S::CharIndex => "asa_charindex",
            S::PatIndex => "asa_patindex",
            S::RegexMatch => "asa_regexmatch",
            S::Substring => "asa_substring",
            S::Left => "asa_left",
            S::Right => "asa_right",
            S::LTrim => "asa_ltrim",
            S::RTrim => "asa_rtrim",
            S::Trim => "asa_trim",
            S::Replace => "asa_replace",
            S::Concat => "asa_concat",
            S::Upper => "asa_upper",
            S::Lower => "asa_lower",
        }
    }

    fn coerce(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let (least, most) = self.arity();
        if types.len() < least || types.len() > most {
            return Err(type_error(format!(
                "{} does not take {} arguments",
                self.asa(),
                types.len()
            )));
        }
        types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if self.numeric_arg(i) {
                    integer_arg(self.asa(), t)
                } else {
                    Ok(text_arg(t))
                }
            })
            .collect()
    }

    fn return_type(&self, _: &[DataType], _: &[Option<&ScalarValue>]) -> Result<DataType> {
        Ok(match self {
            S::CharIndex | S::PatIndex | S::RegexMatch => DataType::Int64,
            _ => DataType::Utf8,
        })
    }

    fn invoke(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let f = *self;
        run(&args, |a| {
            let ints = |i: usize| downcast::<Int64Array>(&a[i], f.asa());
            Ok(match f {
                S::CharIndex => {
                    let (find, s) = (texts(&a[0])?, texts(&a[1])?);
                    let start = match a.get(2) {
                        Some(x) => Some(downcast::<Int64Array>(x, "CHARINDEX")?),
                        None => None,
                    };
                    let out: Int64Array = (0..s.len())
                        .map(|i| {
                            let from = match start {
                                Some(st) => st.is_valid(i).then(|| st.value(i))?,
                                None => 1,
                            };
                            Some(char_index(value(&find, i)?, value(&s, i)?, from))
                        })
                        .collect();
                    Arc::new(out)
                }
                S::PatIndex => {
                    let (pattern, s) = (texts(&a[0])?, texts(&a[1])?);
                    positions(&pattern, &s, like_regex)?
                }
                S::RegexMatch => {
                    let (s, pattern) = (texts(&a[0])?, texts(&a[1])?);
                    positions(&pattern, &s, |p| {
                        RegexBuilder::new(p)
                            .case_insensitive(true)
                            .dot_matches_new_line(true)
                            .build()
                            .ok()
                    })?
                }
                S::Substring => {
                    let s = texts(&a[0])?;
                    let (start, length) = (ints(1)?, ints(2)?);
                    let out = (0..s.len())
                        .map(|i| {
                            let (Some(s), Some(st), Some(len)) =
                                (value(&s, i), int(start, i), int(length, i))
                            else {
                                return Ok(None);
                            };
                            let len = non_negative("SUBSTRING", len)?;
                            // Characters start .. start + length (exclusive),
                            // 1-based, clipped to the string.
                            let from = st.max(1);
                            let to = st.saturating_add(len);
                            Ok(Some(if to <= from {
                                ""
                            } else {
                                chars(s, (from - 1) as usize, (to - from) as usize)
                            }))
                        })
                        .collect::<Result<StringArray>>()?;
                    Arc::new(out)
                }
                S::Left | S::Right => {
                    let s = texts(&a[0])?;
                    let n = ints(1)?;
                    let out = (0..s.len())
                        .map(|i| {
                            let (Some(s), Some(n)) = (value(&s, i), int(n, i)) else {
                                return Ok(None);
                            };
                            let n = non_negative(f.asa(), n)?;
                            let n = usize::try_from(n).unwrap_or(usize::MAX);
                            Ok(Some(if f == S::Left {
                                chars(s, 0, n)
                            } else {
                                let count = s.chars().count();
                                chars(s, count.saturating_sub(n), n)
                            }))
                        })
                        .collect::<Result<StringArray>>()?;
                    Arc::new(out)
                }
                S::LTrim | S::RTrim | S::Trim | S::Upper | S::Lower => {
                    let s = texts(&a[0])?;
                    let out: StringArray = match f {
                        S::LTrim => s.iter().map(|v| v.map(str::trim_start)).collect(),
                        S::RTrim => s.iter().map(|v| v.map(str::trim_end)).collect(),
                        S::Trim => s.iter().map(|v| v.map(str::trim)).collect(),
                        S::Upper => s.iter().map(|v| v.map(|v| map_case(v, true))).collect(),
                        _ => s.iter().map(|v| v.map(|v| map_case(v, false))).collect(),
                    };
                    Arc::new(out)
                }
                S::Replace => {
                    let (s, find, with) = (texts(&a[0])?, texts(&a[1])?, texts(&a[2])?);
                    let out: StringArray = (0..s.len())
                        .map(|i| {
                            let (s, find, with) =
                                (value(&s, i)?, value(&find, i)?, value(&with, i)?);
                            // An empty pattern changes nothing (ASA's example).
                            Some(if find.is_empty() {
                                s.to_string()
                            } else {
                                s.replace(find, with)
                            })
                        })
                        .collect();
                    Arc::new(out)
                }
                S::Concat => {
                    let parts = a.iter().map(texts).collect::<Result<Vec<_>>>()?;
                    let n = a.first().map_or(0, |x| x.len());
                    let out: StringArray = (0..n)
                        .map(|i| {
                            let mut text = String::new();
                            for p in &parts {
                                text.push_str(value(p, i).unwrap_or(""));
                            }
                            Some(text)
                        })
                        .collect();
                    Arc::new(out)
                }
            })
        })
    }
}

/// An argument as text.
fn texts(a: &ArrayRef) -> Result<StringArray> {
    let t = to_text(a)?;
    Ok(downcast::<StringArray>(&t, "text")?.clone())
}

fn value(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn int(a: &Int64Array, i: usize) -> Option<i64> {
    a.is_valid(i).then(|| a.value(i))
}

fn non_negative(function: &str, n: i64) -> Result<i64> {
    if n < 0 {
        Err(value_error(format!(
            "{function}: the length {n} is negative"
        )))
    } else {
        Ok(n)
    }
}

/// `count` characters of `s` from character `skip` (0-based), clipped.
fn chars(s: &str, skip: usize, count: usize) -> &str {
    if s.is_ascii() {
        let from = skip.min(s.len());
        let to = from.saturating_add(count).min(s.len());
        return &s[from..to];
    }
    let byte = |k: usize| s.char_indices().nth(k).map_or(s.len(), |(b, _)| b);
    let from = byte(skip);
    let to = from
        + s[from..]
            .char_indices()
            .nth(count)
            .map_or(s.len() - from, |(b, _)| b);
    &s[from..to]
}

/// The 1-based character position of the byte offset `byte` of `s`.
fn char_position(s: &str, byte: usize) -> i64 {
    let before = if s.is_ascii() {
        byte
    } else {
        s[..byte].chars().count()
    };
    i64::try_from(before).unwrap_or(i64::MAX) + 1
}

/// CHARINDEX: where `find` first occurs in `s` at or after character
/// `start` (1-based; below 1 means 1), or 0.
fn char_index(find: &str, s: &str, start: i64) -> i64 {
    if find.is_empty() {
        return 0;
    }
    let skip = usize::try_from(start.max(1) - 1).unwrap_or(usize::MAX);
    let from = if s.is_ascii() {
        if skip >= s.len() {
            return 0;
        }
        skip
    } else {
        match s.char_indices().nth(skip) {
            Some((b, _)) => b,
            None => return 0,
        }
    };
    match s[from..].find(find) {
        Some(b) => char_position(s, from + b),
        None => 0,
    }
}

/// The 1-based position of the first match of each row's pattern in its
/// string (0 when none or when the pattern does not compile), compiling
/// each distinct pattern once.
fn positions(
    patterns: &StringArray,
    s: &StringArray,
    compile: impl Fn(&str) -> Option<Regex>,
) -> Result<ArrayRef> {
    let mut cache: HashMap<&str, Option<Regex>> = HashMap::new();
    let mut out = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        let (Some(p), Some(text)) = (value(patterns, i), value(s, i)) else {
            out.push(None);
            continue;
        };
        let re = cache.entry(p).or_insert_with(|| compile(p));
        out.push(Some(match re.as_ref().and_then(|re| re.find(text)) {
            Some(m) => char_position(text, m.start()),
            None => 0,
        }));
    }
    Ok(Arc::new(Int64Array::from(out)))
}

/// A T-SQL LIKE pattern as a regex that finds where it first matches: the
/// leading `%` is dropped (PATINDEX reports where the rest starts), and
/// the pattern is anchored where it has no `%`.
fn like_regex(pattern: &str) -> Option<Regex> {
    let body = pattern.trim_start_matches('%');
    let anchored_start = body.len() == pattern.len();
    let trimmed = body.trim_end_matches('%');
    let anchored_end = trimmed.len() == body.len();
    let mut re = String::from("(?s)");
    if anchored_start {
        re.push('^');
    }
    let chars: Vec<char> = trimmed.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                // `[]` and `[` without `]` are literal.
                Some(len) if len > 0 => {
                    let class = &chars[i + 1..i + 1 + len];
                    re.push('[');
                    let (negated, members) = match class.split_first() {
                        Some(('^', rest)) if !rest.is_empty() => (true, rest),
                        _ => (false, class),
                    };
                    if negated {
                        re.push('^');
                    }
                    for (k, &c) in members.iter().enumerate() {
                        let inner_dash = c == '-' && k > 0 && k + 1 < members.len();
                        if inner_dash {
                            re.push('-');
                        } else {
                            push_class_char(&mut re, c);
                        }
                    }
                    re.push(']');
                    i += len + 1;
                }
                _ => re.push_str(r"\["),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if anchored_end {
        re.push('$');
    }
    Regex::new(&re).ok()
}

fn push_class_char(re: &mut String, c: char) {
    if c.is_ascii_punctuation() {
        re.push('\\');
    }
    re.push(c);
}

/// One-to-one case mapping (a character whose mapping is several
/// characters is kept).
fn map_case(s: &str, upper: bool) -> String {
    if s.is_ascii() {
        return if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_ascii_lowercase()
        };
    }
    s.chars()
        .map(|c| {
            let mut mapped: Box<dyn Iterator<Item = char>> = if upper {
                Box::new(c.to_uppercase())
            } else {
                Box::new(c.to_lowercase())
            };
            match (mapped.next(), mapped.next()) {
                (Some(m), None) => m,
                _ => c,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};

    use super::{char_index, like_regex};
    use crate::expr::functions::testing::{batch, show, texts};

    #[test]
    fn charindex_is_1_based_and_0_when_absent() {
        assert_eq!(show("CHARINDEX('us', 'Camry US bus')"), "11");
        assert_eq!(show("CHARINDEX('b', 'abcabc')"), "2");
        assert_eq!(show("CHARINDEX('b', 'abcabc', 3)"), "5");
        assert_eq!(show("CHARINDEX('b', 'abcabc', 0)"), "2");
        assert_eq!(show("CHARINDEX('b', 'abcabc', -5)"), "2");
        assert_eq!(show("CHARINDEX('b', 'abcabc', 6)"), "0");
        assert_eq!(show("CHARINDEX('b', 'abcabc', 99)"), "0");
        assert_eq!(show("CHARINDEX('z', 'abc')"), "0");
        assert_eq!(show("CHARINDEX('', 'abc')"), "0");
        assert_eq!(show("CHARINDEX('B', 'abc')"), "0");
        assert_eq!(show("CHARINDEX(NULL, 'abc')"), "NULL");
        assert_eq!(show("CHARINDEX('a', NULL)"), "NULL");
        assert_eq!(show("CHARINDEX('a', 'abc', NULL)"), "NULL");
        // Characters, not bytes.
        assert_eq!(show("CHARINDEX('ü', 'Grüße')"), "3");
        assert_eq!(show("CHARINDEX('e', 'Grüße')"), "5");
        assert_eq!(show("CHARINDEX('x', '😀x😀x', 3)"), "4");
        assert_eq!(show("CHARINDEX(5, 12345)"), "5");
        assert_eq!(char_index("a", "", 1), 0);
    }

    #[test]
    fn patindex_takes_like_patterns() {
        assert_eq!(show("PATINDEX('%100%', 'AB 100 CD')"), "4");
        assert_eq!(show("PATINDEX('%1_0%', 'x1a0')"), "2");
        assert_eq!(show("PATINDEX('%[0-9][0-9]%', 'ab1c23')"), "5");
        assert_eq!(show("PATINDEX('%[^a-c]%', 'abcd')"), "4");
        assert_eq!(show("PATINDEX('%[%]%', '50% off')"), "3");
        assert_eq!(show("PATINDEX('ab%', 'abc')"), "1");
        assert_eq!(show("PATINDEX('ab%', 'cab')"), "0");
        assert_eq!(show("PATINDEX('%bc', 'abc')"), "2");
        assert_eq!(show("PATINDEX('%bc', 'abcd')"), "0");
        assert_eq!(show("PATINDEX('abc', 'abc')"), "1");
        assert_eq!(show("PATINDEX('%a%c%', 'xxaybzc')"), "3");
        assert_eq!(show("PATINDEX('%.%', 'a.b')"), "2");
        assert_eq!(show("PATINDEX('%(%', 'f(x)')"), "2");
        assert_eq!(show("PATINDEX('%é%', 'café')"), "4");
        assert_eq!(show("PATINDEX('%A%', 'abc')"), "0");
        assert_eq!(show("PATINDEX(NULL, 'abc')"), "NULL");
        assert_eq!(show("PATINDEX('%a%', NULL)"), "NULL");
        assert!(like_regex("%[a%").is_some());
    }

    #[test]
    fn regexmatch_is_case_insensitive_and_0_for_invalid_patterns() {
        assert_eq!(show("REGEXMATCH('AB 123 CD', '[0-9][0-9][0-9]')"), "4");
        assert_eq!(show("REGEXMATCH('Hello', 'LL')"), "3");
        assert_eq!(show("REGEXMATCH('abc', 'x')"), "0");
        assert_eq!(show("REGEXMATCH('abc', '([')"), "0");
        assert_eq!(show("REGEXMATCH('abc', '(?=b)')"), "0");
        assert_eq!(show("REGEXMATCH('a\nb', 'a.b')"), "1");
        assert_eq!(show("REGEXMATCH('😀é1', '[0-9]')"), "3");
        assert_eq!(show("REGEXMATCH(NULL, 'a')"), "NULL");
        assert_eq!(show("REGEXMATCH('a', NULL)"), "NULL");
    }

    #[test]
    fn regexmatch_compiles_each_pattern_of_a_column() {
        let s: ArrayRef = Arc::new(StringArray::from(vec!["abc", "abc", "xyz", "q"]));
        let p: ArrayRef = Arc::new(StringArray::from(vec![
            Some("c"),
            Some("b"),
            Some("c"),
            None,
        ]));
        let b = batch(vec![("s", s), ("p", p)]);
        assert_eq!(
            texts("REGEXMATCH(s, p)", &b).unwrap(),
            ["3", "2", "0", "NULL"]
        );
    }

    #[test]
    fn substring_left_right_count_characters() {
        assert_eq!(show("SUBSTRING('abcdef', 2, 3)"), "bcd");
        assert_eq!(show("SUBSTRING('abcdef', 0, 3)"), "ab");
        assert_eq!(show("SUBSTRING('abcdef', -2, 5)"), "ab");
        assert_eq!(show("SUBSTRING('abcdef', -2, 3)"), "");
        assert_eq!(show("SUBSTRING('abcdef', 7, 2)"), "");
        assert_eq!(show("SUBSTRING('abcdef', 5, 100)"), "ef");
        assert_eq!(show("SUBSTRING('abcdef', 2, 0)"), "");
        assert_eq!(show("SUBSTRING('héllo😀x', 5, 2)"), "o😀");
        assert_eq!(show("SUBSTRING(12345, 2, 2)"), "23");
        assert_eq!(show("SUBSTRING(NULL, 1, 2)"), "NULL");
        assert_eq!(show("SUBSTRING('abc', NULL, 2)"), "NULL");
        assert!(show("SUBSTRING('abc', 1, -1)").contains("SUBSTRING: the length -1 is negative"));
        assert_eq!(show("LEFT('abcdefg', 2)"), "ab");
        assert_eq!(show("LEFT('abc', 10)"), "abc");
        assert_eq!(show("LEFT('abc', 0)"), "");
        assert_eq!(show("LEFT('日本語テキスト', 3)"), "日本語");
        assert_eq!(show("RIGHT('abcdefg', 2)"), "fg");
        assert_eq!(show("RIGHT('abc', 10)"), "abc");
        assert_eq!(show("RIGHT('日本語テキスト', 4)"), "テキスト");
        assert_eq!(show("RIGHT(NULL, 2)"), "NULL");
        assert!(show("LEFT('abc', -1)").contains("LEFT: the length -1 is negative"));
        assert!(show("RIGHT('abc', -2)").contains("RIGHT: the length -2 is negative"));
    }

    #[test]
    fn trims_remove_unicode_white_space() {
        assert_eq!(show("CONCAT('[', LTRIM('  \t a b \n'), ']')"), "[a b \n]");
        assert_eq!(
            show("CONCAT('[', RTRIM('  a b \u{a0}\u{3000}'), ']')"),
            "[  a b]"
        );
        assert_eq!(show("CONCAT('[', TRIM('\u{2003} a b \r\n'), ']')"), "[a b]");
        assert_eq!(show("TRIM(NULL)"), "NULL");
        assert_eq!(show("TRIM(42)"), "42");
    }

    #[test]
    fn replace_follows_asa_examples() {
        assert_eq!(show("REPLACE('abcde', 'cd', 'xx')"), "abxxe");
        assert_eq!(show("REPLACE('cdabcd', 'cd', 'x')"), "xabx");
        assert_eq!(show("REPLACE('cd', 'cd', 'xxx')"), "xxx");
        assert_eq!(show("REPLACE('abcde', 'gh', 'xx')"), "abcde");
        assert_eq!(show("REPLACE('abcde', 'cde', '')"), "ab");
        assert_eq!(show("REPLACE('abcde', '', 'xxx')"), "abcde");
        assert_eq!(show("REPLACE('', 'cde', 'xxx')"), "");
        assert_eq!(show("REPLACE(NULL, 'cde', 'xxx')"), "NULL");
        assert_eq!(show("REPLACE('abcde', NULL, 'xxx')"), "NULL");
        assert_eq!(show("REPLACE('abcde', 'cde', NULL)"), "NULL");
        assert_eq!(show("REPLACE('ÄÖÄ', 'Ä', 'ae')"), "aeÖae");
    }

    #[test]
    fn concat_reads_null_as_empty() {
        assert_eq!(
            show("CONCAT('Make:', 'VW', ' And Model:', 'Golf')"),
            "Make:VW And Model:Golf"
        );
        assert_eq!(show("CONCAT('a', NULL, 'b')"), "ab");
        assert_eq!(show("CONCAT(NULL, NULL)"), "");
        assert_eq!(
            show("CONCAT('n=', 42, ' f=', 1.5, ' b=', true)"),
            "n=42 f=1.5 b=true"
        );
        assert_eq!(
            show("CONCAT('t=', CAST('2026-01-01T00:00:00Z' AS datetime))"),
            "t=2026-01-01T00:00:00.000Z"
        );
        assert!(show("CONCAT('a')").contains("CONCAT takes at least 2 arguments, not 1"));
    }

    #[test]
    fn upper_lower_map_characters_one_to_one() {
        assert_eq!(show("UPPER('abc Grüße')"), "ABC GRÜßE");
        assert_eq!(show("LOWER('ÀÉÎ ABC')"), "àéî abc");
        assert_eq!(show("LOWER(NULL)"), "NULL");
        assert_eq!(show("UPPER(12)"), "12");
    }

    #[test]
    fn string_functions_run_over_columns() {
        let s: ArrayRef = Arc::new(StringArray::from(vec![Some("a-b-c"), None, Some("")]));
        let n: ArrayRef = Arc::new(Int64Array::from(vec![Some(2), Some(1), None]));
        let b = batch(vec![("s", s), ("n", n)]);
        assert_eq!(
            texts("CHARINDEX('-', s, n)", &b).unwrap(),
            ["2", "NULL", "NULL"]
        );
        assert_eq!(texts("LEFT(s, n)", &b).unwrap(), ["a-", "NULL", "NULL"]);
        assert_eq!(texts("CONCAT(s, n)", &b).unwrap(), ["a-b-c2", "1", ""]);
        assert_eq!(
            texts("REPLACE(s, '-', '+')", &b).unwrap(),
            ["a+b+c", "NULL", ""]
        );
    }
}
