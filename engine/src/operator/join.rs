//! JOIN of two streams, bounded in time: `FROM a JOIN b ON a.k = b.k AND
//! DATEDIFF(unit, a, b) BETWEEN lo AND hi` pairs each event of `a` with the
//! events of `b` with equal keys whose time is between `lo` and `hi` units
//! after it. Both sides are kept in memory only as long as a future event
//! of the other side can still match them (the watermarks tell), so state is
//! bounded by the time bound. `LEFT JOIN` emits an event of `a` that found no
//! match, with NULLs for `b`, once no match can come any more.
//!
//! Rows of the join carry each side as a record named by its alias (`a.k`
//! reads it), and every column whose name only one side has under its own
//! name. A pair's event time is the later of its two events' (the earliest
//! moment the pair is known); an unmatched left event's is its time plus
//! `hi`, when it is known to have no match.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StructArray, TimestampMicrosecondArray,
    new_null_array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, interleave};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::PhysicalExpr;

use super::{Operator, Output};
use crate::error::EngineError;
use crate::time::{EVENT_TIME, EventTime, event_time_type};

/// How the rows of the two sides are put together.
#[derive(Debug, Clone)]
pub struct JoinLayout {
    /// Each side's visible columns, as its record's fields.
    left_fields: Fields,
    right_fields: Fields,
    /// Where each side's columns are in its input batches.
    left_columns: Vec<usize>,
    right_columns: Vec<usize>,
    /// Columns of each side also given under their own name (names the
    /// other side does not have): indexes into the side's fields.
    left_flat: Vec<usize>,
    right_flat: Vec<usize>,
    pub schema: SchemaRef,
}

fn visible(schema: &Schema) -> (Fields, Vec<usize>) {
    let (fields, columns): (Vec<Field>, Vec<usize>) = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.name().starts_with("__iotql_"))
        .map(|(i, f)| (f.as_ref().clone().with_nullable(true), i))
        .unzip();
    (Fields::from(fields), columns)
}

impl JoinLayout {
    pub fn new(left_alias: &str, left: &Schema, right_alias: &str, right: &Schema) -> Self {
        let (left_fields, left_columns) = visible(left);
        let (right_fields, right_columns) = visible(right);
        let has = |fields: &Fields, name: &str| {
            fields.iter().any(|f| f.name().eq_ignore_ascii_case(name))
        };
        let aliases = [left_alias, right_alias];
        let flat = |own: &Fields, other: &Fields| -> Vec<usize> {
            own.iter()
                .enumerate()
                .filter(|(_, f)| {
                    !has(other, f.name())
                        && !aliases.iter().any(|a| a.eq_ignore_ascii_case(f.name()))
                })
                .map(|(i, _)| i)
                .collect()
        };
        let left_flat = flat(&left_fields, &right_fields);
        let right_flat = flat(&right_fields, &left_fields);
        let mut fields = vec![
            Field::new(left_alias, DataType::Struct(left_fields.clone()), true),
            Field::new(right_alias, DataType::Struct(right_fields.clone()), true),
        ];
        fields.extend(left_flat.iter().map(|&i| left_fields[i].as_ref().clone()));
        fields.extend(right_flat.iter().map(|&i| right_fields[i].as_ref().clone()));
        fields.push(Field::new(EVENT_TIME, event_time_type(), false));
        JoinLayout {
            left_fields,
            right_fields,
            left_columns,
            right_columns,
            left_flat,
            right_flat,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// A side's visible columns of `batch`.
    pub(crate) fn side(&self, left: bool, batch: &RecordBatch) -> Vec<ArrayRef> {
        let columns = if left {
            &self.left_columns
        } else {
            &self.right_columns
        };
        columns.iter().map(|&i| batch.column(i).clone()).collect()
    }

    /// Rows of the join from each side's columns (`None`: NULLs for that
    /// side) and the event times.
    pub fn rows(
        &self,
        left: Option<Vec<ArrayRef>>,
        right: Option<Vec<ArrayRef>>,
        times: Vec<i64>,
    ) -> Result<RecordBatch, EngineError> {
        let n = times.len();
        let record =
            |fields: &Fields, columns: Option<Vec<ArrayRef>>| -> Result<ArrayRef, EngineError> {
                Ok(match columns {
                    Some(c) => Arc::new(StructArray::try_new(fields.clone(), c, None)?),
                    None => new_null_array(&DataType::Struct(fields.clone()), n),
                })
            };
        let l = record(&self.left_fields, left)?;
        let r = record(&self.right_fields, right)?;
        let mut columns = vec![l.clone(), r.clone()];
        for (record, flat) in [(&l, &self.left_flat), (&r, &self.right_flat)] {
            let s = record.as_struct();
            for &i in flat {
                // A NULL record's fields are NULL too.
                let child = s.column(i);
                columns.push(match s.nulls() {
                    Some(nulls) if nulls.null_count() > 0 => {
                        let mask = BooleanArray::new(nulls.inner().clone(), None);
                        datafusion::arrow::compute::nullif(
                            child,
                            &datafusion::arrow::compute::not(&mask)?,
                        )?
                    }
                    _ => child.clone(),
                });
            }
        }
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(times).with_timezone("UTC"),
        ));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Equal keys and a time bound; what else ON says is checked on the pairs.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub layout: JoinLayout,
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// `t_right - t_left` must be within `[lo, hi]` microseconds.
    pub lo: i64,
    pub hi: i64,
    /// The rest of ON, over the join's rows.
    pub residual: Option<Arc<dyn PhysicalExpr>>,
    pub left_outer: bool,
}

/// A side's buffered events.
#[derive(Debug, Default)]
struct Buffer {
    /// Batch id -> its columns and how many stored rows point into it.
    batches: HashMap<usize, (Vec<ArrayRef>, usize)>,
    next_batch: usize,
    /// Key -> (time, batch, row, matched).
    rows: HashMap<Box<[u8]>, Vec<Stored>>,
}

impl Buffer {
    /// The rows `refs` (batch, row) of the stored batches, in that order:
    /// `width` columns.
    fn gather(&self, width: usize, refs: &[RowRef]) -> Result<Vec<ArrayRef>, EngineError> {
        let mut ids: Vec<usize> = refs.iter().map(|r| r.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let at: HashMap<usize, usize> = ids.iter().enumerate().map(|(i, &b)| (b, i)).collect();
        let indices: Vec<(usize, usize)> = refs.iter().map(|&(b, r)| (at[&b], r)).collect();
        (0..width)
            .map(|c| {
                let arrays: Vec<&dyn Array> = ids
                    .iter()
                    .map(|&b| match self.batches.get(&b) {
                        Some((cols, _)) => Ok(cols[c].as_ref()),
                        None => Err(EngineError::Internal(
                            "a join row outlived its batch".into(),
                        )),
                    })
                    .collect::<Result<_, _>>()?;
                Ok(interleave(&arrays, &indices)?)
            })
            .collect()
    }

    /// How many columns its batches have.
    fn width(&self) -> usize {
        self.batches.values().next().map_or(0, |(c, _)| c.len())
    }

    /// Keeps `columns` as a new batch that `live` stored rows point into.
    fn keep(&mut self, columns: Vec<ArrayRef>, live: usize) -> usize {
        let id = self.next_batch;
        self.next_batch += 1;
        self.batches.insert(id, (columns, live));
        id
    }
}

/// A stored row: (batch, row).
type RowRef = (usize, usize);

/// A match: the left row, the right row, the pair's event time.
#[derive(Debug, Clone, Copy)]
struct Pair {
    left: RowRef,
    right: RowRef,
    time: i64,
}

#[derive(Debug, Clone, Copy)]
struct Stored {
    time: i64,
    batch: usize,
    row: usize,
    matched: bool,
}

/// Encodes the join keys of either side's rows as comparable bytes (the
/// right side's keys cast to the left side's types).
#[derive(Debug)]
pub(crate) struct KeyEncoder {
    left: Vec<Arc<dyn PhysicalExpr>>,
    right: Vec<Arc<dyn PhysicalExpr>>,
    types: Vec<DataType>,
    converter: RowConverter,
}

impl KeyEncoder {
    pub(crate) fn new(
        left: Vec<Arc<dyn PhysicalExpr>>,
        right: Vec<Arc<dyn PhysicalExpr>>,
        layout: &JoinLayout,
    ) -> Result<Self, EngineError> {
        let types = left
            .iter()
            .map(|k| k.data_type(&layout.schema))
            .collect::<Result<Vec<_>, _>>()?;
        let converter =
            RowConverter::new(types.iter().map(|t| SortField::new(t.clone())).collect())?;
        Ok(KeyEncoder {
            left,
            right,
            types,
            converter,
        })
    }

    /// Each row's key (`None` when a key is NULL: it matches nothing). The
    /// keys are compiled over the join's rows: a side's rows are seen as
    /// join rows with NULLs for the other side.
    pub(crate) fn encode(
        &self,
        layout: &JoinLayout,
        left: bool,
        columns: &[ArrayRef],
        times: &[i64],
    ) -> Result<Vec<Option<Box<[u8]>>>, EngineError> {
        let n = times.len();
        let own = Some(columns.to_vec());
        let batch = if left {
            layout.rows(own, None, times.to_vec())?
        } else {
            layout.rows(None, own, times.to_vec())?
        };
        let exprs = if left { &self.left } else { &self.right };
        let columns = exprs
            .iter()
            .zip(&self.types)
            .map(|(e, t)| {
                let a = e.evaluate(&batch)?.into_array(n)?;
                Ok(if a.data_type() == t { a } else { cast(&a, t)? })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        let rows = self.converter.convert_columns(&columns)?;
        Ok((0..n)
            .map(|i| {
                columns
                    .iter()
                    .all(|c| c.is_valid(i))
                    .then(|| rows.row(i).as_ref().into())
            })
            .collect())
    }
}

/// A side's rows of a batch: its columns, their event times and their keys.
pub(crate) struct SideRows {
    pub columns: Vec<ArrayRef>,
    pub times: Vec<i64>,
    pub keys: Vec<Option<Box<[u8]>>>,
}

impl KeyEncoder {
    /// The rows of `batch` (an input of side `left`) with their keys.
    pub(crate) fn side_rows(
        &self,
        layout: &JoinLayout,
        left: bool,
        batch: &RecordBatch,
    ) -> Result<SideRows, EngineError> {
        let times = super::event_times(batch)?;
        let columns = layout.side(left, batch);
        let keys = self.encode(layout, left, &columns, &times)?;
        Ok(SideRows {
            columns,
            times,
            keys,
        })
    }
}

pub struct JoinOperator {
    spec: JoinSpec,
    keys: KeyEncoder,
    left: Buffer,
    right: Buffer,
    /// The watermarks of the two inputs.
    left_wm: i64,
    right_wm: i64,
}

impl std::fmt::Debug for JoinOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinOperator")
            .field("left_keys", &self.left.rows.len())
            .field("right_keys", &self.right.rows.len())
            .finish_non_exhaustive()
    }
}

impl JoinOperator {
    pub fn new(spec: JoinSpec) -> Result<Self, EngineError> {
        let keys = KeyEncoder::new(
            spec.left_keys.clone(),
            spec.right_keys.clone(),
            &spec.layout,
        )?;
        Ok(JoinOperator {
            spec,
            keys,
            left: Buffer::default(),
            right: Buffer::default(),
            left_wm: i64::MIN,
            right_wm: i64::MIN,
        })
    }

    pub fn schema(&self) -> SchemaRef {
        self.spec.layout.schema.clone()
    }

    /// Pairs (left, right) as rows of the join, the residual applied; the
    /// pairs kept, by position.
    fn pairs(&self, pairs: &[Pair]) -> Result<(RecordBatch, Vec<bool>), EngineError> {
        let refs = |f: fn(&Pair) -> RowRef| pairs.iter().map(f).collect::<Vec<_>>();
        let left = self
            .left
            .gather(self.spec.layout.left_fields.len(), &refs(|p| p.left))?;
        let right = self
            .right
            .gather(self.spec.layout.right_fields.len(), &refs(|p| p.right))?;
        let times = pairs.iter().map(|p| p.time).collect();
        let rows = self.spec.layout.rows(Some(left), Some(right), times)?;
        let keep = match &self.spec.residual {
            None => vec![true; rows.num_rows()],
            Some(r) => {
                let mask = r.evaluate(&rows)?.into_array(rows.num_rows())?;
                let mask = mask.as_boolean();
                (0..rows.num_rows())
                    .map(|i| mask.is_valid(i) && mask.value(i))
                    .collect()
            }
        };
        let kept = filter_record_batch(&rows, &BooleanArray::from(keep.clone()))?;
        Ok((kept, keep))
    }

    fn arrive(
        &mut self,
        left: bool,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let SideRows {
            columns,
            times,
            keys,
        } = self.keys.side_rows(&self.spec.layout, left, &batch)?;
        let (own, other) = if left {
            (&mut self.left, &self.right)
        } else {
            (&mut self.right, &self.left)
        };
        let stored_rows = keys.iter().filter(|k| k.is_some()).count();
        let id = own.keep(columns, stored_rows);
        // Probe the other side.
        let (lo, hi) = (self.spec.lo, self.spec.hi);
        let mut pairs = Vec::new();
        let mut partners: Vec<(Box<[u8]>, usize)> = Vec::new();
        for (row, key) in keys.iter().enumerate() {
            let Some(key) = key else { continue };
            let t = times[row];
            if let Some(candidates) = other.rows.get(key) {
                for (i, c) in candidates.iter().enumerate() {
                    let d = if left { c.time - t } else { t - c.time };
                    if (lo..=hi).contains(&d) {
                        let (l, r) = if left {
                            ((id, row), (c.batch, c.row))
                        } else {
                            ((c.batch, c.row), (id, row))
                        };
                        pairs.push(Pair {
                            left: l,
                            right: r,
                            time: t.max(c.time),
                        });
                        partners.push((key.clone(), i));
                    }
                }
            }
        }
        // Store this side's rows (a row with a NULL key can only go unmatched).
        let mut unmatched_now = Vec::new();
        for (row, key) in keys.into_iter().enumerate() {
            let stored = Stored {
                time: times[row],
                batch: id,
                row,
                matched: false,
            };
            match key {
                Some(k) => own.rows.entry(k).or_default().push(stored),
                None if left && self.spec.left_outer => unmatched_now.push(stored),
                None => {}
            }
        }
        if !pairs.is_empty() {
            let (rows, kept) = self.pairs(&pairs)?;
            out.batch(rows);
            // Mark the left rows that found a match.
            for (pair, (keep, (key, i))) in pairs.iter().zip(kept.iter().zip(&partners)) {
                if !keep {
                    continue;
                }
                if left {
                    if let Some(v) = self.left.rows.get_mut(key)
                        && let Some(s) = v.iter_mut().find(|s| (s.batch, s.row) == pair.left)
                    {
                        s.matched = true;
                    }
                } else if let Some(v) = self.left.rows.get_mut(key)
                    && let Some(s) = v.get_mut(*i)
                {
                    s.matched = true;
                }
            }
        }
        if !unmatched_now.is_empty() {
            self.emit_unmatched(&unmatched_now, out)?;
        }
        // Rows that arrive when the other side is already past them (or has
        // ended) can have no match to come: settled now, not never.
        if left {
            self.expire(true, self.right_wm, out)?;
        } else {
            self.expire(false, self.left_wm, out)?;
        }
        self.release();
        Ok(())
    }

    /// Left rows that will never match, with NULLs for the right side.
    fn emit_unmatched(&mut self, rows: &[Stored], out: &mut Output) -> Result<(), EngineError> {
        if rows.is_empty() {
            return Ok(());
        }
        let refs: Vec<RowRef> = rows.iter().map(|s| (s.batch, s.row)).collect();
        let columns = self
            .left
            .gather(self.spec.layout.left_fields.len(), &refs)?;
        let times = rows
            .iter()
            .map(|s| s.time.saturating_add(self.spec.hi))
            .collect();
        out.batch(self.spec.layout.rows(Some(columns), None, times)?);
        Ok(())
    }

    /// Drops the rows of one side that no future row of the other side can
    /// match; `left` rows go unmatched then (LEFT JOIN: emitted).
    fn expire(&mut self, left: bool, wm: i64, out: &mut Output) -> Result<(), EngineError> {
        let (lo, hi) = (self.spec.lo, self.spec.hi);
        let mut gone = Vec::new();
        let buffer = if left {
            &mut self.left
        } else {
            &mut self.right
        };
        buffer.rows.retain(|_, rows| {
            rows.retain(|s| {
                // Future rows of the other side are at or after `wm`.
                let alive = wm != i64::MAX
                    && if left {
                        s.time.saturating_add(hi) >= wm
                    } else {
                        s.time.saturating_sub(lo) >= wm
                    };
                if !alive {
                    gone.push(*s);
                }
                alive
            });
            !rows.is_empty()
        });
        if left && self.spec.left_outer {
            let unmatched: Vec<Stored> = gone.iter().copied().filter(|s| !s.matched).collect();
            self.emit_unmatched(&unmatched, out)?;
        }
        let buffer = if left {
            &mut self.left
        } else {
            &mut self.right
        };
        for s in gone {
            if let Some((_, live)) = buffer.batches.get_mut(&s.batch) {
                *live = live.saturating_sub(1);
            }
        }
        self.release();
        Ok(())
    }

    /// Frees the batches no stored row points into.
    fn release(&mut self) {
        for buffer in [&mut self.left, &mut self.right] {
            buffer.batches.retain(|_, (_, live)| *live > 0);
        }
    }
}

impl Operator for JoinOperator {
    fn held_since(&self) -> Option<EventTime> {
        // Stored rows live until the other side's watermark passes their
        // reach (see `expire`).
        let left = (!self.left.rows.is_empty()).then(|| self.right_wm.saturating_sub(self.spec.hi));
        let right =
            (!self.right.rows.is_empty()).then(|| self.left_wm.saturating_add(self.spec.lo));
        left.into_iter().chain(right).min().map(EventTime)
    }

    fn on_batch(
        &mut self,
        input: usize,
        batch: RecordBatch,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        self.arrive(input == 0, batch, out)
    }

    fn on_port_watermark(
        &mut self,
        port: usize,
        wm: EventTime,
        out: &mut Output,
    ) -> Result<(), EngineError> {
        // The right side's watermark ends left rows' chances, and the other
        // way round.
        if port == 1 {
            self.right_wm = self.right_wm.max(wm.0);
        } else {
            self.left_wm = self.left_wm.max(wm.0);
        }
        self.expire(port == 1, wm.0, out)
    }

    /// The two inputs' watermarks; then per side: its stored rows (key,
    /// time, row, matched), each with its columns, as Arrow IPC.
    fn snapshot(&mut self) -> Result<Vec<u8>, EngineError> {
        let mut wms = self.left_wm.to_le_bytes().to_vec();
        wms.extend(self.right_wm.to_le_bytes());
        let mut parts = vec![wms];
        for buffer in [&self.left, &self.right] {
            let mut stored: Vec<(&Box<[u8]>, &Stored)> = buffer
                .rows
                .iter()
                .flat_map(|(k, rows)| rows.iter().map(move |s| (k, s)))
                .collect();
            stored.sort_by_key(|(_, s)| (s.batch, s.row));
            let mut sets = Vec::new();
            if !stored.is_empty() {
                let mut columns: Vec<ArrayRef> = vec![
                    Arc::new(datafusion::arrow::array::BinaryArray::from_iter_values(
                        stored.iter().map(|(k, _)| k.as_ref()),
                    )),
                    Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                        stored.iter().map(|(_, s)| s.time),
                    )),
                    Arc::new(BooleanArray::from_iter(
                        stored.iter().map(|(_, s)| Some(s.matched)),
                    )),
                ];
                let refs: Vec<RowRef> = stored.iter().map(|(_, s)| (s.batch, s.row)).collect();
                columns.extend(buffer.gather(buffer.width(), &refs)?);
                sets.push(columns);
            }
            parts.push(crate::window::ipc::write(&sets)?);
        }
        Ok(crate::window::ipc::sections(&parts))
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), EngineError> {
        let parts = crate::window::ipc::split_sections(state)?;
        let bad = || EngineError::State("a join state does not fit this job".into());
        let [wms, left, right] = parts.as_slice() else {
            return Err(bad());
        };
        let (l, r) = wms.split_at_checked(8).ok_or_else(bad)?;
        self.left_wm = i64::from_le_bytes(l.try_into().map_err(|_| bad())?);
        self.right_wm = i64::from_le_bytes(r.try_into().map_err(|_| bad())?);
        for (buffer, part) in [(&mut self.left, left), (&mut self.right, right)] {
            *buffer = Buffer::default();
            for columns in crate::window::ipc::read(part)? {
                let keys = crate::window::ipc::binary_column(&columns, 0)?;
                let times = crate::window::ipc::column::<datafusion::arrow::datatypes::Int64Type>(
                    &columns, 1,
                )?;
                let matched = columns
                    .get(2)
                    .map(|c| c.as_boolean().clone())
                    .ok_or_else(|| EngineError::State("a join state lacks its flags".into()))?;
                let id = buffer.keep(columns[3..].to_vec(), keys.len());
                for row in 0..keys.len() {
                    buffer
                        .rows
                        .entry(keys.value(row).into())
                        .or_default()
                        .push(Stored {
                            time: times.value(row),
                            batch: id,
                            row,
                            matched: matched.value(row),
                        });
                }
            }
        }
        Ok(())
    }
}

/// Which side of a join an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The conjuncts of an AND tree.
fn conjuncts<'e>(e: &'e iotql_dsl::ast::Expr, out: &mut Vec<&'e iotql_dsl::ast::Expr>) {
    use iotql_dsl::ast::{BinaryOp, ExprKind};
    match &e.kind {
        ExprKind::Binary {
            op: BinaryOp::And,
            left,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        _ => out.push(e),
    }
}

fn integer(e: &iotql_dsl::ast::Expr) -> Option<i64> {
    use iotql_dsl::ast::{ExprKind, Literal, UnaryOp};
    match &e.kind {
        ExprKind::Literal(Literal::Integer(i)) => Some(*i),
        ExprKind::Unary {
            op: UnaryOp::Minus,
            expr,
        } => integer(expr).map(|i| -i),
        _ => None,
    }
}

fn join_error(span: iotql_dsl::Span, message: String) -> Vec<iotql_dsl::Diagnostic> {
    vec![iotql_dsl::Diagnostic::new(
        "iotql::join",
        span,
        message,
        "here",
    )]
}

/// What ON says, compiled over the join's rows.
pub(crate) struct OnParts {
    pub left_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub right_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// `t_right - t_left` within `[lo, hi]` microseconds, if ON bounds it.
    pub bound: Option<(i64, i64)>,
    pub residual: Option<Arc<dyn PhysicalExpr>>,
}

/// Splits ON into the equal keys (an expression of one side = one of the
/// other), the DATEDIFF time bound, and the rest.
pub(crate) fn split_on(
    on: &iotql_dsl::ast::Expr,
    left_alias: &str,
    right_alias: &str,
    layout: &JoinLayout,
    compiler: &crate::expr::ExprCompiler,
) -> Result<OnParts, Vec<iotql_dsl::Diagnostic>> {
    use iotql_dsl::ast::{BinaryOp, Expr, ExprKind};
    let error = join_error;
    let side_of_name = |name: &str| -> Option<Side> {
        if name.eq_ignore_ascii_case(left_alias) {
            return Some(Side::Left);
        }
        if name.eq_ignore_ascii_case(right_alias) {
            return Some(Side::Right);
        }
        let has = |f: &Fields| f.iter().any(|x| x.name().eq_ignore_ascii_case(name));
        match (has(&layout.left_fields), has(&layout.right_fields)) {
            (true, false) => Some(Side::Left),
            (false, true) => Some(Side::Right),
            _ => None,
        }
    };
    let side_of = |e: &Expr| -> Option<Side> {
        let mut sides = Vec::new();
        let mut unknown = false;
        e.walk(&mut |x| match &x.kind {
            ExprKind::Column(path) => match side_of_name(&path[0].value) {
                Some(s) => sides.push(s),
                None => unknown = true,
            },
            ExprKind::Function(call) if call.is("DATEDIFF") => unknown = true,
            _ => {}
        });
        let first = *sides.first()?;
        (!unknown && sides.iter().all(|&s| s == first)).then_some(first)
    };
    // DATEDIFF(unit, x, y) over the two aliases: the signed microseconds of
    // `t_right - t_left` per unit.
    let datediff = |e: &Expr| -> Option<Result<i64, Vec<iotql_dsl::Diagnostic>>> {
        let ExprKind::Function(call) = &e.kind else {
            return None;
        };
        if !call.is("DATEDIFF") {
            return None;
        }
        let iotql_dsl::ast::FunctionArgs::List { args, .. } = &call.args else {
            return None;
        };
        let [unit, x, y] = args.as_slice() else {
            return None;
        };
        let alias = |e: &Expr| match &e.kind {
            ExprKind::Column(path) if path.len() == 1 => Some(path[0].value.clone()),
            _ => None,
        };
        let (Some(x), Some(y)) = (alias(x), alias(y)) else {
            return None;
        };
        let sign = if x.eq_ignore_ascii_case(left_alias) && y.eq_ignore_ascii_case(right_alias) {
            1
        } else if x.eq_ignore_ascii_case(right_alias) && y.eq_ignore_ascii_case(left_alias) {
            -1
        } else {
            return None;
        };
        let ExprKind::DatePart(part) = &unit.kind else {
            return Some(Err(error(
                unit.span,
                "DATEDIFF needs a time unit first".into(),
            )));
        };
        Some(part.micros().map(|m| sign * m).ok_or_else(|| {
            error(
                unit.span,
                format!(
                    "a JOIN's DATEDIFF needs a fixed unit (second, minute, hour, day), not `{part}`"
                ),
            )
        }))
    };
    let mut parts = Vec::new();
    conjuncts(on, &mut parts);
    let (mut lo, mut hi) = (i64::MIN, i64::MAX);
    let mut bounded = false;
    let mut left_keys = Vec::new();
    let mut right_keys = Vec::new();
    let mut residual: Vec<&Expr> = Vec::new();
    let schema = layout.schema.clone();
    // Intersects [lo, hi] with `d * value OP`.
    let mut bound = |per_unit: i64, low: Option<i64>, high: Option<i64>| {
        bounded = true;
        let (a, b) = (
            low.map_or(i64::MIN, |v| v.saturating_mul(per_unit)),
            high.map_or(i64::MAX, |v| v.saturating_mul(per_unit)),
        );
        let (a, b) = if per_unit < 0 { (b, a) } else { (a, b) };
        let (a, b) = (
            if a == i64::MAX { i64::MIN } else { a },
            if b == i64::MIN { i64::MAX } else { b },
        );
        lo = lo.max(a);
        hi = hi.min(b);
    };
    for part in parts {
        match &part.kind {
            ExprKind::Between {
                expr,
                negated: false,
                low,
                high,
            } => {
                if let Some(per_unit) = datediff(expr) {
                    let per_unit = per_unit?;
                    let (Some(l), Some(h)) = (integer(low), integer(high)) else {
                        return Err(error(
                            part.span,
                            "a JOIN's DATEDIFF is bounded by whole numbers".into(),
                        ));
                    };
                    bound(per_unit, Some(l), Some(h));
                    continue;
                }
                residual.push(part);
            }
            ExprKind::Binary {
                op,
                left: l,
                right: r,
            } => {
                let (d, v, op) = match (datediff(l), datediff(r)) {
                    (Some(d), None) => (d, integer(r), *op),
                    (None, Some(d)) => (
                        d,
                        integer(l),
                        match op {
                            BinaryOp::Lt => BinaryOp::Gt,
                            BinaryOp::LtEq => BinaryOp::GtEq,
                            BinaryOp::Gt => BinaryOp::Lt,
                            BinaryOp::GtEq => BinaryOp::LtEq,
                            other => *other,
                        },
                    ),
                    _ => {
                        if *op == BinaryOp::Eq {
                            match (side_of(l), side_of(r)) {
                                (Some(Side::Left), Some(Side::Right)) => {
                                    left_keys.push(l.as_ref());
                                    right_keys.push(r.as_ref());
                                    continue;
                                }
                                (Some(Side::Right), Some(Side::Left)) => {
                                    left_keys.push(r.as_ref());
                                    right_keys.push(l.as_ref());
                                    continue;
                                }
                                _ => {}
                            }
                        }
                        residual.push(part);
                        continue;
                    }
                };
                let per_unit = d?;
                let Some(v) = v else {
                    return Err(error(
                        part.span,
                        "a JOIN's DATEDIFF is compared with a whole number".into(),
                    ));
                };
                match op {
                    BinaryOp::LtEq => bound(per_unit, None, Some(v)),
                    BinaryOp::Lt => bound(per_unit, None, Some(v - 1)),
                    BinaryOp::GtEq => bound(per_unit, Some(v), None),
                    BinaryOp::Gt => bound(per_unit, Some(v + 1), None),
                    BinaryOp::Eq => bound(per_unit, Some(v), Some(v)),
                    _ => {
                        return Err(error(
                            part.span,
                            "this DATEDIFF condition does not bound the JOIN in time".into(),
                        ));
                    }
                }
            }
            _ => residual.push(part),
        }
    }
    let compile = |e: &Expr| compiler.compile(e, &schema).map_err(|d| vec![d]);
    let left_keys = left_keys
        .into_iter()
        .map(compile)
        .collect::<Result<Vec<_>, _>>()?;
    let right_keys = right_keys
        .into_iter()
        .map(compile)
        .collect::<Result<Vec<_>, _>>()?;
    let residual = match residual.split_first() {
        None => None,
        Some((first, rest)) => {
            let all = rest.iter().fold((*first).clone(), |acc, e| {
                Expr::new(
                    ExprKind::Binary {
                        op: BinaryOp::And,
                        left: Box::new(acc),
                        right: Box::new((*e).clone()),
                    },
                    e.span,
                )
            });
            Some(compile(&all)?)
        }
    };
    Ok(OnParts {
        left_keys,
        right_keys,
        bound: bounded.then_some((lo, hi)),
        residual,
    })
}

/// Compiles a JOIN of two streams: the layout of its rows, the equal keys,
/// the time bound and the rest of ON.
#[allow(clippy::too_many_arguments)]
pub fn compile(
    left_outer: bool,
    left_alias: &str,
    right_alias: &str,
    on: &iotql_dsl::ast::Expr,
    left: &SchemaRef,
    right: &SchemaRef,
    compiler: &crate::expr::ExprCompiler,
    span: iotql_dsl::Span,
) -> Result<(Box<dyn Operator>, SchemaRef), Vec<iotql_dsl::Diagnostic>> {
    let layout = JoinLayout::new(left_alias, left, right_alias, right);
    let parts = split_on(on, left_alias, right_alias, &layout, compiler)?;
    let Some((lo, hi)) = parts
        .bound
        .filter(|(lo, hi)| *lo != i64::MIN && *hi != i64::MAX)
    else {
        return Err(vec![
            iotql_dsl::Diagnostic::new(
                "iotql::join",
                span,
                "a JOIN of two streams needs a time bound in ON",
                "no DATEDIFF bound on both sides",
            )
            .with_help(format!(
                "add e.g. `AND DATEDIFF(second, {left_alias}, {right_alias}) BETWEEN 0 AND 60`: how far apart in time two events may be to match"
            )),
        ]);
    };
    if lo > hi {
        return Err(join_error(
            span,
            "the JOIN's time bounds leave no room for a match".into(),
        ));
    }
    let op = JoinOperator::new(JoinSpec {
        layout,
        left_keys: parts.left_keys,
        right_keys: parts.right_keys,
        lo,
        hi,
        residual: parts.residual,
        left_outer,
    })
    .map_err(|e| join_error(span, e.to_string()))?;
    let schema = op.schema();
    Ok((Box::new(op), schema))
}
