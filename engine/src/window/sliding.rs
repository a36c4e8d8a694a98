//! Sliding windows: output only when the window's contents change, that
//! is when an event enters (at its time `t`) or leaves (at `t + size`).
//! The window at a point `p` covers `(p - size, p]`; a point whose window
//! is empty emits nothing. Events are kept, per key, until no future point
//! can include them (the watermark has passed `t + size`).

use std::collections::{BTreeSet, HashMap, VecDeque};

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, UInt64Array};
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;

use super::aggregation::{Aggregation, Inputs, gather};
use crate::error::EngineError;
use crate::operator::{Operator, Output};
use crate::time::{EVENT_TIME, EventTime};

/// A buffered row: (event time, batch id, row in the batch).
type RowRef = (i64, usize, usize);

/// A buffered batch: its evaluated inputs, and how many of its rows are
/// still needed.
struct Buffered {
    inputs: Inputs,
    live: usize,
}

pub struct SlidingWindowOperator {
    aggregation: Aggregation,
    size: i64,
    keys: Option<Box<dyn GroupValues>>,
    key_ids: Vec<usize>,
    batches: VecDeque<Buffered>,
    /// The id of `batches[0]`.
    first_batch: usize,
    /// Per key: its rows, in time order.
    rows: HashMap<usize, VecDeque<RowRef>>,
    /// Change points (time, key) not yet emitted.
    points: BTreeSet<(i64, usize)>,
    watermark: i64,
}

impl AsRef<Inputs> for Buffered {
    fn as_ref(&self) -> &Inputs {
        &self.inputs
    }
}

impl std::fmt::Debug for SlidingWindowOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlidingWindowOperator")
            .field("size", &self.size)
            .field("pending_points", &self.points.len())
            .finish_non_exhaustive()
    }
}

impl SlidingWindowOperator {
    pub(crate) fn new(aggregation: Aggregation, size: i64) -> Result<Self, EngineError> {
        Ok(SlidingWindowOperator {
            keys: aggregation.key_interner()?,
            aggregation,
            size,
            key_ids: Vec::new(),
            batches: VecDeque::new(),
            first_batch: 0,
            rows: HashMap::new(),
            points: BTreeSet::new(),
            watermark: i64::MIN,
        })
    }

    /// The rows of `key` inside the window ending at `p`.
    fn window_rows(&self, key: usize, p: i64) -> Vec<(usize, usize)> {
        self.rows.get(&key).map_or_else(Vec::new, |rows| {
            rows.iter()
                .filter(|(t, _, _)| p - self.size < *t && *t <= p)
                .map(|&(_, b, r)| (b - self.first_batch, r))
                .collect()
        })
    }

    /// Drops rows no future point can include: those at or before `wm - size`.
    fn evict(&mut self, wm: i64) {
        let horizon = wm.saturating_sub(self.size);
        for rows in self.rows.values_mut() {
            while rows.front().is_some_and(|(t, _, _)| *t <= horizon) {
                if let Some((_, b, _)) = rows.pop_front()
                    && let Some(batch) = self.batches.get_mut(b - self.first_batch)
                {
                    batch.live -= 1;
                }
            }
        }
        self.rows.retain(|_, rows| !rows.is_empty());
        while self.batches.front().is_some_and(|b| b.live == 0) {
            self.batches.pop_front();
            self.first_batch += 1;
        }
    }
}

impl Operator for SlidingWindowOperator {
    fn held_since(&self) -> Option<EventTime> {
        // An event at t has change points at t and t + size; the earliest
        // point not yet emitted may belong to an event `size` before it.
        let &(point, _) = self.points.first()?;
        Some(EventTime(point.saturating_sub(self.size)))
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
        match &mut self.keys {
            Some(k) => k.intern(&inputs.keys, &mut self.key_ids)?,
            None => {
                self.key_ids.clear();
                self.key_ids.resize(n, 0);
            }
        }
        let times = batch
            .column(batch.schema_ref().index_of(EVENT_TIME)?)
            .as_primitive::<TimestampMicrosecondType>();
        let id = self.first_batch + self.batches.len();
        for (row, (&t, &key)) in times.values().iter().zip(&self.key_ids).enumerate() {
            let rows = self.rows.entry(key).or_default();
            // Keep time order (late events adjusted to the watermark may tie).
            let at = rows.partition_point(|(rt, _, _)| *rt <= t);
            rows.insert(at, (t, id, row));
            self.points.insert((t, key));
            self.points.insert((t.saturating_add(self.size), key));
        }
        self.batches.push_back(Buffered { inputs, live: n });
        Ok(())
    }

    /// Sections: the scalars; the interned keys; the buffered batches and
    /// their live counts; the rows per key; the pending change points.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut scalars = self.watermark.to_le_bytes().to_vec();
        scalars.extend((self.first_batch as u64).to_le_bytes());
        for b in &self.batches {
            scalars.extend((b.live as u64).to_le_bytes());
        }
        // Emitting the keys empties the interner; interning them again in
        // the same order gives them the same ids.
        let keys = match &mut self.keys {
            Some(k) => {
                let emitted = k.emit(EmitTo::All)?;
                k.intern(&emitted, &mut self.key_ids)?;
                super::ipc::write(&[emitted])?
            }
            None => Vec::new(),
        };
        let batches: Vec<Vec<ArrayRef>> = self
            .batches
            .iter()
            .map(|b| super::ipc::inputs_columns(&b.inputs))
            .collect();
        let mut by_key: Vec<(&usize, &VecDeque<RowRef>)> = self.rows.iter().collect();
        by_key.sort_by_key(|(k, _)| **k);
        let flat: Vec<(u64, i64, u64, u64)> = by_key
            .iter()
            .flat_map(|(k, rows)| {
                rows.iter()
                    .map(move |&(t, b, r)| (**k as u64, t, b as u64, r as u64))
            })
            .collect();
        let rows: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(flat.iter().map(|f| f.0))),
            Arc::new(Int64Array::from_iter_values(flat.iter().map(|f| f.1))),
            Arc::new(UInt64Array::from_iter_values(flat.iter().map(|f| f.2))),
            Arc::new(UInt64Array::from_iter_values(flat.iter().map(|f| f.3))),
        ];
        let points: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                self.points.iter().map(|p| p.0),
            )),
            Arc::new(UInt64Array::from_iter_values(
                self.points.iter().map(|p| p.1 as u64),
            )),
        ];
        Ok(super::ipc::sections(&[
            scalars,
            keys,
            super::ipc::write(&batches)?,
            super::ipc::write(&[rows])?,
            super::ipc::write(&[points])?,
        ]))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("a sliding window state does not fit this job".into());
        let parts = super::ipc::split_sections(state)?;
        let [scalars, keys, batches, rows, points] = parts.as_slice() else {
            return Err(bad());
        };
        let words: Vec<u64> = scalars
            .chunks(8)
            .map(|c| c.try_into().map(u64::from_le_bytes).map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [watermark, first_batch, live @ ..] = words.as_slice() else {
            return Err(bad());
        };
        self.watermark = *watermark as i64;
        self.first_batch = usize::try_from(*first_batch).map_err(|_| bad())?;
        self.keys = self.aggregation.key_interner()?;
        if let (Some(k), Some(columns)) =
            (&mut self.keys, super::ipc::read(keys)?.into_iter().next())
        {
            k.intern(&columns, &mut self.key_ids)?;
        }
        let (key_count, widths) = self.aggregation.input_widths();
        self.batches.clear();
        for (columns, &live) in super::ipc::read(batches)?.iter().zip(live) {
            self.batches.push_back(Buffered {
                inputs: super::ipc::inputs_from_columns(columns, key_count, &widths)?,
                live: usize::try_from(live).map_err(|_| bad())?,
            });
        }
        self.rows.clear();
        for columns in super::ipc::read(rows)? {
            let (k, t, b, r) = (
                super::ipc::column::<UInt64Type>(&columns, 0)?,
                super::ipc::column::<Int64Type>(&columns, 1)?,
                super::ipc::column::<UInt64Type>(&columns, 2)?,
                super::ipc::column::<UInt64Type>(&columns, 3)?,
            );
            for i in 0..k.len() {
                self.rows
                    .entry(k.value(i) as usize)
                    .or_default()
                    .push_back((t.value(i), b.value(i) as usize, r.value(i) as usize));
            }
        }
        self.points.clear();
        for columns in super::ipc::read(points)? {
            let (p, k) = (
                super::ipc::column::<Int64Type>(&columns, 0)?,
                super::ipc::column::<UInt64Type>(&columns, 1)?,
            );
            for i in 0..p.len() {
                self.points.insert((p.value(i), k.value(i) as usize));
            }
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm.0);
        let at_end = wm == EventTime::MAX;
        while let Some(&(p, _)) = self.points.first() {
            if p >= self.watermark && !at_end {
                break;
            }
            // Every key's change at this point, in one window state.
            let mut state = self.aggregation.new_state()?;
            let mut any = false;
            while let Some(&(q, key)) = self.points.first() {
                if q != p {
                    break;
                }
                self.points.pop_first();
                let refs = self.window_rows(key, p);
                if refs.is_empty() {
                    continue;
                }
                let inputs = gather(self.batches.make_contiguous(), &refs)?;
                self.aggregation.update(&mut state, &inputs, refs.len())?;
                any = true;
            }
            if any {
                out.batch(self.aggregation.emit(p, state)?);
            }
        }
        if !at_end {
            self.evict(self.watermark);
        }
        out.watermark(wm);
        Ok(())
    }
}
