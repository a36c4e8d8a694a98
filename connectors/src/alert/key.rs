//! An alert's idempotency key: a stable id of the output, the row's key
//! columns (option `key`; by default every column) and the row's event
//! time (`System.Timestamp()`: a window's end), so that the same alert made
//! again — a job that resumes from a checkpoint replays the events after it
//! — has the same key, and a receiver can drop repeats.
//!
//! It is xxHash3-128 (a specified hash: the same in every version of iotql
//! and on every machine) of those parts, each length-prefixed, with values
//! as arrow displays them; written as 32 hex digits.

use iotql_engine::arrow::array::Array;
use iotql_engine::arrow::datatypes::Schema;
use iotql_engine::arrow::error::ArrowError;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::arrow::util::display::{ArrayFormatter, FormatOptions};
use twox_hash::XxHash3_128;

/// 128 bits, big-endian.
pub(crate) type Key = [u8; 16];

/// Makes the keys of an output's rows.
#[derive(Debug, Clone)]
pub(crate) struct KeyMaker {
    /// The output's name, in lower case (names are case-insensitive).
    output: String,
    /// The key columns as the option names them; `None`: every column.
    names: Option<Vec<String>>,
    /// Their indices in the rows, in the option's order (set by `start`).
    columns: Vec<usize>,
    /// Their names in lower case, hashed with their values.
    column_names: Vec<String>,
}

impl KeyMaker {
    pub(crate) fn new(output: &str, names: Option<Vec<String>>) -> Self {
        KeyMaker {
            output: output.to_lowercase(),
            names,
            columns: Vec::new(),
            column_names: Vec::new(),
        }
    }

    /// Finds the key columns in the output's schema; a name that is not a
    /// column is refused with the columns there are.
    pub(crate) fn start(&mut self, schema: &Schema) -> Result<(), String> {
        self.columns = match &self.names {
            None => (0..schema.fields().len()).collect(),
            Some(names) => names
                .iter()
                .map(|n| crate::template::column_index(schema, n).map_err(|e| format!("key: {e}")))
                .collect::<Result<_, _>>()?,
        };
        self.column_names = self
            .columns
            .iter()
            .map(|&i| schema.field(i).name().to_lowercase())
            .collect();
        Ok(())
    }

    /// The key of each row of `batch`, whose event times (microseconds)
    /// are `times` when the job gives them.
    pub(crate) fn keys(
        &self,
        batch: &RecordBatch,
        times: Option<&[i64]>,
    ) -> Result<Vec<Key>, ArrowError> {
        let options = FormatOptions::default();
        let formatters = self
            .columns
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let mut keys = Vec::with_capacity(batch.num_rows());
        let mut parts = Vec::new();
        for row in 0..batch.num_rows() {
            parts.clear();
            part(&mut parts, self.output.as_bytes());
            for ((formatter, &i), name) in
                formatters.iter().zip(&self.columns).zip(&self.column_names)
            {
                part(&mut parts, name.as_bytes());
                // NULL is told from any text, the empty one included.
                if batch.column(i).is_null(row) {
                    parts.push(0);
                } else {
                    parts.push(1);
                    part(&mut parts, formatter.value(row).try_to_string()?.as_bytes());
                }
            }
            if let Some(time) = times.and_then(|t| t.get(row)) {
                part(&mut parts, &time.to_le_bytes());
            }
            keys.push(XxHash3_128::oneshot(&parts).to_be_bytes());
        }
        Ok(keys)
    }
}

/// Appends `bytes` with its length first, so that parts cannot run into
/// each other (`ab`,`c` is not `a`,`bc`).
fn part(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The key of several alerts together (a request that carries an array).
pub(crate) fn combined<'a>(keys: impl Iterator<Item = &'a Key>) -> Key {
    let joined: Vec<u8> = keys.flatten().copied().collect();
    XxHash3_128::oneshot(&joined).to_be_bytes()
}

/// 32 lower-case hex digits.
pub(crate) fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// `row` (a JSON object) with the field `"idempotency_key":"HEX"` added
/// at its end.
pub(crate) fn with_key(row: &[u8], key: &Key) -> Vec<u8> {
    let field = format!("\"{FIELD}\":\"{}\"}}", hex(key));
    let object = row.strip_suffix(b"}").unwrap_or(row);
    let mut out = Vec::with_capacity(object.len() + field.len() + 1);
    out.extend_from_slice(object);
    if object.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(field.as_bytes());
    out
}

/// The field of a payload that holds its key.
pub(crate) const FIELD: &str = "idempotency_key";

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iotql_engine::arrow::array::{ArrayRef, Float64Array, StringArray};
    use iotql_engine::arrow::datatypes::{DataType, Field};

    use super::*;

    fn batch(devices: &[Option<&str>], temps: &[f64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("deviceId", DataType::Utf8, true),
            Field::new("temp", DataType::Float64, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(devices.to_vec())),
            Arc::new(Float64Array::from(temps.to_vec())),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn keys(maker: &mut KeyMaker, b: &RecordBatch, times: Option<&[i64]>) -> Vec<Key> {
        maker.start(&b.schema()).unwrap();
        maker.keys(b, times).unwrap()
    }

    #[test]
    fn the_same_alert_has_the_same_key_and_another_another() {
        let b = batch(
            &[Some("a"), Some("a"), Some("b"), None, Some("")],
            &[1.0, 2.0, 1.0, 1.0, 1.0],
        );
        let mut all = KeyMaker::new("Alerts", None);
        let k = keys(&mut all, &b, Some(&[5, 5, 5, 5, 5]));
        assert_eq!(
            k,
            keys(&mut KeyMaker::new("alerts", None), &b, Some(&[5; 5])),
            "same again, name in any case"
        );
        let distinct: std::collections::BTreeSet<Key> = k.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            5,
            "every column counts; NULL is not the empty text"
        );
        assert_ne!(
            k,
            keys(&mut all, &b, Some(&[6; 5])),
            "the event time counts"
        );
        assert_ne!(
            k,
            keys(&mut KeyMaker::new("other", None), &b, Some(&[5; 5])),
            "the output counts"
        );

        let mut by_device = KeyMaker::new("alerts", Some(vec!["DEVICEID".into()]));
        let k = keys(&mut by_device, &b, Some(&[5; 5]));
        assert_eq!(k[0], k[1], "only the key columns count");
        assert_ne!(k[0], k[2]);
        // The key is specified: the same bytes in every version.
        assert_eq!(hex(&k[0]).len(), 32);
    }

    #[test]
    fn a_key_column_that_is_not_there_is_refused() {
        let b = batch(&[Some("a")], &[1.0]);
        let err = KeyMaker::new("alerts", Some(vec!["device".into()]))
            .start(&b.schema())
            .unwrap_err();
        assert_eq!(
            err,
            "key: the output has no column `device` (its columns: deviceId, temp)"
        );
    }

    #[test]
    fn the_key_is_added_to_a_json_object() {
        let key = [0xab; 16];
        let hex = "ab".repeat(16);
        assert_eq!(
            String::from_utf8(with_key(br#"{"a":1}"#, &key)).unwrap(),
            format!(r#"{{"a":1,"idempotency_key":"{hex}"}}"#)
        );
        assert_eq!(
            String::from_utf8(with_key(b"{}", &key)).unwrap(),
            format!(r#"{{"idempotency_key":"{hex}"}}"#)
        );
    }
}
