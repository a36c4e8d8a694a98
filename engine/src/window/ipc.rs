//! Operator state as Arrow IPC: a list of column sets, one record batch each.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::EngineError;

/// Writes each set of columns as one batch of an IPC stream (no stream if
/// there is nothing to write).
pub(crate) fn write(sets: &[Vec<ArrayRef>]) -> Result<Vec<u8>, EngineError> {
    let Some(first) = sets.first() else {
        return Ok(Vec::new());
    };
    let schema = Arc::new(Schema::new(
        first
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let mut buf = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut buf, &schema)?;
        for columns in sets {
            writer.write(&RecordBatch::try_new(schema.clone(), columns.clone())?)?;
        }
        writer.finish()?;
    }
    Ok(buf)
}

pub(crate) fn read(bytes: &[u8]) -> Result<Vec<Vec<ArrayRef>>, EngineError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    reader
        .map(|b| Ok(b?.columns().to_vec()))
        .collect::<Result<Vec<_>, EngineError>>()
}

/// Joins byte sections, each prefixed with its length.
pub(crate) fn sections(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend((p.len() as u64).to_le_bytes());
        out.extend(p);
    }
    out
}

/// Splits what [`sections`] joined.
pub(crate) fn split_sections(mut bytes: &[u8]) -> Result<Vec<&[u8]>, EngineError> {
    let mut parts = Vec::new();
    while !bytes.is_empty() {
        let bad = || EngineError::State("a truncated operator state".into());
        let len: [u8; 8] = bytes
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| bad())?;
        let part = bytes.get(8..8 + len).ok_or_else(bad)?;
        parts.push(part);
        bytes = &bytes[8 + len..];
    }
    Ok(parts)
}

/// An `Inputs` as one column set: keys, then each aggregate's arguments.
pub(crate) fn inputs_columns(inputs: &super::aggregation::Inputs) -> Vec<ArrayRef> {
    inputs
        .keys
        .iter()
        .chain(inputs.values.iter().flatten())
        .cloned()
        .collect()
}

/// The `Inputs` that [`inputs_columns`] flattened, given each part's width.
pub(crate) fn inputs_from_columns(
    columns: &[ArrayRef],
    keys: usize,
    widths: &[usize],
) -> Result<super::aggregation::Inputs, EngineError> {
    let bad = || EngineError::State("buffered rows do not fit this job".into());
    let (k, mut rest) = (
        columns.get(..keys).ok_or_else(bad)?,
        columns.get(keys..).ok_or_else(bad)?,
    );
    let mut values = Vec::new();
    for &w in widths {
        let (mine, others) = (
            rest.get(..w).ok_or_else(bad)?,
            rest.get(w..).ok_or_else(bad)?,
        );
        values.push(mine.to_vec());
        rest = others;
    }
    Ok(super::aggregation::Inputs {
        keys: k.to_vec(),
        values,
    })
}

/// Column `i` of a restored column set, of the type `T`, or a state error.
pub(crate) fn column<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(
    columns: &[ArrayRef],
    i: usize,
) -> Result<&datafusion::arrow::array::PrimitiveArray<T>, EngineError> {
    use datafusion::arrow::array::AsArray;
    columns
        .get(i)
        .and_then(|c| c.as_primitive_opt::<T>())
        .ok_or_else(|| {
            EngineError::State(format!(
                "column {i} of a saved state is missing or of another type"
            ))
        })
}

/// Binary column `i` of a restored column set, or a state error.
pub(crate) fn binary_column(
    columns: &[ArrayRef],
    i: usize,
) -> Result<&datafusion::arrow::array::BinaryArray, EngineError> {
    use datafusion::arrow::array::AsArray;
    columns
        .get(i)
        .and_then(|c| c.as_binary_opt::<i32>())
        .ok_or_else(|| {
            EngineError::State(format!(
                "column {i} of a saved state is missing or not binary"
            ))
        })
}
