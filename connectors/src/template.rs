//! Text with `{column}` placeholders that each row fills in: an MQTT
//! output's topic (`alerts/{device_id}`), a Slack message
//! (`{deviceId}: {temperature} above {threshold}`).

use iotql_engine::arrow::datatypes::Schema;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// The value of this column (a name as written, matched without case).
    Column(String),
}

/// Splits `text` into its literal pieces and `{column}` placeholders.
pub(crate) fn parse(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or("`{` without a closing `}`".to_string())?;
        let column = after[..close].trim();
        if column.is_empty() {
            return Err("`{}` names no column".into());
        }
        parts.push(Part::Column(column.to_string()));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The index of column `name` in `schema` (matched without case), or an
/// error that lists the columns there are.
pub(crate) fn column_index(schema: &Schema, name: &str) -> Result<usize, String> {
    schema
        .fields()
        .iter()
        .position(|f| f.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            format!(
                "the output has no column `{name}` (its columns: {})",
                names.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_text() {
        assert_eq!(
            parse("{ id }: {temp} °C").unwrap(),
            vec![
                Part::Column("id".into()),
                Part::Text(": ".into()),
                Part::Column("temp".into()),
                Part::Text(" °C".into()),
            ]
        );
        assert_eq!(parse("a {b").unwrap_err(), "`{` without a closing `}`");
        assert_eq!(parse("a {}").unwrap_err(), "`{}` names no column");
    }
}
