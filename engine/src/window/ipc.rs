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
