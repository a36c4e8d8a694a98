//! Stateful operators over substreams (`TIMESTAMP BY ... OVER key`): one
//! operator per substream, each moved on by its own substream's watermark.
//! The planner makes sure a window groups by the OVER key (an analytic
//! function partitions by it), so a group never spans two substreams and
//! every row the operator emits belongs to one.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Message, Operator, Output};
use crate::error::EngineError;
use crate::time::{EventTime, SUBSTREAM};

/// Makes a fresh operator (one per substream).
pub(crate) type Factory = Box<dyn Fn() -> Result<Box<dyn Operator>, EngineError> + Send>;

pub struct Substreamed {
    make: Factory,
    /// The inner operators' rows plus the substream column.
    schema: SchemaRef,
    /// Whether the inner operators' rows carry the substream already (they
    /// pass their input's columns through).
    carried: bool,
    /// Substream -> its operator's index in `operators`.
    index: HashMap<u64, usize>,
    /// In the order the substreams were first seen, which is the order in
    /// which windows closed together are emitted.
    operators: Vec<(u64, Box<dyn Operator>)>,
    /// Each substream's latest watermark, for operators created after it.
    clocks: HashMap<u64, i64>,
}

impl std::fmt::Debug for Substreamed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Substreamed")
            .field("substreams", &self.operators.len())
            .finish_non_exhaustive()
    }
}

impl Substreamed {
    /// `inner` is the schema of the rows the operators `make` makes emit.
    pub(crate) fn new(make: Factory, inner: &SchemaRef) -> Self {
        let carried = inner.index_of(SUBSTREAM).is_ok();
        let mut fields: Vec<Field> = inner.fields().iter().map(|f| f.as_ref().clone()).collect();
        if !carried {
            fields.push(Field::new(SUBSTREAM, DataType::UInt64, false));
        }
        Substreamed {
            make,
            schema: Arc::new(Schema::new(fields)),
            carried,
            index: HashMap::new(),
            operators: Vec::new(),
            clocks: HashMap::new(),
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The operator of substream `id`, made (and brought to the
    /// substream's watermark) on first use.
    fn operator(&mut self, id: u64, out: &mut Output) -> Result<usize, EngineError> {
        if let Some(&i) = self.index.get(&id) {
            return Ok(i);
        }
        let mut op = (self.make)()?;
        if let Some(&wm) = self.clocks.get(&id) {
            let mut inner = Output::default();
            op.on_watermark(EventTime(wm), &mut inner)?;
            self.relay(id, inner, out)?;
        }
        self.operators.push((id, op));
        self.index.insert(id, self.operators.len() - 1);
        Ok(self.operators.len() - 1)
    }

    /// Gives `rows` (all of substream `id`) to the substream's operator.
    fn feed(&mut self, id: u64, rows: RecordBatch, out: &mut Output) -> Result<(), EngineError> {
        let i = self.operator(id, out)?;
        let mut inner = Output::default();
        self.operators[i].1.on_batch(0, rows, &mut inner)?;
        self.relay(id, inner, out)
    }

    /// Passes on what substream `id`'s operator produced: its rows, marked
    /// with the substream; its watermarks are this operator's to send.
    fn relay(&self, id: u64, inner: Output, out: &mut Output) -> Result<(), EngineError> {
        out.dead_letters.extend(inner.dead_letters);
        for message in inner.messages {
            if let Message::Batch(batch) = message {
                if self.carried {
                    out.batch(batch);
                    continue;
                }
                let mut columns = batch.columns().to_vec();
                columns.push(Arc::new(UInt64Array::from(vec![id; batch.num_rows()])));
                out.batch(RecordBatch::try_new(self.schema.clone(), columns)?);
            }
        }
        Ok(())
    }

    /// Runs `f` on every substream's operator, in order.
    fn each(
        &mut self,
        out: &mut Output,
        f: impl Fn(&mut dyn Operator, &mut Output) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut operators = std::mem::take(&mut self.operators);
        let result = operators.iter_mut().try_for_each(|(id, op)| {
            let mut inner = Output::default();
            f(op.as_mut(), &mut inner)?;
            self.relay(*id, inner, out)
        });
        self.operators = operators;
        result
    }
}

impl Operator for Substreamed {
    fn held_since(&self) -> Option<EventTime> {
        self.operators
            .iter()
            .filter_map(|(_, op)| op.held_since())
            .min()
    }

    fn on_batch(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        let column = batch.schema_ref().index_of(SUBSTREAM)?;
        let ids = batch.column(column).as_primitive::<UInt64Type>().clone();
        let Some(&first) = ids.values().first() else {
            return Ok(());
        };
        if ids.values().iter().all(|&id| id == first) {
            return self.feed(first, batch, out);
        }
        // Rows grouped by substream (substreams in the order they appear,
        // rows in their order) with one `take`, then each group a slice.
        let mut groups: Vec<(u64, Vec<u32>)> = Vec::new();
        let mut at: HashMap<u64, usize> = HashMap::new();
        for (row, &id) in ids.values().iter().enumerate() {
            let slot = *at.entry(id).or_insert_with(|| {
                groups.push((id, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(row as u32);
        }
        let order: UInt32Array = groups
            .iter()
            .flat_map(|(_, rows)| rows.iter().copied())
            .collect();
        let sorted = take_record_batch(&batch, &order)?;
        let mut offset = 0;
        for (id, rows) in groups {
            self.feed(id, sorted.slice(offset, rows.len()), out)?;
            offset += rows.len();
        }
        Ok(())
    }

    fn on_substreams(
        &mut self,
        wms: Arc<Vec<(u64, EventTime)>>,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        for &(id, wm) in wms.iter() {
            let clock = self.clocks.entry(id).or_insert(i64::MIN);
            *clock = (*clock).max(wm.0);
            if let Some(&i) = self.index.get(&id) {
                let mut inner = Output::default();
                self.operators[i].1.on_watermark(wm, &mut inner)?;
                self.relay(id, inner, out)?;
            }
        }
        out.messages.push(Message::Substreams(wms));
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.each(out, |op, inner| op.on_watermark(wm, inner))?;
        out.watermark(wm);
        Ok(())
    }

    fn on_end(&mut self, out: &mut Output) -> Result<(), EngineError> {
        self.each(out, |op, inner| op.on_end(inner))
    }

    /// Sections: the substreams (id, watermark, whether it has an
    /// operator), then each operator's state in the order of the list.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut clocks: Vec<(u64, i64)> = self.clocks.iter().map(|(&k, &v)| (k, v)).collect();
        for (id, _) in &self.operators {
            if !self.clocks.contains_key(id) {
                clocks.push((*id, i64::MIN));
            }
        }
        // Operators first, in their order; then the clocks of the others.
        clocks.sort_by_key(|(id, _)| (self.index.get(id).copied().unwrap_or(usize::MAX), *id));
        let mut head = Vec::with_capacity(clocks.len() * 17);
        for (id, wm) in &clocks {
            head.extend(id.to_le_bytes());
            head.extend(wm.to_le_bytes());
            head.push(u8::from(self.index.contains_key(id)));
        }
        let mut parts = vec![head];
        for (_, op) in &mut self.operators {
            parts.push(op.snapshot()?);
        }
        Ok(crate::window::ipc::sections(&parts))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("a substream window state does not fit this job".into());
        let parts = crate::window::ipc::split_sections(state)?;
        let (head, states) = parts.split_first().ok_or_else(bad)?;
        if head.len() % 17 != 0 {
            return Err(bad());
        }
        self.clocks.clear();
        self.index.clear();
        self.operators.clear();
        let mut states = states.iter();
        for entry in head.chunks_exact(17) {
            let id = u64::from_le_bytes(entry[..8].try_into().map_err(|_| bad())?);
            let wm = i64::from_le_bytes(entry[8..16].try_into().map_err(|_| bad())?);
            if wm != i64::MIN {
                self.clocks.insert(id, wm);
            }
            if entry[16] == 1 {
                let mut op = (self.make)()?;
                op.restore(states.next().ok_or_else(bad)?)?;
                self.operators.push((id, op));
                self.index.insert(id, self.operators.len() - 1);
            }
        }
        if states.next().is_some() {
            return Err(bad());
        }
        Ok(())
    }
}
