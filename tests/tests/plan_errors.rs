//! Jobs that pass `iotql check` but that the engine refuses before anything
//! runs (planning, or compiling against the inputs' schemas), one per file
//! in `tests/plan_errors/`: each refusal, with its caret, is snapshot-tested.

use std::path::Path;
use std::sync::Arc;

use iotql_engine::Job;
use iotql_engine::arrow::datatypes::{DataType, Field, Schema};
use iotql_engine::io::{CollectSink, Sink};

/// The columns of `queries/data/readings.csv`, for inputs of any name.
fn readings() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("device_id", DataType::Utf8, true),
        Field::new("ts", DataType::Utf8, true),
        Field::new("temperature_c", DataType::Float64, true),
        Field::new("humidity_pct", DataType::Float64, true),
        Field::new("battery_pct", DataType::Float64, true),
    ]))
}

/// The rendered problems of the job, or `None` if it starts.
fn refusal(name: &str, source: &str) -> Option<String> {
    let job = match Job::parse(source) {
        Ok(job) => job,
        Err(problems) => return Some(problems.render(name)),
    };
    let plan = job.plan();
    let inputs: Vec<(&str, Arc<Schema>)> = plan
        .inputs
        .iter()
        .map(|i| (i.name.as_str(), readings()))
        .collect();
    let outputs: Vec<(&str, Box<dyn Sink>)> = plan
        .outputs
        .iter()
        .map(|o| {
            (
                o.name.as_str(),
                Box::new(CollectSink::new()) as Box<dyn Sink>,
            )
        })
        .collect();
    job.start(&inputs, outputs)
        .err()
        .map(|problems| problems.render(name))
}

#[test]
fn every_refused_job_is_refused_with_a_caret() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plan_errors");
    let mut jobs: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/plan_errors/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asaql"))
        .collect();
    jobs.sort();
    assert!(jobs.len() >= 6);
    for job in jobs {
        let name = job
            .file_name()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let source = std::fs::read_to_string(&job).expect("read job");
        // The language front end accepts every one of them.
        if let Err(problems) = iotql_dsl::parse_and_check(&source, &Default::default()) {
            panic!("{name}: `iotql check` refuses it: {problems:?}");
        }
        let Some(rendered) = refusal(&name, &source) else {
            panic!("{name}: the engine accepts it");
        };
        insta::assert_snapshot!(name.trim_end_matches(".asaql"), rendered);
    }
}
