//! Every example job in `queries/` is valid as shipped and ships with its
//! tests (`NAME.test.toml`, run by `iotql test queries/` in `scripts/test`).

use std::path::Path;

use iotql_dsl::{CheckOptions, Style, parse_and_check, render};

#[test]
fn every_bundled_job_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut jobs: Vec<_> = std::fs::read_dir(&dir)
        .expect("queries/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asaql" || e == "sql"))
        .collect();
    jobs.sort();
    assert!(
        jobs.iter().any(|p| p.ends_with("alerts.asaql")),
        "queries/alerts.asaql is missing"
    );
    for job in jobs {
        let name = job.display().to_string();
        let source = std::fs::read_to_string(&job).expect("read job");
        if let Err(problems) = parse_and_check(&source, &CheckOptions::default()) {
            panic!("{}", render(&problems, &name, &source, Style::Plain));
        }
    }
}

#[test]
fn every_bundled_job_has_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let untested: Vec<String> = std::fs::read_dir(&dir)
        .expect("queries/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asaql"))
        .filter(|p| !p.with_extension("test.toml").exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        untested.is_empty(),
        "jobs without a NAME.test.toml beside them: {untested:?}"
    );
}
