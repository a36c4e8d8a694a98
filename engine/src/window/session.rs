//! Session windows: a session starts with an event and extends while events
//! keep coming within the timeout of the previous one. It closes at the
//! last event time plus the timeout, or earlier at a max-duration check
//! point: check points sit on the epoch grid of the max duration (0, max,
//! 2*max, ...), and at the first one where the session has lasted at least
//! the max duration it closes and a new session opens there (so a session
//! may last up to twice the max duration, as ASA documents). With
//! `OVER (PARTITION BY k)` each key has its own sessions; the GROUP BY
//! keys split a session's output rows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, UInt32Array, UInt64Array,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::aggregation::{Aggregation, GroupState, Inputs, gather};
use crate::error::EngineError;
use crate::operator::{Operator, Output};
use crate::time::EventTime;

#[derive(Debug, Clone, Copy)]
struct Session {
    id: u64,
    start: i64,
    last: i64,
}

pub struct SessionWindowOperator {
    aggregation: Aggregation,
    timeout: i64,
    max_duration: i64,
    partition: Vec<Arc<dyn PhysicalExpr>>,
    converter: Option<RowConverter>,
    /// The open session of each partition key.
    open: HashMap<Box<[u8]>, Session>,
    /// The groups of every session that has rows, open or closed.
    states: HashMap<u64, GroupState>,
    /// Closed sessions waiting for the watermark to pass their end.
    closed: BTreeMap<(i64, u64), ()>,
    next_id: u64,
    watermark: i64,
    /// Rows not yet assigned to a session: a session depends on the order
    /// of event times, so rows wait until the watermark has passed them
    /// and are then taken in time order.
    pending: Vec<Pending>,
}

struct Pending {
    inputs: Inputs,
    times: Vec<i64>,
    keys: Vec<Box<[u8]>>,
}

impl AsRef<Inputs> for Pending {
    fn as_ref(&self) -> &Inputs {
        &self.inputs
    }
}

impl std::fmt::Debug for SessionWindowOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowOperator")
            .field("open", &self.open.len())
            .field("closed", &self.closed.len())
            .finish_non_exhaustive()
    }
}

impl SessionWindowOperator {
    pub(crate) fn new(
        aggregation: Aggregation,
        timeout: i64,
        max_duration: i64,
        partition: Vec<Arc<dyn PhysicalExpr>>,
        input: &SchemaRef,
    ) -> Result<Self, EngineError> {
        let converter = if partition.is_empty() {
            None
        } else {
            let fields = partition
                .iter()
                .map(|p| Ok(SortField::new(p.data_type(input)?)))
                .collect::<Result<Vec<_>, EngineError>>()?;
            Some(RowConverter::new(fields)?)
        };
        Ok(SessionWindowOperator {
            aggregation,
            timeout,
            max_duration,
            partition,
            converter,
            open: HashMap::new(),
            states: HashMap::new(),
            closed: BTreeMap::new(),
            next_id: 0,
            watermark: i64::MIN,
            pending: Vec::new(),
        })
    }

    /// The first max-duration check point at which a session that started
    /// at `start` has lasted at least the max duration.
    fn check_point(&self, start: i64) -> i64 {
        let m = self.max_duration;
        let reached = start.saturating_add(m);
        let k = reached.div_euclid(m) + i64::from(reached.rem_euclid(m) != 0);
        k.saturating_mul(m)
    }

    /// When `s` closes if no further event joins it.
    fn end(&self, s: &Session) -> i64 {
        s.last
            .saturating_add(self.timeout)
            .min(self.check_point(s.start))
    }

    fn new_session(&mut self, start: i64, last: i64) -> Session {
        let s = Session {
            id: self.next_id,
            start,
            last,
        };
        self.next_id += 1;
        s
    }

    /// Assigns the pending rows the watermark has passed to sessions, in
    /// event-time order (arrival order among equal times).
    fn assign(&mut self, all: bool) -> Result<(), EngineError> {
        let wm = self.watermark;
        let mut refs: Vec<(i64, usize, usize)> = Vec::new();
        for (b, p) in self.pending.iter().enumerate() {
            for (r, &t) in p.times.iter().enumerate() {
                if all || t < wm {
                    refs.push((t, b, r));
                }
            }
        }
        if refs.is_empty() {
            return Ok(());
        }
        refs.sort();
        let mut assigned: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for (i, &(t, b, r)) in refs.iter().enumerate() {
            let key = self.pending[b].keys[r].clone();
            let current = self.open.get(&key).copied();
            let session = match current {
                Some(mut s) if t <= self.end(&s) => {
                    s.last = s.last.max(t);
                    s
                }
                Some(s) => {
                    let end = self.end(&s);
                    self.close(&s);
                    // Cut at a check point while events kept coming: the next
                    // session opens at the check point.
                    let start = if end < s.last.saturating_add(self.timeout)
                        && t <= s.last.saturating_add(self.timeout)
                    {
                        end
                    } else {
                        t
                    };
                    self.new_session(start, t)
                }
                None => self.new_session(t, t),
            };
            self.open.insert(key, session);
            assigned.entry(session.id).or_default().push(i as u32);
        }
        let order: Vec<(usize, usize)> = refs.iter().map(|&(_, b, r)| (b, r)).collect();
        let rows = gather(&self.pending, &order)?;
        for (id, idx) in assigned {
            let part = rows.take(&UInt32Array::from(idx.clone()))?;
            if !self.states.contains_key(&id) {
                let state = self.aggregation.new_state()?;
                self.states.insert(id, state);
            }
            if let Some(state) = self.states.get_mut(&id) {
                self.aggregation.update(state, &part, idx.len())?;
            }
        }
        // Keep the rows the watermark has not passed.
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let keep: Vec<u32> = (0..p.times.len() as u32)
                .filter(|&r| !all && p.times[r as usize] >= wm)
                .collect();
            if keep.is_empty() {
                continue;
            }
            let idx = UInt32Array::from(keep.clone());
            self.pending.push(Pending {
                inputs: p.inputs.take(&idx)?,
                times: keep.iter().map(|&r| p.times[r as usize]).collect(),
                keys: keep.iter().map(|&r| p.keys[r as usize].clone()).collect(),
            });
        }
        Ok(())
    }

    fn close(&mut self, s: &Session) {
        let end = self.end(s);
        self.closed.insert((end, s.id), ());
    }
}

impl Operator for SessionWindowOperator {
    fn held_since(&self) -> Option<EventTime> {
        let open = self.open.values().map(|s| s.start);
        // A closed session started at most the maximum duration before its end.
        let closed = self
            .closed
            .keys()
            .next()
            .map(|&(end, _)| end.saturating_sub(self.max_duration));
        let pending = self.pending.iter().flat_map(|p| p.times.iter().copied());
        open.chain(closed).chain(pending).min().map(EventTime)
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
        let times = crate::operator::event_times(&batch)?;
        let keys: Vec<Box<[u8]>> = match &self.converter {
            Some(c) => {
                let columns = self
                    .partition
                    .iter()
                    .map(|p| p.evaluate(&batch).and_then(|v| v.into_array(n)))
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = c.convert_columns(&columns)?;
                (0..n).map(|i| rows.row(i).as_ref().into()).collect()
            }
            None => vec![Box::new([]) as Box<[u8]>; n],
        };
        self.pending.push(Pending {
            inputs,
            times,
            keys,
        });
        Ok(())
    }

    /// Sections: the scalars; open sessions; closed sessions; each
    /// session's groups; the rows not yet assigned.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut scalars = self.watermark.to_le_bytes().to_vec();
        scalars.extend(self.next_id.to_le_bytes());
        let mut open: Vec<(&Box<[u8]>, &Session)> = self.open.iter().collect();
        open.sort_by_key(|(_, s)| s.id);
        let open_columns: Vec<ArrayRef> = vec![
            Arc::new(BinaryArray::from_iter_values(
                open.iter().map(|(k, _)| k.as_ref()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                open.iter().map(|(_, s)| s.id),
            )),
            Arc::new(Int64Array::from_iter_values(
                open.iter().map(|(_, s)| s.start),
            )),
            Arc::new(Int64Array::from_iter_values(
                open.iter().map(|(_, s)| s.last),
            )),
        ];
        let closed_columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                self.closed.keys().map(|k| k.0),
            )),
            Arc::new(UInt64Array::from_iter_values(
                self.closed.keys().map(|k| k.1),
            )),
        ];
        let mut ids: Vec<u64> = self.states.keys().copied().collect();
        ids.sort_unstable();
        let mut states = Vec::new();
        for id in ids {
            let Some(state) = self.states.get_mut(&id) else {
                continue;
            };
            let n = state.group_count();
            let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from(vec![id; n]))];
            columns.extend(self.aggregation.save_state(state)?);
            states.push(columns);
        }
        let pending: Vec<Vec<ArrayRef>> = self
            .pending
            .iter()
            .map(|p| {
                let mut columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(p.times.clone())),
                    Arc::new(BinaryArray::from_iter_values(
                        p.keys.iter().map(|k| k.as_ref()),
                    )),
                ];
                columns.extend(super::ipc::inputs_columns(&p.inputs));
                columns
            })
            .collect();
        Ok(super::ipc::sections(&[
            scalars,
            super::ipc::write(&[open_columns])?,
            super::ipc::write(&[closed_columns])?,
            super::ipc::write(&states)?,
            super::ipc::write(&pending)?,
        ]))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let bad = || EngineError::State("a session window state does not fit this job".into());
        let parts = super::ipc::split_sections(state)?;
        let [scalars, open, closed, states, pending] = parts.as_slice() else {
            return Err(bad());
        };
        let int = |at: usize| -> Result<[u8; 8], EngineError> {
            scalars
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(bad)
        };
        self.watermark = i64::from_le_bytes(int(0)?);
        self.next_id = u64::from_le_bytes(int(8)?);
        self.open.clear();
        for columns in super::ipc::read(open)? {
            let (keys, ids, starts, lasts) = (
                super::ipc::binary_column(&columns, 0)?,
                super::ipc::column::<UInt64Type>(&columns, 1)?,
                super::ipc::column::<Int64Type>(&columns, 2)?,
                super::ipc::column::<Int64Type>(&columns, 3)?,
            );
            for i in 0..keys.len() {
                let session = Session {
                    id: ids.value(i),
                    start: starts.value(i),
                    last: lasts.value(i),
                };
                self.open.insert(keys.value(i).into(), session);
            }
        }
        self.closed.clear();
        for columns in super::ipc::read(closed)? {
            let (ends, ids) = (
                super::ipc::column::<Int64Type>(&columns, 0)?,
                super::ipc::column::<UInt64Type>(&columns, 1)?,
            );
            for i in 0..ends.len() {
                self.closed.insert((ends.value(i), ids.value(i)), ());
            }
        }
        self.states.clear();
        for columns in super::ipc::read(states)? {
            let ids = super::ipc::column::<UInt64Type>(&columns, 0)?;
            if ids.is_empty() {
                continue;
            }
            let state = self
                .aggregation
                .state_from_columns(&columns[1..], ids.len())?;
            self.states.insert(ids.value(0), state);
        }
        self.pending.clear();
        let (keys, widths) = self.aggregation.input_widths();
        for columns in super::ipc::read(pending)? {
            let (times, partition) = (
                super::ipc::column::<Int64Type>(&columns, 0)?,
                super::ipc::binary_column(&columns, 1)?,
            );
            self.pending.push(Pending {
                inputs: super::ipc::inputs_from_columns(&columns[2..], keys, &widths)?,
                times: times.values().to_vec(),
                keys: partition
                    .iter()
                    .map(|k| k.unwrap_or_default().into())
                    .collect(),
            });
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: EventTime, out: &mut Output) -> Result<(), EngineError> {
        self.watermark = self.watermark.max(wm.0);
        let at_end = wm == EventTime::MAX;
        self.assign(at_end)?;
        // Open sessions that can no longer be extended.
        let mut ending: Vec<(Box<[u8]>, Session)> = self
            .open
            .iter()
            .filter(|(_, s)| at_end || self.end(s) < self.watermark)
            .map(|(k, s)| (k.clone(), *s))
            .collect();
        ending.sort_by_key(|(_, s)| s.id);
        for (key, s) in ending {
            self.open.remove(&key);
            self.close(&s);
        }
        while let Some(entry) = self.closed.first_entry() {
            let (end, id) = *entry.key();
            if end >= self.watermark && !at_end {
                break;
            }
            entry.remove();
            if let Some(state) = self.states.remove(&id) {
                out.batch(self.aggregation.emit(end, state)?);
            }
        }
        out.watermark(wm);
        Ok(())
    }
}
