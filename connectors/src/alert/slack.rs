//! `slack:URL`: each alert as a message to a Slack incoming webhook
//! (`{"text": "...", "idempotency_key": "..."}`), delivered as a webhook's
//! rows are (retries, `Retry-After`, dead letters, the outbox). The text is
//! the `text` option's template,
//! `'{deviceId}: temperature {temperature} above {threshold} at {windowEnd}'`,
//! or by default every column by name, the time last:
//! `:rotating_light: *alerts* deviceId=dev-3 · temperature=81.2 · at 2026-01-01 10:00:00Z`.

use iotql_engine::arrow::array::RecordBatch;
use iotql_engine::arrow::datatypes::{DataType, SchemaRef};
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::http::HttpReceiver;
use super::key::{self, Key};
use super::sink::{AlertSink, Body};
use super::{AlertOptions, HttpTarget, Options};
use crate::template::{self, Part};

/// The options besides the HTTP ones.
pub(super) const OPTIONS: &[&str] = &["text"];

/// Datetimes in a message: to the second, readable.
const TIME: &str = "%Y-%m-%d %H:%M:%SZ";

/// A Slack output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackOutput {
    pub target: HttpTarget,
    /// The message, with `{column}` placeholders; `None`: every column.
    pub text: Option<String>,
    pub alert: AlertOptions,
}

impl SlackOutput {
    pub(super) fn take(options: &mut Options) -> Result<Self, String> {
        let target = HttpTarget::take(options, "slack")?;
        let text = options.take("text");
        if let Some(text) = &text {
            template::parse(text).map_err(|e| format!("text `{text}`: {e}"))?;
        }
        Ok(SlackOutput {
            target,
            text,
            alert: AlertOptions::take(options)?,
        })
    }
}

/// The sink of a Slack output.
pub(super) fn open(name: &str, output: &SlackOutput) -> AlertSink {
    let message = Message {
        text: output.text.clone(),
        parts: Parts::Unresolved,
    };
    AlertSink::new(
        name,
        Body::Slack(Box::new(message)),
        &output.alert,
        Box::new(HttpReceiver::new("slack", &output.target, false)),
    )
}

/// How a row becomes a message.
#[derive(Debug)]
pub(crate) struct Message {
    /// The `text` option.
    text: Option<String>,
    parts: Parts,
}

/// A message's pieces, with their columns found in the output's schema.
#[derive(Debug)]
enum Parts {
    /// Before `start`.
    Unresolved,
    /// The template's pieces: text, or the index of a column.
    Template(Vec<Result<String, usize>>),
    /// Every column as `name=value`; the first datetime column is the time.
    Columns {
        fields: Vec<(String, usize)>,
        time: Option<usize>,
    },
}

impl Message {
    /// Finds the template's columns (or every column) in the schema.
    pub(crate) fn start(&mut self, schema: &SchemaRef) -> Result<(), String> {
        self.parts = match &self.text {
            Some(text) => {
                let in_text = |e: String| format!("text `{text}`: {e}");
                let mut parts = Vec::new();
                for part in template::parse(text).map_err(in_text)? {
                    parts.push(match part {
                        Part::Text(t) => Ok(t),
                        Part::Column(c) => {
                            Err(template::column_index(schema, &c).map_err(in_text)?)
                        }
                    });
                }
                Parts::Template(parts)
            }
            None => {
                let time = schema
                    .fields()
                    .iter()
                    .position(|f| matches!(f.data_type(), DataType::Timestamp(_, _)));
                let fields = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != time)
                    .map(|(i, f)| (f.name().clone(), i))
                    .collect();
                Parts::Columns { fields, time }
            }
        };
        Ok(())
    }

    /// The request body of each row of output `output`'s `batch`: the
    /// message and the row's key.
    pub(crate) fn bodies(
        &self,
        output: &str,
        batch: &RecordBatch,
        keys: &[Key],
    ) -> Result<Vec<Vec<u8>>, String> {
        let options = FormatOptions::default()
            .with_null("NULL")
            .with_timestamp_format(Some(TIME))
            .with_timestamp_tz_format(Some(TIME));
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        keys.iter()
            .enumerate()
            .map(|(row, k)| {
                let text = self.render(output, &formatters, row)?;
                let body = serde_json::json!({ "text": text, key::FIELD: key::hex(k) });
                Ok(body.to_string().into_bytes())
            })
            .collect()
    }

    /// The message of row `row`, whose values `formatters` print.
    fn render(
        &self,
        output: &str,
        formatters: &[ArrayFormatter],
        row: usize,
    ) -> Result<String, String> {
        let value = |i: usize| -> Result<String, String> {
            let text = formatters[i]
                .value(row)
                .try_to_string()
                .map_err(|e| e.to_string())?;
            Ok(escape(&text))
        };
        match &self.parts {
            Parts::Unresolved => Err("written before it was started".into()),
            Parts::Template(parts) => parts
                .iter()
                .map(|part| match part {
                    Ok(text) => Ok(text.clone()),
                    Err(i) => value(*i),
                })
                .collect(),
            Parts::Columns { fields, time } => {
                let mut text = format!(":rotating_light: *{output}*");
                let mut separator = " ";
                for (name, i) in fields {
                    text.push_str(&format!("{separator}{name}={}", value(*i)?));
                    separator = " · ";
                }
                if let Some(i) = time {
                    text.push_str(&format!("{separator}at {}", value(*i)?));
                }
                Ok(text)
            }
        }
    }
}

/// Slack's control characters in a value (`<`, `>`, `&` open links and
/// mentions); the template's own text may use them on purpose.
fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_make_links_or_mentions() {
        assert_eq!(escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }
}
