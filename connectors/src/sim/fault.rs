//! Malformed messages: a reading rendered in the output's format, then
//! broken in one of four ways, so that a reader of that format refuses it.
//!
//! | kind | JSON lines | CSV |
//! |---|---|---|
//! | truncated | the line cut before its closing brace | the record cut before its last field |
//! | bad value | `"temperature_c":"21.5 C"` (text where a number belongs) | `21,5` (a decimal comma: one field too many) |
//! | missing field | no `ts` | no `ts` field (one field too few) |
//! | garbage | bytes that are neither UTF-8 nor JSON | the same |
//!
//! CSV types its columns from the first records, so a CSV text in a
//! numeric column would turn the whole column into text; the CSV bad value
//! breaks the field count instead. No payload holds a newline or a double
//! quote, so each stays one line.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::WireFormat;
use super::model::Values;

/// What a reading looks like before it is broken.
pub(crate) struct Event<'a> {
    pub device_id: &'a str,
    pub site: &'a str,
    pub zone: &'a str,
    /// RFC 3339 text.
    pub ts: &'a str,
    pub values: Option<Values>,
}

/// The reading `event` as a malformed message in `format`.
pub(crate) fn malformed(event: &Event<'_>, format: WireFormat, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let kind = rng.random_range(0..4u8);
    if kind == 3 {
        return garbage(rng);
    }
    let mut fields: Vec<(&str, String)> = vec![
        ("device_id", text(format, event.device_id)),
        ("site", text(format, event.site)),
        ("zone", text(format, event.zone)),
        ("ts", text(format, event.ts)),
    ];
    let number = |v: Option<String>| v.unwrap_or_else(|| null(format).to_string());
    let v = event.values;
    fields.extend([
        (
            "temperature_c",
            number(v.map(|v| v.temperature_c.to_string())),
        ),
        (
            "humidity_pct",
            number(v.map(|v| v.humidity_pct.to_string())),
        ),
        ("co2_ppm", number(v.map(|v| v.co2_ppm.to_string()))),
        ("occupancy", number(v.map(|v| v.occupancy.to_string()))),
        ("battery_pct", number(v.map(|v| v.battery_pct.to_string()))),
    ]);
    match kind {
        1 => {
            let temperature = v.map_or(21.5, |v| v.temperature_c);
            fields[4].1 = match format {
                WireFormat::JsonLines => format!("\"{temperature:.1} C\""),
                WireFormat::Csv => format!("{temperature:.1}").replace('.', ","),
            };
        }
        2 => {
            fields.remove(3);
        }
        _ => {}
    }
    let mut line = match format {
        WireFormat::JsonLines => {
            let items: Vec<String> = fields
                .iter()
                .map(|(name, value)| format!("\"{name}\":{value}"))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        WireFormat::Csv => fields
            .iter()
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    if kind == 0 {
        // Cut before the last comma: JSON loses its closing brace, CSV at
        // least its last field.
        let last_comma = line.rfind(',').unwrap_or(1);
        let cut = rng.random_range(1..=last_comma);
        line.truncate(cut);
    }
    line.into_bytes()
}

fn text(format: WireFormat, value: &str) -> String {
    match format {
        WireFormat::JsonLines => format!("\"{value}\""),
        WireFormat::Csv => value.to_string(),
    }
}

fn null(format: WireFormat) -> &'static str {
    match format {
        WireFormat::JsonLines => "null",
        WireFormat::Csv => "",
    }
}

/// 8 to 40 bytes that start with a byte no UTF-8 text starts with, and hold
/// no newline, carriage return, comma or double quote.
fn garbage(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let len = rng.random_range(8..=40);
    let mut bytes = vec![rng.random_range(0x80..=0xBFu8)];
    while bytes.len() < len {
        let b: u8 = rng.random();
        if !matches!(b, b'\n' | b'\r' | b',' | b'"') {
            bytes.push(b);
        }
    }
    bytes
}
