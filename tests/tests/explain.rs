//! `iotql explain` of every bundled job, snapshot-tested: a change to how a
//! job is planned shows up here for review.

use std::path::Path;

use iotql_engine::Job;

#[test]
fn every_bundled_job_explains() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../queries");
    let mut jobs: Vec<_> = std::fs::read_dir(&dir)
        .expect("queries/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "asaql" || e == "sql"))
        .collect();
    jobs.sort();
    assert!(!jobs.is_empty());
    for job in jobs {
        let name = job
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let source = std::fs::read_to_string(&job).expect("read job");
        let plan = Job::parse(&source).unwrap_or_else(|p| panic!("{}", p.render(&name)));
        insta::assert_snapshot!(format!("explain_{name}"), plan.plan().to_string());
    }
}
