//! Windows: which windows an event belongs to, and the windowed aggregate.
//!
//! Windows sit on a fixed grid from the Unix epoch (plus an optional
//! offset) and cover `(start, end]`: an event exactly on a window's end
//! belongs to that window, not the next. A window is emitted, stamped with
//! its end, once the watermark has passed its end; empty windows emit nothing.

mod aggregate;
mod aggregation;
mod collect_top;
pub(crate) mod ipc;
mod percentile;
mod session;
mod sliding;

pub use aggregate::WindowAggregateOperator;
pub(crate) use aggregation::{compile_aggregate, whole_event};

use datafusion::arrow::datatypes::SchemaRef;
use iotql_dsl::Diagnostic;
use iotql_dsl::ast::{self, Expr, GroupBy, SelectItem};

use crate::expr::ExprCompiler;
use crate::operator::Operator;
use crate::operator::substream::{Factory, Substreamed};
use crate::plan::WindowSpec;
use crate::time::SUBSTREAM;
use aggregate::Assigner;
use aggregation::Aggregation;

/// Compiles a windowed SELECT over `input` (which carries the event time)
/// into the operator for its kind of window, and the schema of its rows.
/// Over substreams, each substream gets an operator of its own.
pub fn compile(
    window: &WindowSpec,
    group_by: &GroupBy,
    items: &[SelectItem],
    having: Option<&Expr>,
    input: &SchemaRef,
    compiler: &ExprCompiler,
) -> Result<(Box<dyn Operator>, SchemaRef), Vec<Diagnostic>> {
    let plan_error =
        |span, message: &str| vec![Diagnostic::new("iotql::plan", span, message, "here")];
    let aggregation = Aggregation::compile(group_by, items, having, input, compiler)?;
    let schema = aggregation.schema();
    let (make, span) = factory(window, aggregation, input, compiler, &plan_error)?;
    // Made once here, so that a window that cannot be built is refused
    // before anything runs.
    let first = make().map_err(|e| plan_error(span, &e.to_string()))?;
    if input.index_of(SUBSTREAM).is_ok() {
        let op = Substreamed::new(make, &schema);
        let schema = op.schema();
        Ok((Box::new(op), schema))
    } else {
        Ok((first, schema))
    }
}

/// How to make the operator of `window`, and the window's span.
fn factory(
    window: &WindowSpec,
    aggregation: Aggregation,
    input: &SchemaRef,
    compiler: &ExprCompiler,
    plan_error: &dyn Fn(iotql_dsl::Span, &str) -> Vec<Diagnostic>,
) -> Result<(Factory, iotql_dsl::Span), Vec<Diagnostic>> {
    let w = match window {
        WindowSpec::Snapshot => {
            let make: Factory = Box::new(move || {
                Ok(Box::new(WindowAggregateOperator::new(
                    Assigner::Snapshot,
                    aggregation.clone(),
                )))
            });
            return Ok((make, iotql_dsl::Span::default()));
        }
        WindowSpec::Window(w) => w,
    };
    let micros = |d: Option<ast::Duration>| d.and_then(|d| d.micros());
    let make: Factory = match w.kind {
        ast::WindowKind::Tumbling | ast::WindowKind::Hopping => {
            let size = micros(w.size)
                .ok_or_else(|| plan_error(w.span, "the window size must be a time"))?;
            let hop = if w.kind == ast::WindowKind::Tumbling {
                size
            } else {
                micros(w.hop).unwrap_or(size)
            };
            if hop > size {
                return Err(plan_error(
                    w.span,
                    "the hop of a hopping window must not exceed its size",
                ));
            }
            let offset = micros(w.offset).unwrap_or(0);
            let grid = Grid { size, hop, offset };
            Box::new(move || {
                Ok(Box::new(WindowAggregateOperator::new(
                    Assigner::Grid(grid),
                    aggregation.clone(),
                )))
            })
        }
        ast::WindowKind::Sliding => {
            let size = micros(w.size)
                .ok_or_else(|| plan_error(w.span, "the window size must be a time"))?;
            Box::new(move || {
                Ok(Box::new(sliding::SlidingWindowOperator::new(
                    aggregation.clone(),
                    size,
                )?))
            })
        }
        ast::WindowKind::Session => {
            let timeout = micros(w.timeout)
                .ok_or_else(|| plan_error(w.span, "the session timeout must be a time"))?;
            let max = micros(w.max_duration)
                .ok_or_else(|| plan_error(w.span, "the session max duration must be a time"))?;
            if max < timeout {
                return Err(plan_error(
                    w.span,
                    "a session's max duration must be at least its timeout",
                ));
            }
            let partition = w
                .partition_by
                .iter()
                .map(|k| compiler.compile(k, input))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|d| vec![d])?;
            let input = input.clone();
            Box::new(move || {
                Ok(Box::new(session::SessionWindowOperator::new(
                    aggregation.clone(),
                    timeout,
                    max,
                    partition.clone(),
                    &input,
                )?))
            })
        }
    };
    Ok((make, w.span))
}

/// Tumbling and hopping windows: ends on the grid `offset + k * hop`, each
/// covering `(end - size, end]`. A tumbling window has `hop == size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub size: i64,
    pub hop: i64,
    pub offset: i64,
}

impl Grid {
    /// The end of the earliest window containing `t`: the smallest grid
    /// point at or after `t`.
    pub fn first_end(&self, t: i64) -> i64 {
        let k = -((self.offset - t).div_euclid(self.hop));
        self.offset + k * self.hop
    }

    /// How many windows can contain one event (the most, at the grid's start).
    pub fn windows_per_event(&self) -> i64 {
        (self.size + self.hop - 1) / self.hop
    }

    /// Whether the window ending at `end` contains `t`.
    pub fn contains(&self, end: i64, t: i64) -> bool {
        end - self.size < t && t <= end
    }

    /// The ends of every window containing `t`, in order.
    pub fn ends(&self, t: i64) -> impl Iterator<Item = i64> + '_ {
        let first = self.first_end(t);
        (0..self.windows_per_event())
            .map(move |j| first + j * self.hop)
            .filter(move |&end| self.contains(end, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn an_event_on_a_window_end_belongs_to_that_window() {
        let tumbling = Grid {
            size: 5 * MIN,
            hop: 5 * MIN,
            offset: 0,
        };
        assert_eq!(tumbling.first_end(5 * MIN), 5 * MIN);
        assert_eq!(tumbling.first_end(5 * MIN + 1), 10 * MIN);
        assert_eq!(tumbling.first_end(1), 5 * MIN);
        assert_eq!(tumbling.first_end(0), 0);
    }

    #[test]
    fn negative_times_and_offsets_stay_on_the_grid() {
        let g = Grid {
            size: 10,
            hop: 10,
            offset: 3,
        };
        assert_eq!(g.first_end(-5), 3);
        assert_eq!(g.first_end(-8), -7);
        assert_eq!(g.first_end(-7), -7);
        assert_eq!(g.first_end(4), 13);
    }

    #[test]
    fn a_hopping_event_is_in_size_over_hop_windows() {
        let g = Grid {
            size: 10 * MIN,
            hop: MIN,
            offset: 0,
        };
        let ends: Vec<i64> = g.ends(30 * MIN + 17).collect();
        assert_eq!(ends.len(), 10);
        assert_eq!(ends[0], 31 * MIN);
        assert_eq!(ends[9], 40 * MIN);
    }

    proptest! {
        /// Every window of an event contains it, every containing window on
        /// the grid is listed, and a tumbling event has exactly one window.
        #[test]
        fn assignment_is_exact(t in -1_000_000i64..1_000_000, size in 1i64..500, hop_div in 1i64..6, offset in -50i64..50) {
            let hop = (size / hop_div).max(1);
            let g = Grid { size, hop, offset };
            let ends: Vec<i64> = g.ends(t).collect();
            for &e in &ends {
                prop_assert!(g.contains(e, t));
                prop_assert_eq!((e - offset).rem_euclid(hop), 0);
            }
            // No grid window outside the list contains t.
            let lo = g.first_end(t) - hop;
            prop_assert!(!g.contains(lo, t));
            let hi = ends.last().copied().unwrap_or(lo) + hop;
            prop_assert!(!g.contains(hi, t));
            if hop == size {
                prop_assert_eq!(ends.len(), 1);
            }
        }
    }
}
