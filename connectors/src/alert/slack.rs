//! `slack:URL`: each alert as a message to a Slack incoming webhook
//! (`{"text": "..."}`), delivered as a webhook's rows are (retries,
//! `Retry-After`, dead letters). The text is the `text` option's template,
//! `'{deviceId}: temperature {temperature} above {threshold} at {windowEnd}'`,
//! or by default every column by name, the time last:
//! `:rotating_light: *alerts* deviceId=dev-3 · temperature=81.2 · at 2026-01-01 10:00:00Z`.

use std::sync::Arc;

use iotql_engine::arrow::array::RecordBatch;
use iotql_engine::arrow::datatypes::{DataType, SchemaRef};
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, SinkMetrics};
use iotql_engine::operator::DeadLetter;

use super::{Delivery, HttpTarget, Options};
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
}

impl SlackOutput {
    pub(super) fn take(options: &mut Options) -> Result<Self, String> {
        let target = HttpTarget::take(options, "slack")?;
        let text = options.take("text");
        if let Some(text) = &text {
            template::parse(text).map_err(|e| format!("text `{text}`: {e}"))?;
        }
        Ok(SlackOutput { target, text })
    }
}

/// How a row becomes a message, its columns found in the output's schema.
#[derive(Debug)]
enum Message {
    /// The template's pieces: text, or the index of a column.
    Template(Vec<Result<String, usize>>),
    /// Every column as `name=value`; the first datetime column is the time.
    Columns {
        fields: Vec<(String, usize)>,
        time: Option<usize>,
    },
}

impl Message {
    /// The message of row `row`, whose values `formatters` print.
    fn render(&self, output: &str, formatters: &[ArrayFormatter], row: usize) -> String {
        let value = |i: usize| escape(&formatters[i].value(row).to_string());
        match self {
            Message::Template(parts) => parts
                .iter()
                .map(|part| match part {
                    Ok(text) => text.clone(),
                    Err(i) => value(*i),
                })
                .collect(),
            Message::Columns { fields, time } => {
                let mut text = format!(":rotating_light: *{output}*");
                let mut separator = " ";
                for (name, i) in fields {
                    text.push_str(&format!("{separator}{name}={}", value(*i)));
                    separator = " · ";
                }
                if let Some(i) = time {
                    text.push_str(&format!("{separator}at {}", value(*i)));
                }
                text
            }
        }
    }
}

/// Posts each row as a Slack message. See the module documentation.
#[derive(Debug)]
pub struct SlackSink {
    name: String,
    text: Option<String>,
    delivery: Delivery,
    message: Option<Message>,
}

impl SlackSink {
    pub fn new(name: &str, output: SlackOutput) -> Self {
        SlackSink {
            name: name.to_string(),
            text: output.text,
            delivery: Delivery::new("slack", name, output.target),
            message: None,
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

impl Sink for SlackSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        let message = match &self.text {
            Some(text) => {
                let in_text = |e: String| self.delivery.error(format!("text `{text}`: {e}"));
                let mut parts = Vec::new();
                for part in template::parse(text).map_err(in_text)? {
                    parts.push(match part {
                        Part::Text(t) => Ok(t),
                        Part::Column(c) => {
                            Err(template::column_index(schema, &c).map_err(in_text)?)
                        }
                    });
                }
                Message::Template(parts)
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
                Message::Columns { fields, time }
            }
        };
        self.message = Some(message);
        Ok(())
    }

    /// Posts a message per row; a dead letter holds the row's JSON, not
    /// the message.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let Some(message) = &self.message else {
            return Err(self.delivery.error("written before it was started"));
        };
        let options = FormatOptions::default()
            .with_null("NULL")
            .with_timestamp_format(Some(TIME))
            .with_timestamp_tz_format(Some(TIME));
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.delivery.error(e))?;
        let lines = crate::file::jsonl::json_lines(batch).map_err(|e| self.delivery.error(e))?;
        for (row, json) in lines
            .split(|&b| b == b'\n')
            .take(batch.num_rows())
            .enumerate()
        {
            let text = message.render(&self.name, &formatters, row);
            let body = serde_json::json!({ "text": text }).to_string();
            self.delivery.send(body.as_bytes(), &[json]);
        }
        Ok(())
    }

    /// Nothing is pending: `write` returns when its rows are delivered or
    /// dead letters.
    fn finish(&mut self) -> Result<(), EngineError> {
        Ok(())
    }

    fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        self.delivery.take_dead_letters()
    }

    fn metrics(&self) -> Option<Arc<SinkMetrics>> {
        Some(self.delivery.metrics())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_cannot_make_links_or_mentions() {
        assert_eq!(escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
    }
}
