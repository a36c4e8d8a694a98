//! Golden cases: `tests/cases/<name>/` holds `query.asaql`, one input file
//! per input (`<input>.csv`, `<input>.jsonl`, or `<input>.sql`: a script
//! that builds a SQLite table of that name, for reference data), and the rows each output
//! must get (`expected.csv` for the output named `output`, else
//! `expected_<output>.csv`). An optional `args` file sets the time policy
//! (`--out-of-order 5s`, `--late-policy drop`). An optional
//! `expected_deadletter.txt` lists `input position: reason` per refused event.
//!
//! Every case runs with the default batch size and with batches of one
//! event, and both runs must give exactly the expected rows (compared as a
//! multiset: the order in which different windows' or statements' rows
//! interleave is not part of the contract).
//!
//! `IOTQL_BLESS=1 cargo test -p iotql-tests --test golden` writes the
//! expected files from the current output, for review in `git diff`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use iotql_connectors::endpoint::{self, InputSpec, OutputSpec};
use iotql_connectors::file::{Input, OutputTarget};
use iotql_dsl::CheckOptions;
use iotql_engine::dataflow::Dataflow;
use iotql_engine::expr::ExprCompiler;
use iotql_engine::io::Sink;
use iotql_engine::plan::{self, PlanOptions, TimePolicy};
use iotql_engine::time::parse_duration;

struct Outcome {
    /// Output name -> CSV text.
    outputs: BTreeMap<String, String>,
    dead_letters: Vec<String>,
}

fn parse_args(dir: &Path) -> TimePolicy {
    let mut policy = TimePolicy::default();
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return policy;
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    for pair in words.chunks(2) {
        match pair {
            ["--out-of-order", v] => policy.out_of_order = parse_duration(v).expect("duration"),
            ["--late-arrival", v] => policy.late_arrival = parse_duration(v).expect("duration"),
            ["--late-policy", v] => policy.late_policy = v.parse().expect("policy"),
            other => panic!("{}: unknown args {other:?}", dir.display()),
        }
    }
    policy
}

fn run_case(dir: &Path, batch_size: usize, out_dir: &Path) -> Result<Outcome, String> {
    let source = std::fs::read_to_string(dir.join("query.asaql")).map_err(|e| e.to_string())?;
    let name = dir.display().to_string();
    let render =
        |p: &[iotql_dsl::Diagnostic]| iotql_dsl::render(p, &name, &source, iotql_dsl::Style::Plain);
    let script =
        iotql_dsl::parse_and_check(&source, &CheckOptions::default()).map_err(|p| render(&p))?;
    let options = PlanOptions {
        time: parse_args(dir),
        extra_inputs: Vec::new(),
    };
    let plan = plan::build(&script, &options).map_err(|p| render(&p))?;

    let mut sources = Vec::new();
    let mut references = Vec::new();
    let columns = plan.referenced_columns();
    let reference_names = plan.references();
    for input in &plan.inputs {
        let csv = dir.join(format!("{}.csv", input.name));
        let jsonl = dir.join(format!("{}.jsonl", input.name));
        let sql = dir.join(format!("{}.sql", input.name));
        let spec = if csv.exists() {
            InputSpec::Csv(Input::Path(csv))
        } else if jsonl.exists() {
            InputSpec::JsonLines(Input::Path(jsonl))
        } else if sql.exists() {
            std::fs::create_dir_all(out_dir).map_err(|e| e.to_string())?;
            let db = out_dir.join(format!("{}.db", input.name));
            let _ = std::fs::remove_file(&db);
            let script = std::fs::read_to_string(&sql).map_err(|e| e.to_string())?;
            rusqlite::Connection::open(&db)
                .and_then(|c| c.execute_batch(&script))
                .map_err(|e| format!("{}: {e}", sql.display()))?;
            InputSpec::Sqlite(iotql_connectors::sqlite::SqliteInput {
                path: db,
                read: iotql_connectors::sqlite::SqliteRead::Table(input.name.clone()),
            })
        } else {
            return Err(format!(
                "{name}: no {}.csv, {}.jsonl or {}.sql",
                input.name, input.name, input.name
            ));
        };
        let schema = endpoint::declared_schema(&input.options)?;
        let s = endpoint::open_source(&input.name, &spec, schema, batch_size, columns.as_ref())
            .map_err(|e| e.to_string())?;
        if reference_names.contains(&input.name) {
            references.push((input.name.clone(), s));
        } else {
            sources.push((input.name.clone(), s));
        }
    }
    let mut sinks: HashMap<String, Box<dyn Sink>> = HashMap::new();
    let mut files = BTreeMap::new();
    for output in &plan.outputs {
        let path = out_dir.join(format!("{}.csv", output.name));
        sinks.insert(
            output.name.clone(),
            endpoint::open_sink(
                &output.name,
                &OutputSpec::Csv(OutputTarget::Path(path.clone())),
            ),
        );
        files.insert(output.name.clone(), path);
    }
    let schemas = sources
        .iter()
        .chain(&references)
        .map(|(n, s)| (n.clone(), s.schema()))
        .collect();
    let mut dataflow =
        Dataflow::compile(&plan, &schemas, sinks, &ExprCompiler::new()).map_err(|p| render(&p))?;
    let mut refused = Vec::new();
    for (name, mut source) in references {
        let (table, letters) =
            iotql_connectors::endpoint::read_all(source.as_mut()).map_err(|e| e.to_string())?;
        refused.extend(letters);
        dataflow
            .load_reference(&name, &table)
            .map_err(|e| e.to_string())?;
    }

    let mut dead_letters = Vec::new();
    let mut record = |letters: Vec<iotql_engine::operator::DeadLetter>| {
        dead_letters.extend(
            letters
                .into_iter()
                .map(|d| format!("{} {}: {}", d.input, d.position, d.reason)),
        );
    };
    record(refused);
    // Inputs are read in turns, one batch each, as a live job would see them.
    let mut open: Vec<bool> = vec![true; sources.len()];
    while open.iter().any(|&o| o) {
        for (i, (input, source)) in sources.iter_mut().enumerate() {
            if !open[i] {
                continue;
            }
            match source.next_batch().map_err(|e| e.to_string())? {
                Some(b) => {
                    let mut letters = b.dead_letters;
                    if let Some(batch) = b.batch {
                        dataflow.push(input, batch).map_err(|e| e.to_string())?;
                    }
                    letters.extend(dataflow.take_dead_letters());
                    iotql_connectors::deadletter::in_input_order(&mut letters);
                    record(letters);
                }
                None => {
                    open[i] = false;
                    dataflow.end_input(input).map_err(|e| e.to_string())?;
                }
            }
            record(dataflow.take_dead_letters());
        }
    }
    dataflow.finish().map_err(|e| e.to_string())?;
    record(dataflow.take_dead_letters());
    let mut outputs = BTreeMap::new();
    for (output, path) in files {
        outputs.insert(
            output,
            std::fs::read_to_string(path).map_err(|e| e.to_string())?,
        );
    }
    Ok(Outcome {
        outputs,
        dead_letters,
    })
}

/// Header first, then the rows sorted.
fn canonical(csv: &str) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    if lines.len() > 1 {
        lines[1..].sort();
    }
    lines
}

fn expected_file(dir: &Path, output: &str) -> PathBuf {
    if output.eq_ignore_ascii_case("output") {
        dir.join("expected.csv")
    } else {
        dir.join(format!("expected_{output}.csv"))
    }
}

fn check_case(dir: &Path) -> Result<(), String> {
    let bless = std::env::var_os("IOTQL_BLESS").is_some();
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let default = run_case(dir, 8192, &tmp.path().join("default"))?;
    let single = run_case(dir, 1, &tmp.path().join("single"))?;
    for (output, text) in &default.outputs {
        let one = &single.outputs[output];
        if canonical(text) != canonical(one) {
            return Err(format!(
                "output `{output}` differs between batch size 8192 and 1:\n--- 8192\n{text}--- 1\n{one}"
            ));
        }
        let path = expected_file(dir, output);
        if bless {
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            continue;
        }
        let expected =
            std::fs::read_to_string(&path).map_err(|_| format!("missing {}", path.display()))?;
        if canonical(&expected) != canonical(text) {
            return Err(format!(
                "output `{output}`:\n{}",
                diff(&canonical(&expected), &canonical(text))
            ));
        }
    }
    if default.dead_letters != single.dead_letters {
        return Err(format!(
            "dead letters differ between batch sizes: {:?} vs {:?}",
            default.dead_letters, single.dead_letters
        ));
    }
    let dead_path = dir.join("expected_deadletter.txt");
    if bless && !default.dead_letters.is_empty() {
        std::fs::write(&dead_path, default.dead_letters.join("\n") + "\n")
            .map_err(|e| e.to_string())?;
    } else if !bless {
        let expected: Vec<String> = std::fs::read_to_string(&dead_path)
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default();
        if expected != default.dead_letters {
            return Err(format!(
                "dead letters: expected {expected:#?}\ngot {:#?}",
                default.dead_letters
            ));
        }
    }
    Ok(())
}

/// Rows missing from the output (-) and unexpected in it (+).
fn diff(expected: &[String], actual: &[String]) -> String {
    let mut out = String::new();
    if expected.first() != actual.first() {
        out.push_str(&format!(
            "  header: expected {:?}, got {:?}\n",
            expected.first(),
            actual.first()
        ));
    }
    let mut remaining: Vec<&String> = actual.iter().skip(1).collect();
    for row in expected.iter().skip(1) {
        match remaining.iter().position(|r| *r == row) {
            Some(i) => {
                remaining.remove(i);
            }
            None => out.push_str(&format!("  - {row}\n")),
        }
    }
    for row in remaining {
        out.push_str(&format!("  + {row}\n"));
    }
    out
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("query.asaql").exists())
        .collect();
    dirs.sort();
    let only = std::env::var("IOTQL_CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in &dirs {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("?")
            .to_string();
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        ran += 1;
        if let Err(e) = check_case(dir) {
            failures.push(format!("case {name}: {e}"));
        }
    }
    assert!(ran > 0, "no golden case ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} golden cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{ran} golden cases passed");
}
