//! A batch's rows as the values of a binary COPY: each column converted
//! once to the array type of its PostgreSQL type, then read row by row
//! without allocating (records and arrays excepted: they become JSON).

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, Utc};
use iotql_engine::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use iotql_engine::arrow::compute::{CastOptions, cast_with_options};
use iotql_engine::arrow::datatypes::{DataType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use iotql_engine::arrow::record_batch::RecordBatch;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::table::{Column, ColumnType};

/// One column of a batch, in the array type its values are sent from.
#[derive(Debug)]
enum Values {
    Text(StringArray),
    Int(Int64Array),
    Float(Float64Array),
    Bool(BooleanArray),
    /// Microseconds since the epoch, UTC.
    Time(TimestampMicrosecondArray),
    Json(Vec<Option<serde_json::Value>>),
    Bytes(BinaryArray),
}

/// A batch ready to be copied.
#[derive(Debug)]
pub(super) struct Rows {
    columns: Vec<Values>,
    len: usize,
}

impl Rows {
    /// Converts `batch`'s columns to the types of `columns`. Fails on a
    /// value the type cannot hold (an unsigned integer above the bigint
    /// range).
    pub(super) fn new(batch: &RecordBatch, columns: &[Column]) -> Result<Rows, String> {
        let converted = batch
            .columns()
            .iter()
            .zip(columns)
            .map(|(array, column)| {
                Values::new(array, column.ty).map_err(|e| format!("column `{}`: {e}", column.name))
            })
            .collect::<Result<_, _>>()?;
        Ok(Rows {
            columns: converted,
            len: batch.num_rows(),
        })
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Replaces `cells` with the values of row `row`, then, when
    /// `numbered`, its number (a staging table's last column).
    pub(super) fn fill<'a>(&'a self, row: usize, numbered: bool, cells: &mut Vec<Cell<'a>>) {
        cells.clear();
        cells.extend(self.columns.iter().map(|c| c.cell(row)));
        if numbered {
            cells.push(Cell::Int(row as i64));
        }
    }
}

fn cast(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    // Not `safe`: a value that does not fit is an error, not a NULL.
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    cast_with_options(array, to, &options).map_err(|e| e.to_string())
}

impl Values {
    fn new(array: &ArrayRef, ty: ColumnType) -> Result<Values, String> {
        Ok(match ty {
            ColumnType::Text => Values::Text(cast(array, &DataType::Utf8)?.as_string().clone()),
            ColumnType::BigInt => {
                Values::Int(cast(array, &DataType::Int64)?.as_primitive().clone())
            }
            ColumnType::Double => {
                Values::Float(cast(array, &DataType::Float64)?.as_primitive().clone())
            }
            ColumnType::Boolean => Values::Bool(array.as_boolean().clone()),
            ColumnType::Timestamptz => {
                // The unit only: the values stay UTC instants whatever the
                // time zone label.
                let tz = match array.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz))?;
                Values::Time(micros.as_primitive::<TimestampMicrosecondType>().clone())
            }
            ColumnType::Jsonb => Values::Json(json_values(array)?),
            ColumnType::Bytea => Values::Bytes(cast(array, &DataType::Binary)?.as_binary().clone()),
        })
    }

    fn cell(&self, row: usize) -> Cell<'_> {
        let null = match self {
            Values::Json(v) => v[row].is_none(),
            Values::Text(a) => a.is_null(row),
            Values::Int(a) => a.is_null(row),
            Values::Float(a) => a.is_null(row),
            Values::Bool(a) => a.is_null(row),
            Values::Time(a) => a.is_null(row),
            Values::Bytes(a) => a.is_null(row),
        };
        if null {
            return Cell::Null;
        }
        match self {
            Values::Text(a) => Cell::Text(a.value(row)),
            Values::Int(a) => Cell::Int(a.value(row)),
            Values::Float(a) => Cell::Float(a.value(row)),
            Values::Bool(a) => Cell::Bool(a.value(row)),
            Values::Time(a) => Cell::Time(a.value(row)),
            Values::Json(v) => v[row].as_ref().map_or(Cell::Null, Cell::Json),
            Values::Bytes(a) => Cell::Bytes(a.value(row)),
        }
    }
}

/// Each value of a record or array column as the JSON the jsonl output
/// writes for it.
fn json_values(array: &ArrayRef) -> Result<Vec<Option<serde_json::Value>>, String> {
    let schema = Schema::new(vec![Field::new("v", array.data_type().clone(), true)]);
    let batch =
        RecordBatch::try_new(schema.into(), vec![array.clone()]).map_err(|e| e.to_string())?;
    let lines = crate::file::jsonl::json_lines(&batch).map_err(|e| e.to_string())?;
    lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(line).map_err(|e| e.to_string())?;
            Ok(object.remove("v").filter(|v| !v.is_null()))
        })
        .collect()
}

/// One value of a row, sent as the staging column's type.
#[derive(Debug)]
pub(super) enum Cell<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Microseconds since the epoch, UTC.
    Time(i64),
    Json(&'a serde_json::Value),
    Bytes(&'a [u8]),
}

impl ToSql for Cell<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Cell::Null => Ok(IsNull::Yes),
            Cell::Text(s) => s.to_sql(ty, out),
            Cell::Int(v) => v.to_sql(ty, out),
            Cell::Float(v) => v.to_sql(ty, out),
            Cell::Bool(v) => v.to_sql(ty, out),
            Cell::Time(micros) => DateTime::<Utc>::from_timestamp_micros(*micros)
                .ok_or_else(|| format!("{micros} µs after 1970 is out of range for a timestamp"))?
                .to_sql(ty, out),
            Cell::Json(v) => v.to_sql(ty, out),
            Cell::Bytes(b) => b.to_sql(ty, out),
        }
    }

    /// The staging table's types and the values are made from the same
    /// `ColumnType`, so they always match (and NULL fits any type).
    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
