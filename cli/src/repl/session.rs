//! The state of a REPL session and what each entry does: declarations
//! kept (paths made absolute), queries checked and planned against them and
//! run with the shared runner (rows on the terminal or into the output
//! named by INTO), meta-commands, `.save` of the session as a job file.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use iotql_connectors::deadletter::DeadLetterWriter;
use iotql_connectors::endpoint::{self, InputSpec, OutputSpec};
use iotql_connectors::lookup::{self, TableSource};
use iotql_dsl::ast::{
    CreateInput, CreateOutput, Ident, OptionEntry, Query, Script, SetExpr, Statement,
};
use iotql_dsl::{CheckOptions, Diagnostic, Style};
use iotql_engine::arrow::datatypes::{DataType, SchemaRef};
use iotql_engine::dataflow::Dataflow;
use iotql_engine::io::Sink;
use iotql_engine::plan::{LogicalPlan, PlanOptions};

use super::meta::{self, Meta, Speed};
use super::print::{self, Format, TerminalSink};
use super::statement::Entry;
use crate::Binding;
use crate::runner::{self, Bindings, Observer, OnInterrupt, PrepareError, human_count};

/// What the session was started with.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplOptions {
    pub inputs: Vec<Binding>,
    pub references: Vec<Binding>,
    pub outputs: Vec<Binding>,
    /// Where refused events go (default: a file in the temporary folder
    /// named after the process).
    pub dead_letter: Option<PathBuf>,
}

/// Events per batch; smaller when a replay is paced, so that rows come
/// out as event time goes by rather than a batch at a time.
const BATCH_SIZE: usize = 8192;
const PACED_BATCH_SIZE: usize = 32;

/// What the session does after an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    Continue,
    Quit,
}

/// The inputs of the session and their schemas, inferred on first need and
/// kept: `.schema` and completion read it.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// (name, where, declared schema), bound ones first.
    inputs: Vec<(String, Result<InputSpec, String>, Option<SchemaRef>)>,
    schemas: HashMap<String, SchemaRef>,
}

impl Catalog {
    pub(crate) fn input_names(&self) -> Vec<String> {
        self.inputs.iter().map(|(n, ..)| n.clone()).collect()
    }

    /// The columns of input `name`, read from the data (or declared).
    pub(crate) fn schema(&mut self, name: &str) -> Result<SchemaRef, String> {
        let key = name.to_ascii_lowercase();
        if let Some(s) = self.schemas.get(&key) {
            return Ok(s.clone());
        }
        let (name, spec, declared) = self
            .inputs
            .iter()
            .find(|(n, ..)| n.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let names = self.input_names();
                match iotql_dsl::suggest::closest(name, names.iter().map(String::as_str)) {
                    Some(c) => format!("no input `{name}`: did you mean `{c}`?"),
                    None if names.is_empty() => format!(
                        "no input `{name}`: bind one (iotql repl --input {name}=csv:PATH) or declare it (CREATE INPUT {name} WITH (...);)"
                    ),
                    None => format!("no input `{name}` (inputs: {})", names.join(", ")),
                }
            })?;
        let spec = spec.as_ref().map_err(|e| format!("input `{name}`: {e}"))?;
        let schema = match declared {
            Some(s) => s.clone(),
            None => endpoint::open_source(name, spec, None, 16, None)
                .map_err(|e| format!("input `{name}`: {e}"))?
                .schema(),
        };
        self.schemas.insert(key, schema.clone());
        Ok(schema)
    }

    /// The column names of every input that can be read without waiting
    /// (files, databases, the simulator), for completion.
    pub(crate) fn columns(&mut self) -> Vec<String> {
        let readable: Vec<String> = self
            .inputs
            .iter()
            .filter(|(_, spec, _)| {
                matches!(
                    spec,
                    Ok(InputSpec::Csv(_)
                        | InputSpec::JsonLines(_)
                        | InputSpec::Sqlite(_)
                        | InputSpec::Sim(_))
                )
            })
            .map(|(n, ..)| n.clone())
            .collect();
        let mut columns: Vec<String> = readable
            .iter()
            .filter_map(|n| self.schema(n).ok())
            .flat_map(|s| {
                s.fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        columns.sort();
        columns.dedup();
        columns
    }
}

/// `WITH (...)` options as a map, keys in lower case (as the planner reads them).
fn options_map(entries: &[OptionEntry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|e| (e.key.value.to_ascii_lowercase(), e.value.clone()))
        .collect()
}

/// `entries` with a relative `path` made absolute against `base`.
fn absolute_paths(entries: &mut [OptionEntry], base: &Path) {
    for e in entries.iter_mut() {
        if e.key.value.eq_ignore_ascii_case("path")
            && e.value != "-"
            && Path::new(&e.value).is_relative()
        {
            e.value = base.join(&e.value).display().to_string();
        }
    }
}

/// `path` relative to `folder` when it is inside it, else as it is.
fn relative_to(path: &str, folder: &Path) -> String {
    match Path::new(path).strip_prefix(folder) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.to_string(),
    }
}

/// A single-quoted ASA string.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The first SELECT of a query body (where its INTO stands).
fn first_select(body: &mut SetExpr) -> &mut iotql_dsl::ast::Select {
    match body {
        SetExpr::Select(s) => s,
        SetExpr::Union { left, .. } => first_select(left),
    }
}

/// Whether a query writes to the default output (no INTO).
fn has_into(q: &Query) -> bool {
    q.body.selects().iter().any(|s| s.into.is_some())
}

/// Paces a replay: the largest event time pushed so far advances `speed`
/// times faster than the wall clock.
#[derive(Debug)]
struct Pacer {
    speed: f64,
    first: Option<(i64, Instant)>,
}

impl Observer for Pacer {
    fn pushed(&mut self, dataflow: &Dataflow, _events: u64, _bytes: u64) -> Option<Instant> {
        let latest = dataflow
            .input_stats()
            .iter()
            .map(|i| i.stats.max_event_time.load(Ordering::Relaxed))
            .filter(|&t| t != i64::MIN)
            .max()?;
        let &mut (first, at) = self.first.get_or_insert((latest, Instant::now()));
        let ahead = (latest.saturating_sub(first)).max(0) as f64 / 1e6 / self.speed;
        Some(at + Duration::from_secs_f64(ahead))
    }
}

/// Runs without pacing.
#[derive(Debug)]
struct Unpaced;

impl Observer for Unpaced {}

pub(crate) struct Session {
    cwd: PathBuf,
    inputs: Vec<Binding>,
    references: Vec<Binding>,
    outputs: Vec<Binding>,
    /// CREATE INPUT/OUTPUT statements, paths absolute.
    declarations: Vec<Statement>,
    /// Queries that ran without error, in order.
    ran: Vec<Query>,
    pub(crate) format: Format,
    timing: bool,
    speed: Speed,
    pub(crate) catalog: Rc<RefCell<Catalog>>,
    dead: DeadLetterWriter,
    interrupted: Arc<AtomicBool>,
    style: Style,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("declarations", &self.declarations.len())
            .field("ran", &self.ran.len())
            .finish_non_exhaustive()
    }
}

/// The name diagnostics of typed statements are shown under.
const SHOWN: &str = "<repl>";

impl Session {
    pub(crate) fn new(options: ReplOptions, interrupted: Arc<AtomicBool>) -> Session {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let dead_path = options.dead_letter.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "iotql-repl-{}.deadletter.jsonl",
                std::process::id()
            ))
        });
        let style = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            Style::Color
        } else {
            Style::Plain
        };
        let session = Session {
            cwd,
            inputs: options.inputs,
            references: options.references,
            outputs: options.outputs,
            declarations: Vec::new(),
            ran: Vec::new(),
            format: Format::Table,
            timing: false,
            speed: Speed::Max,
            catalog: Rc::new(RefCell::new(Catalog::default())),
            dead: DeadLetterWriter::new(dead_path),
            interrupted,
            style,
        };
        session.refresh_catalog();
        session
    }

    pub(crate) fn dead_letter_path(&self) -> &Path {
        self.dead.path()
    }

    fn bindings(&self) -> Bindings<'_> {
        Bindings {
            inputs: &self.inputs,
            references: &self.references,
            outputs: &self.outputs,
        }
    }

    fn bound_inputs(&self) -> impl Iterator<Item = &Binding> {
        self.inputs.iter().chain(&self.references)
    }

    /// Tells the catalog which inputs there are now (a binding wins over a
    /// declaration of the same name); schemas inferred before are kept
    /// unless the input changed.
    fn refresh_catalog(&self) {
        let mut inputs: Vec<(String, Result<InputSpec, String>, Option<SchemaRef>)> = self
            .bound_inputs()
            .map(|b| (b.name.clone(), endpoint::parse_input_uri(&b.uri), None))
            .collect();
        for d in &self.declarations {
            if let Statement::CreateInput(c) = d
                && !inputs
                    .iter()
                    .any(|(n, ..)| n.eq_ignore_ascii_case(&c.name.value))
            {
                let options = options_map(&c.options);
                let declared = endpoint::declared_schema(&options).ok().flatten();
                inputs.push((
                    c.name.value.clone(),
                    endpoint::input_from_options(&options, &self.cwd),
                    declared,
                ));
            }
        }
        let mut catalog = self.catalog.borrow_mut();
        catalog
            .schemas
            .retain(|name, _| inputs.iter().any(|(n, ..)| n.eq_ignore_ascii_case(name)));
        catalog.inputs = inputs;
    }

    fn refuse(&self, problems: &[Diagnostic], shown: &str, source: &str) {
        eprint!("{}", iotql_dsl::render(problems, shown, source, self.style));
    }

    /// Does what one entry says.
    pub(crate) fn handle(&mut self, entry: &Entry) -> Next {
        match entry {
            Entry::Statement(text) => {
                self.statement(text);
                Next::Continue
            }
            Entry::Meta(line) => match meta::parse(line) {
                Ok(Meta::Quit) => Next::Quit,
                Ok(m) => {
                    self.meta(m);
                    Next::Continue
                }
                Err(e) => {
                    eprintln!("{e}");
                    Next::Continue
                }
            },
        }
    }

    fn statement(&mut self, text: &str) {
        let script = match iotql_dsl::parse(text) {
            Ok(s) => s,
            Err(d) => return self.refuse(&[d], SHOWN, text),
        };
        for statement in script.statements {
            match statement {
                Statement::Query(_) => self.query(text),
                Statement::CreateInput(c) => self.declare_input(c, None),
                Statement::CreateOutput(c) => self.declare_output(c, None),
            }
        }
    }

    /// Keeps a declaration (replacing one of the same name); `from`: the
    /// job file it came from (paths relative to its folder).
    fn declare_input(&mut self, mut c: CreateInput, from: Option<&Path>) {
        absolute_paths(&mut c.options, from.unwrap_or(&self.cwd));
        let options = options_map(&c.options);
        let checked = endpoint::input_from_options(&options, &self.cwd)
            .and_then(|_| endpoint::declared_schema(&options).map(|_| ()));
        if let Err(e) = checked {
            eprintln!("input `{}`: {e}", c.name.value);
            return;
        }
        let name = c.name.value.clone();
        self.forget(&name, true);
        self.declarations.push(Statement::CreateInput(c));
        if from.is_none() {
            eprintln!("input `{name}` declared");
        }
        self.refresh_catalog();
    }

    fn declare_output(&mut self, mut c: CreateOutput, from: Option<&Path>) {
        absolute_paths(&mut c.options, from.unwrap_or(&self.cwd));
        if let Err(e) = endpoint::output_from_options(&options_map(&c.options), &self.cwd) {
            eprintln!("output `{}`: {e}", c.name.value);
            return;
        }
        let name = c.name.value.clone();
        self.forget(&name, false);
        self.declarations.push(Statement::CreateOutput(c));
        if from.is_none() {
            eprintln!("output `{name}` declared");
        }
    }

    /// Drops an earlier declaration of the input (or output) `name`.
    fn forget(&mut self, name: &str, input: bool) {
        self.declarations.retain(|d| match d {
            Statement::CreateInput(c) if input => !c.name.value.eq_ignore_ascii_case(name),
            Statement::CreateOutput(c) if !input => !c.name.value.eq_ignore_ascii_case(name),
            _ => true,
        });
    }

    /// The session's declarations as job text.
    fn prefix(&self) -> String {
        Script {
            statements: self.declarations.clone(),
            span: Default::default(),
        }
        .to_string()
    }

    /// The session's declarations followed by `text`, checked and planned:
    /// problems are shown against `text` alone (its own lines and columns).
    fn plan(&self, text: &str) -> Option<(Script, LogicalPlan)> {
        let prefix = self.prefix();
        let source = format!("{prefix}{text}");
        let shown = |problems: Vec<Diagnostic>| self.refuse_typed(problems, &prefix, text);
        let bound: Vec<String> = self.bound_inputs().map(|b| b.name.clone()).collect();
        let check = CheckOptions {
            inputs: bound.clone(),
            outputs: self.outputs.iter().map(|b| b.name.clone()).collect(),
        };
        let script = match iotql_dsl::parse_and_check(&source, &check) {
            Ok(s) => s,
            Err(problems) => {
                shown(problems);
                return None;
            }
        };
        let options = PlanOptions {
            extra_inputs: bound,
            ..PlanOptions::default()
        };
        match iotql_engine::plan::build(&script, &options) {
            Ok(plan) => Some((script, plan)),
            Err(problems) => {
                shown(problems);
                None
            }
        }
    }

    /// Whether every input `plan` scans is a file or table (a replay that
    /// `.speed` paces), not a live source.
    fn replays_only(&self, plan: &LogicalPlan) -> bool {
        let catalog = self.catalog.borrow();
        plan.inputs.iter().all(|i| {
            catalog
                .inputs
                .iter()
                .find(|(n, ..)| n.eq_ignore_ascii_case(&i.name))
                .is_none_or(|(_, spec, _)| {
                    matches!(
                        spec,
                        Ok(InputSpec::Csv(_) | InputSpec::JsonLines(_) | InputSpec::Sqlite(_))
                    )
                })
        })
    }

    fn query(&mut self, text: &str) {
        let Some((script, plan)) = self.plan(text) else {
            return;
        };
        let Some(Statement::Query(query)) = script.statements.last().cloned() else {
            return;
        };
        let pace = match self.speed {
            Speed::Times(x) if self.replays_only(&plan) => Some(x),
            _ => None,
        };
        let batch_size = if pace.is_some() {
            PACED_BATCH_SIZE
        } else {
            BATCH_SIZE
        };
        let format = self.format;
        let mut printed: Vec<String> = Vec::new();
        let mut terminal = |name: &str| -> Box<dyn Sink> {
            printed.push(name.to_string());
            Box::new(TerminalSink::new(name, format))
        };
        let prepared = runner::prepare(
            &plan,
            self.bindings(),
            &self.cwd,
            batch_size,
            &mut terminal,
            None,
        );
        let prepared = match prepared {
            Ok(p) => p,
            Err(PrepareError::Invalid(problems)) => {
                return self.refuse_typed(problems, &self.prefix(), text);
            }
            Err(e) => return eprintln!("{e}"),
        };
        for output in &plan.outputs {
            if printed.iter().any(|p| p == &output.name) {
                if !output
                    .name
                    .eq_ignore_ascii_case(iotql_dsl::check::DEFAULT_OUTPUT)
                {
                    eprintln!(
                        "output `{}` is not declared: its rows are printed here",
                        output.name
                    );
                }
            } else {
                eprintln!("rows go to output `{}`", output.name);
            }
        }
        let before = self.dead.count();
        self.interrupted.store(false, Ordering::SeqCst);
        let started = Instant::now();
        let mut pacer;
        let mut unpaced = Unpaced;
        let observer: &mut dyn Observer = match pace {
            Some(speed) => {
                pacer = Pacer { speed, first: None };
                &mut pacer
            }
            None => &mut unpaced,
        };
        let (dataflow, result) = prepared.execute(
            &mut self.dead,
            &self.interrupted,
            OnInterrupt::Stop,
            observer,
        );
        let _ = std::io::stdout().flush();
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                eprintln!("the query stopped: {e}");
                self.report_dead(before);
                return;
            }
        };
        let rows: u64 = dataflow
            .output_stats()
            .iter()
            .map(|o| o.rows.load(Ordering::Relaxed))
            .sum();
        let secs = started.elapsed().as_secs_f64();
        let mut line = format!(
            "{rows} row{} from {} event{} in {secs:.2} s",
            if rows == 1 { "" } else { "s" },
            outcome.events,
            if outcome.events == 1 { "" } else { "s" },
        );
        if self.timing {
            line.push_str(&format!(
                ", {} events/s",
                human_count((outcome.events as f64 / secs.max(1e-9)) as u64)
            ));
        }
        if outcome.interrupted {
            line.push_str(" (stopped by Ctrl+C; open windows not emitted)");
        }
        eprintln!("{line}");
        self.report_dead(before);
        self.ran.push(query);
    }

    /// Shows problems found in the declarations followed by `text`: against
    /// `text` alone when they are all in it, else against the whole.
    fn refuse_typed(&self, problems: Vec<Diagnostic>, prefix: &str, text: &str) {
        let offset = prefix.len();
        if problems.iter().all(|d| d.span.start >= offset) {
            let shifted: Vec<Diagnostic> = problems
                .into_iter()
                .map(|mut d| {
                    d.span = shift(d.span, offset);
                    for (span, _) in &mut d.notes {
                        *span = shift(*span, offset);
                    }
                    d
                })
                .collect();
            self.refuse(&shifted, SHOWN, text);
        } else {
            self.refuse(&problems, SHOWN, &format!("{prefix}{text}"));
        }
    }

    fn report_dead(&self, before: u64) {
        let refused = self.dead.count() - before;
        if refused > 0 {
            eprintln!(
                "{refused} event{} refused: see {}",
                if refused == 1 { "" } else { "s" },
                self.dead.path().display()
            );
        }
    }

    fn meta(&mut self, m: Meta) {
        match m {
            Meta::Help => eprint!("{}", meta::help()),
            Meta::Inputs => self.list(),
            Meta::Schema(name) => self.schema(&name),
            Meta::Explain(query) => {
                if let Some((_, plan)) = self.plan(&format!("{query};")) {
                    let _ = write!(std::io::stdout(), "{plan}");
                }
            }
            Meta::Format(None) => eprintln!("format: {}", self.format),
            Meta::Format(Some(f)) => {
                self.format = f;
                eprintln!("format: {f}");
            }
            Meta::Timing(None) => eprintln!("timing: {}", if self.timing { "on" } else { "off" }),
            Meta::Timing(Some(on)) => {
                self.timing = on;
                eprintln!("timing: {}", if on { "on" } else { "off" });
            }
            Meta::Speed(None) => eprintln!("speed: {}", self.speed),
            Meta::Speed(Some(s)) => {
                self.speed = s;
                eprintln!("speed: {s}");
            }
            Meta::Save(file) => match self.save(&file) {
                Ok(n) => eprintln!("saved {} ({n} statements)", file.display()),
                Err(e) => eprintln!("not saved: {e}"),
            },
            Meta::Load(file) => self.load(&file),
            Meta::Sql(sql) => self.sql(&sql),
            Meta::Quit => {}
        }
    }

    fn list(&self) {
        let mut any = false;
        for (kind, bindings) in [
            ("input", &self.inputs),
            ("reference", &self.references),
            ("output", &self.outputs),
        ] {
            for b in bindings {
                any = true;
                // Without secrets (`secret::redact_uri`); `${NAME}` as written.
                out!(
                    "{kind:<10} {:<20} {}",
                    b.name,
                    iotql_connectors::secret::redact_uri(&b.uri)
                );
            }
        }
        for d in &self.declarations {
            let (kind, name, options) = match d {
                Statement::CreateInput(c) if c.reference => ("reference", &c.name, &c.options),
                Statement::CreateInput(c) => ("input", &c.name, &c.options),
                Statement::CreateOutput(c) => ("output", &c.name, &c.options),
                Statement::Query(_) => continue,
            };
            any = true;
            let connector = options
                .iter()
                .find(|o| o.key.value.eq_ignore_ascii_case("connector"))
                .map(|o| o.value.as_str());
            let options: Vec<String> = options
                .iter()
                .map(|o| {
                    let shown =
                        iotql_connectors::secret::render_option(connector, &o.key.value, &o.value);
                    format!("{} = {}", o.key.value, quoted(&shown))
                })
                .collect();
            out!(
                "{kind:<10} {:<20} ({}) declared",
                name.value,
                options.join(", ")
            );
        }
        if !any {
            eprintln!("no inputs: start with --input NAME=URI, or CREATE INPUT NAME WITH (...);");
        }
    }

    fn schema(&mut self, name: &str) {
        let schema = self.catalog.borrow_mut().schema(name);
        match schema {
            Ok(schema) => {
                for f in schema.fields() {
                    out!("{:<24} {}", f.name(), asa_type(f.data_type()));
                }
            }
            Err(e) => eprintln!("{e}"),
        }
    }

    /// Takes the declarations of a job file.
    fn load(&mut self, file: &Path) {
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => return eprintln!("cannot read {}: {e}", file.display()),
        };
        let script = match iotql_dsl::parse(&source) {
            Ok(s) => s,
            Err(d) => return self.refuse(&[d], &file.display().to_string(), &source),
        };
        let folder = self.cwd.join(file.parent().unwrap_or(Path::new("")));
        let mut names = Vec::new();
        for statement in script.statements {
            match statement {
                Statement::CreateInput(c) => {
                    names.push(c.name.value.clone());
                    self.declare_input(c, Some(&folder));
                }
                Statement::CreateOutput(c) => {
                    names.push(c.name.value.clone());
                    self.declare_output(c, Some(&folder));
                }
                Statement::Query(_) => {}
            }
        }
        eprintln!("loaded from {}: {}", file.display(), names.join(", "));
    }

    /// `.sql`: the session's outputs (and file inputs) as tables.
    fn sql(&mut self, sql: &str) {
        let mut tables: Vec<(String, TableSource)> = Vec::new();
        let mut add = |name: &str, source: Option<TableSource>| {
            if let Some(s) = source
                && !tables.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            {
                tables.push((name.to_string(), s));
            }
        };
        for b in &self.outputs {
            add(
                &b.name,
                endpoint::parse_output_uri(&b.uri)
                    .ok()
                    .as_ref()
                    .and_then(TableSource::of_output),
            );
        }
        for d in &self.declarations {
            if let Statement::CreateOutput(c) = d {
                let spec: Option<OutputSpec> =
                    endpoint::output_from_options(&options_map(&c.options), &self.cwd).ok();
                add(
                    &c.name.value,
                    spec.as_ref().and_then(TableSource::of_output),
                );
            }
        }
        for (name, spec, _) in &self.catalog.borrow().inputs {
            add(name, spec.as_ref().ok().and_then(TableSource::of_input));
        }
        match lookup::run_sql(&tables, sql) {
            Ok(batches) => {
                let schema = match batches.first() {
                    Some(b) => b.schema(),
                    None => {
                        return eprintln!("0 rows");
                    }
                };
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                if let Err(e) = print::print_batches(&schema, &batches, self.format) {
                    return eprintln!("{e}");
                }
                let _ = std::io::stdout().flush();
                eprintln!("{rows} row{}", if rows == 1 { "" } else { "s" });
            }
            Err(e) => eprintln!("{e}"),
        }
    }

    /// The session as a job file: declarations (bound inputs and outputs
    /// too), then every query that ran, in order.
    pub(crate) fn job_text(&self, file: &Path) -> Result<String, String> {
        let folder = self.cwd.join(file.parent().unwrap_or(Path::new("")));
        let mut text = String::new();
        let mut declared: Vec<String> = Vec::new();
        for (kind, bindings) in [
            ("INPUT", &self.inputs),
            ("REFERENCE INPUT", &self.references),
            ("OUTPUT", &self.outputs),
        ] {
            for b in bindings {
                let options = endpoint::uri_as_options(&b.uri)
                    .map_err(|e| format!("{} `{}`: {e}", kind.to_ascii_lowercase(), b.name))?;
                let options: Vec<String> = options
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if k == "path" && v != "-" {
                            relative_to(&self.cwd.join(&v).display().to_string(), &folder)
                        } else {
                            v
                        };
                        format!("{k} = {}", quoted(&v))
                    })
                    .collect();
                text.push_str(&format!(
                    "CREATE {kind} {} WITH ({});\n\n",
                    b.name,
                    options.join(", ")
                ));
                declared.push(b.name.to_ascii_lowercase());
            }
        }
        for d in &self.declarations {
            let mut d = d.clone();
            let name = match &mut d {
                Statement::CreateInput(c) => {
                    relative_options(&mut c.options, &folder);
                    c.name.value.clone()
                }
                Statement::CreateOutput(c) => {
                    relative_options(&mut c.options, &folder);
                    c.name.value.clone()
                }
                Statement::Query(_) => continue,
            };
            if declared.contains(&name.to_ascii_lowercase()) {
                // A binding of the same name wins, as in the session.
                continue;
            }
            declared.push(name.to_ascii_lowercase());
            text.push_str(&format!("{d};\n\n"));
        }
        // Queries without INTO printed their rows: in the job they write
        // to stdout, each to an output of its own when there are several.
        let printed = self.ran.iter().filter(|q| !has_into(q)).count();
        let mut n = 0;
        let mut queries = String::new();
        for q in &self.ran {
            let mut q = q.clone();
            if !has_into(&q) {
                n += 1;
                let name = if printed == 1 || n == 1 {
                    iotql_dsl::check::DEFAULT_OUTPUT.to_string()
                } else {
                    format!("{}_{n}", iotql_dsl::check::DEFAULT_OUTPUT)
                };
                if n > 1 {
                    first_select(&mut q.body).into =
                        Some(Ident::new(name.clone(), Default::default()));
                }
                if !declared.contains(&name) {
                    let options = match self.format {
                        Format::Csv => "connector = 'csv', path = '-'",
                        Format::Json | Format::Table => "connector = 'stdout'",
                    };
                    text.push_str(&format!("CREATE OUTPUT {name} WITH ({options});\n\n"));
                    declared.push(name);
                }
            }
            queries.push_str(&format!("{q};\n\n"));
        }
        text.push_str(&queries);
        Ok(text.trim_end().to_string() + "\n")
    }

    /// Writes the session as a job file, checked first; the number of
    /// statements.
    fn save(&self, file: &Path) -> Result<usize, String> {
        if self.ran.is_empty() {
            return Err("no query has run yet: a job needs one".into());
        }
        let text = self.job_text(file)?;
        let script =
            iotql_dsl::parse_and_check(&text, &CheckOptions::default()).map_err(|problems| {
                self.refuse(&problems, &file.display().to_string(), &text);
                "the job does not check (a bug: please report it)".to_string()
            })?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        std::fs::write(file, &text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        Ok(script.statements.len())
    }
}

fn shift(span: iotql_dsl::Span, offset: usize) -> iotql_dsl::Span {
    iotql_dsl::Span::new(
        span.start.saturating_sub(offset),
        span.end.saturating_sub(offset),
    )
}

/// A declaration's `path` relative to `folder` when it is inside it.
fn relative_options(entries: &mut [OptionEntry], folder: &Path) {
    for e in entries.iter_mut() {
        if e.key.value.eq_ignore_ascii_case("path") {
            e.value = relative_to(&e.value, folder);
        }
    }
}

/// The ASA name of a column type.
fn asa_type(t: &DataType) -> String {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "nvarchar(max)".into(),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "bigint".into(),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "float".into(),
        DataType::Boolean => "bit".into(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "datetime".into(),
        DataType::Struct(_) => "record".into(),
        DataType::List(_) | DataType::LargeList(_) => "array".into(),
        other => format!("{other}"),
    }
}
