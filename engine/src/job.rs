//! The embedding API: a job built from query text, started against the
//! schemas of its inputs and the sinks of its outputs, fed batches.

use std::collections::HashMap;
use std::fmt;

use datafusion::arrow::datatypes::SchemaRef;
use iotql_dsl::{CheckOptions, Diagnostic};

use crate::dataflow::Dataflow;
use crate::expr::ExprCompiler;
use crate::io::Sink;
use crate::plan::{self, LogicalPlan, PlanOptions};

/// Why a job was refused: every problem found, each with its position.
#[derive(Debug, Clone)]
pub struct Problems {
    pub diagnostics: Vec<Diagnostic>,
    /// The job text, to render the problems with carets.
    pub source: String,
}

impl Problems {
    /// The problems with the source line and a caret under each.
    pub fn render(&self, file: &str) -> String {
        iotql_dsl::render(
            &self.diagnostics,
            file,
            &self.source,
            iotql_dsl::Style::Plain,
        )
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{}", d.one_line("job", &self.source))?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// A parsed, checked and planned job.
#[derive(Debug, Clone)]
pub struct Job {
    source: String,
    plan: LogicalPlan,
}

impl Job {
    /// Parses, checks and plans `source` with the default time policy.
    pub fn parse(source: &str) -> Result<Job, Problems> {
        Self::with_options(source, &PlanOptions::default())
    }

    pub fn with_options(source: &str, options: &PlanOptions) -> Result<Job, Problems> {
        let problems = |diagnostics| Problems {
            diagnostics,
            source: source.to_string(),
        };
        let check = CheckOptions {
            inputs: options.extra_inputs.clone(),
            outputs: Vec::new(),
        };
        let script = iotql_dsl::parse_and_check(source, &check).map_err(problems)?;
        let plan = plan::build(&script, options).map_err(problems)?;
        Ok(Job {
            source: source.to_string(),
            plan,
        })
    }

    /// The operator graph (what `iotql explain` prints).
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// Compiles the job against its inputs' schemas and starts it, writing
    /// each output to its sink.
    pub fn start(
        &self,
        inputs: &[(&str, SchemaRef)],
        outputs: Vec<(&str, Box<dyn Sink>)>,
    ) -> Result<Dataflow, Problems> {
        let schemas: HashMap<String, SchemaRef> = inputs
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        let sinks: HashMap<String, Box<dyn Sink>> = outputs
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        Dataflow::compile(&self.plan, &schemas, sinks, &ExprCompiler::new()).map_err(
            |diagnostics| Problems {
                diagnostics,
                source: self.source.clone(),
            },
        )
    }
}
