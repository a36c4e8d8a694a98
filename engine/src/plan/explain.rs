//! `iotql explain`: the operator graph, one node a line, with its inputs.

use std::fmt::{self, Display, Formatter};

use iotql_dsl::ast::{GroupItem, SelectItem};

use super::*;

fn list<T: Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

impl Display for NodeKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            NodeKind::Scan { input } => write!(f, "Scan {input}"),
            NodeKind::Timestamp {
                input,
                by,
                over,
                time,
                arrival,
            } => {
                match by {
                    Some(e) => write!(f, "Timestamp {input} BY {e}")?,
                    None => write!(f, "Timestamp {input} BY arrival time")?,
                }
                if let Some(a) = arrival {
                    write!(f, " (arrival time: {a})")?;
                }
                if !over.is_empty() {
                    let keys: Vec<String> = over.iter().map(ToString::to_string).collect();
                    write!(f, " OVER {} (a clock per substream)", keys.join(", "))?;
                }
                let policy = match time.late_policy {
                    LatePolicy::Adjust => "adjust",
                    LatePolicy::Drop => "drop",
                };
                write!(
                    f,
                    " [out-of-order {}, late-arrival {}, late events: {policy}]",
                    human(time.out_of_order),
                    human(time.late_arrival)
                )
            }
            NodeKind::Filter { predicate } => write!(f, "Filter {predicate}"),
            NodeKind::Apply {
                outer,
                function,
                alias,
            } => write!(
                f,
                "{} {function} AS {alias}",
                if *outer { "OuterApply" } else { "CrossApply" }
            ),
            NodeKind::ReferenceJoin {
                reference,
                left_outer,
                left_alias,
                right_alias,
                on,
            } => write!(
                f,
                "{} {left_alias} with reference {reference} AS {right_alias} ON {on}",
                if *left_outer {
                    "LeftReferenceJoin"
                } else {
                    "ReferenceJoin"
                }
            ),
            NodeKind::Join {
                left_outer,
                left_alias,
                right_alias,
                on,
            } => write!(
                f,
                "{} {left_alias}, {right_alias} ON {on}",
                if *left_outer { "LeftJoin" } else { "Join" }
            ),
            NodeKind::Analytic { functions } => {
                let calls: Vec<String> = functions.iter().map(|a| a.call.to_string()).collect();
                write!(f, "Analytic [{}] (in event-time order)", calls.join(", "))
            }
            NodeKind::Project { items } => write!(f, "Project {}", list(items)),
            NodeKind::WindowAggregate {
                window,
                group_by,
                items,
                having,
            } => {
                let keys: Vec<String> = group_by
                    .items
                    .iter()
                    .filter(|i| matches!(i, GroupItem::Expr(_)))
                    .map(|i| i.to_string())
                    .collect();
                write!(f, "WindowAggregate {window}")?;
                if !keys.is_empty() {
                    write!(f, " keys [{}]", keys.join(", "))?;
                }
                write!(f, " select [{}]", list::<SelectItem>(items))?;
                if let Some(h) = having {
                    write!(f, " having {h}")?;
                }
                Ok(())
            }
            NodeKind::Union => f.write_str("Union"),
            NodeKind::Sink { output } => write!(f, "Sink {output}"),
        }
    }
}

impl Display for WindowSpec {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            WindowSpec::Window(w) => w.fmt(f),
            WindowSpec::Snapshot => f.write_str("Snapshot"),
        }
    }
}

impl Display for LogicalPlan {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (id, node) in self.nodes.iter().enumerate() {
            write!(f, "#{id} {}", node.kind)?;
            if !node.inputs.is_empty() {
                let inputs: Vec<String> = node.inputs.iter().map(|i| format!("#{i}")).collect();
                write!(f, " <- {}", inputs.join(", "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
