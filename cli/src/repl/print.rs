//! Rows on the terminal: as tables (comfy-table, one per write, fitted to
//! the terminal's width), as JSON lines (written as the JSON-lines output
//! writes them) or as CSV (the CSV output's writer: the header once per
//! query).

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets};
use iotql_connectors::file::csv::CsvSink;
use iotql_connectors::file::jsonl::JsonLinesSink;
use iotql_connectors::file::{OutputTarget, TIMESTAMP_FORMAT};
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};
use iotql_engine::error::EngineError;
use iotql_engine::io::Sink;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "json" | "jsonl" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!(
                "`{other}` is not a format: write table, json or csv"
            )),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
        })
    }
}

/// Below this many columns a terminal's width is not believed.
const MIN_WIDTH: u16 = 20;

/// `batch` as a table: a header of its column names, datetimes as the
/// outputs write them, NULL as `NULL`.
pub(crate) fn table(batch: &RecordBatch) -> Result<String, ArrowError> {
    let options = FormatOptions::default()
        .with_null("NULL")
        .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT))
        .with_timestamp_format(Some(TIMESTAMP_FORMAT));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut t = Table::new();
    // Fitted to the terminal when it says how wide it is (a pseudo-terminal
    // may say 0 columns: then the table takes the width it needs).
    let arrangement = if t.width().is_some_and(|w| w >= MIN_WIDTH) {
        ContentArrangement::Dynamic
    } else {
        ContentArrangement::Disabled
    };
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(arrangement)
        .set_header(batch.schema().fields().iter().map(|f| f.name().clone()));
    for row in 0..batch.num_rows() {
        t.add_row(formatters.iter().map(|f| f.value(row).to_string()));
    }
    Ok(t.to_string())
}

/// Prints an output's rows on stdout in a [`Format`], each write as it
/// comes (the windows that just closed).
pub(crate) struct TerminalSink {
    name: String,
    format: Format,
    /// The CSV or JSON-lines writer (not for tables).
    inner: Option<Box<dyn Sink>>,
}

impl std::fmt::Debug for TerminalSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TerminalSink")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl TerminalSink {
    pub(crate) fn new(name: &str, format: Format) -> TerminalSink {
        let inner: Option<Box<dyn Sink>> = match format {
            Format::Table => None,
            Format::Json => Some(Box::new(JsonLinesSink::new(name, OutputTarget::Stdout))),
            Format::Csv => Some(Box::new(CsvSink::new(name, OutputTarget::Stdout))),
        };
        TerminalSink {
            name: name.to_string(),
            format,
            inner,
        }
    }
}

impl Sink for TerminalSink {
    fn start(&mut self, schema: &SchemaRef) -> Result<(), EngineError> {
        if let Some(inner) = &mut self.inner {
            inner.start(schema)?;
            inner.flush()?;
        }
        Ok(())
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match &mut self.inner {
            Some(inner) => {
                inner.write(batch)?;
                // Rows show as their windows close, not when a buffer fills.
                inner.flush()
            }
            None => {
                let text = table(batch).map_err(|e| EngineError::Sink {
                    output: self.name.clone(),
                    message: e.to_string(),
                })?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")
                    .and_then(|()| out.flush())
                    .map_err(|e| EngineError::Sink {
                        output: self.name.clone(),
                        message: format!("the terminal: {e}"),
                    })
            }
        }
    }

    fn finish(&mut self) -> Result<(), EngineError> {
        match &mut self.inner {
            Some(inner) => inner.finish(),
            None => Ok(()),
        }
    }
}

/// Prints whole results (`.sql`, `.schema`) in `format`.
pub(crate) fn print_batches(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    format: Format,
) -> Result<(), EngineError> {
    let mut sink = TerminalSink::new("result", format);
    sink.start(schema)?;
    if format == Format::Table {
        // One table, not one per batch.
        let all = iotql_engine::arrow::compute::concat_batches(schema, batches)?;
        if all.num_rows() == 0 {
            let text = table(&all).map_err(EngineError::from)?;
            let _ = writeln!(std::io::stdout(), "{text}");
        } else {
            sink.write(&all)?;
        }
    } else {
        for b in batches {
            sink.write(b)?;
        }
    }
    sink.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iotql_engine::arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use iotql_engine::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn a_table_shows_names_values_times_and_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new(
                "window_end",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("avg_temp", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["dev-1", "dev-2"])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        1_767_225_660_000_000,
                        1_767_225_660_000_000,
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(vec![Some(21.5), None])),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = table(&batch).unwrap_or_else(|e| panic!("{e}"));
        for cell in [
            "device_id",
            "avg_temp",
            "dev-1",
            "21.5",
            "2026-01-01T00:01:00.000Z",
            "NULL",
        ] {
            assert!(text.contains(cell), "{cell} missing from\n{text}");
        }
        assert_eq!("JSON".parse::<Format>(), Ok(Format::Json));
        assert!("xml".parse::<Format>().is_err());
    }
}
