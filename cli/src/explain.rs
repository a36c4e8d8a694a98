//! `iotql explain FILE`: the operator graph of a job, on stdout.

use std::path::Path;
use std::process::ExitCode;

use iotql_dsl::CheckOptions;
use iotql_engine::plan::PlanOptions;

use crate::job::JobFile;

pub(crate) fn run(file: &Path) -> ExitCode {
    let job = match JobFile::read(file, "explain") {
        Ok(j) => j,
        Err(code) => return code,
    };
    let plan = job
        .check(&CheckOptions::default())
        .and_then(|script| job.plan(&script, &PlanOptions::default()));
    match plan {
        Ok(plan) => {
            print!("{plan}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
