//! Tumbling, hopping and snapshot windows: every event belongs to the
//! windows on a fixed grid that contain it (snapshot: to the window ending
//! at its own time). One [`GroupState`] per open window, freed when the
//! watermark passes the window's end and it is emitted.

use std::collections::BTreeMap;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, Int64Array, UInt32Array};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;

use super::Grid;
use super::aggregation::{Aggregation, GroupState, Inputs};
use crate::error::EngineError;
use crate::operator::{Operator, Output};
use crate::time::{EVENT_TIME, EventTime};

/// Which windows an event falls in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Assigner {
    Grid(Grid),
    /// One window per distinct event time, ending at it.
    Snapshot,
}

pub struct WindowAggregateOperator {
    assigner: Assigner,
    aggregation: Aggregation,
    windows: BTreeMap<i64, GroupState>,
    watermark: i64,
}

impl std::fmt::Debug for WindowAggregateOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregateOperator")
            .field("assigner", &self.assigner)
            .field("open_windows", &self.windows.len())
            .finish_non_exhaustive()
    }
}

impl WindowAggregateOperator {
    pub(crate) fn new(assigner: Assigner, aggregation: Aggregation) -> Self {
        WindowAggregateOperator {
            assigner,
            aggregation,
            windows: BTreeMap::new(),
            watermark: i64::MIN,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.aggregation.schema()
    }

    fn update(&mut self, end: i64, inputs: &Inputs, rows: usize) -> Result<(), EngineError> {
        if !self.windows.contains_key(&end) {
            let state = self.aggregation.new_state()?;
            self.windows.insert(end, state);
        }
        match self.windows.get_mut(&end) {
            Some(state) => self.aggregation.update(state, inputs, rows),
            None => Err(EngineError::Internal("window vanished".into())),
        }
    }
}

impl Operator for WindowAggregateOperator {
    fn held_since(&self) -> Option<EventTime> {
        let (&end, _) = self.windows.first_key_value()?;
        // A window (end - size, end] holds events after its start.
        Some(EventTime(match &self.assigner {
            Assigner::Grid(grid) => end.saturating_sub(grid.size).saturating_add(1),
            Assigner::Snapshot => end,
        }))
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let Some((batch, inputs)) = self.aggregation.checked_inputs(batch, out)? else {
            return Ok(());
        };
        let n = batch.num_rows();
        let time_index = batch.schema_ref().index_of(EVENT_TIME)?;
        let times = batch
            .column(time_index)
            .as_primitive::<TimestampMicrosecondType>();
        let times = times.values();

        // Rows by the end of their first window, in order of that end.
        let first_end = |t: i64| match self.assigner {
            Assigner::Grid(g) => g.first_end(t),
            Assigner::Snapshot => t,
        };
        let first = first_end(times[0]);
        let runs: Vec<(i64, Option<UInt32Array>)> = if times.iter().all(|&t| first_end(t) == first)
        {
            vec![(first, None)]
        } else {
            let mut by_end: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
            for (row, &t) in times.iter().enumerate() {
                by_end.entry(first_end(t)).or_default().push(row as u32);
            }
            by_end
                .into_iter()
                .map(|(e, rows)| (e, Some(UInt32Array::from(rows))))
                .collect()
        };
        for (end, rows) in runs {
            let (run, run_rows) = match &rows {
                None => (None, n),
                Some(idx) => (Some(inputs.take(idx)?), idx.len()),
            };
            let run = run.as_ref().unwrap_or(&inputs);
            match self.assigner {
                Assigner::Snapshot => self.update(end, run, run_rows)?,
                Assigner::Grid(g) => {
                    let run_times: Vec<i64> = match &rows {
                        None => times.to_vec(),
                        Some(idx) => idx.values().iter().map(|&r| times[r as usize]).collect(),
                    };
                    for j in 0..g.windows_per_event() {
                        let window_end = end + j * g.hop;
                        let inside: Vec<bool> = run_times
                            .iter()
                            .map(|&t| g.contains(window_end, t))
                            .collect();
                        let count = inside.iter().filter(|&&b| b).count();
                        if count == run_rows {
                            self.update(window_end, run, run_rows)?;
                        } else if count > 0 {
                            let part = run.filter(&BooleanArray::from(inside))?;
                            self.update(window_end, &part, count)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The watermark, then every open window: its end, its group count and
    /// its state columns, as an Arrow IPC stream.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut bytes = self.watermark.to_le_bytes().to_vec();
        let mut batches = Vec::new();
        let ends: Vec<i64> = self.windows.keys().copied().collect();
        for end in ends {
            let Some(state) = self.windows.get_mut(&end) else {
                continue;
            };
            let groups = state.group_count();
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![end; groups]))];
            columns.extend(self.aggregation.save_state(state)?);
            batches.push(columns);
        }
        bytes.extend(super::ipc::write(&batches)?);
        Ok(bytes)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        if state.len() < 8 {
            return Err(EngineError::State(
                "a window state starts with its watermark".into(),
            ));
        }
        let (wm, rest) = state.split_at(8);
        self.watermark = i64::from_le_bytes(
            wm.try_into()
                .map_err(|_| EngineError::State("watermark".into()))?,
        );
        self.windows.clear();
        for columns in super::ipc::read(rest)? {
            let ends = super::ipc::column::<Int64Type>(&columns, 0)?;
            if ends.is_empty() {
                continue;
            }
            let end = ends.value(0);
            let groups = ends.len();
            let state = self.aggregation.state_from_columns(&columns[1..], groups)?;
            self.windows.insert(end, state);
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm.0);
        while let Some(entry) = self.windows.first_entry() {
            // A window covers (start, end]: an event at `end` is not late
            // until the watermark passes `end`.
            if *entry.key() >= self.watermark && wm != EventTime::MAX {
                break;
            }
            let (end, state) = entry.remove_entry();
            out.batch(self.aggregation.emit(end, state)?);
        }
        out.watermark(wm);
        Ok(())
    }
}
