//! `iotql serve DIR`: every job of a folder (its `*.asaql` files, in name
//! order) run side by side, each on threads of its own as `iotql run` runs
//! it, with one HTTP server for them all. Every job is checked and planned
//! before any starts: one refused job refuses the folder. The server keeps
//! serving after the jobs end (their outputs stay readable) until Ctrl+C
//! or SIGTERM, which also stops the jobs still running, each at a
//! checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use iotql_connectors::serve::JobView;

use crate::run::{self, Planned, RunOptions};

const WHO: &str = "iotql serve";

pub(crate) fn run(dir: &Path, options: &RunOptions) -> ExitCode {
    let files = match job_files(dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{WHO}: {e}");
            return ExitCode::from(2);
        }
    };
    // Every job is checked before any starts; each refusal is shown.
    let mut planned = Vec::new();
    let mut refused = None;
    for file in &files {
        match Planned::new(file, options, "serve") {
            Ok(p) => planned.push(p),
            Err(code) => refused = Some(code),
        }
    }
    if let Some(code) = refused {
        return code;
    }
    let views: Vec<_> = planned
        .iter()
        .zip(&files)
        .map(|(p, f)| JobView::new(&p.name(), &f.display().to_string()))
        .collect();
    let Some(http) = &options.http else {
        eprintln!("{WHO}: no --http address");
        return ExitCode::from(2);
    };
    let _server = match run::start_server(WHO, http, &views, options.quiet) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let interrupted = run::stop_on_signals();
    let codes: Vec<ExitCode> = std::thread::scope(|scope| {
        let running: Vec<_> = planned
            .into_iter()
            .zip(&views)
            .map(|(job, view)| {
                let who = format!("{WHO}: {}", job.name());
                let interrupted = &interrupted;
                std::thread::Builder::new()
                    .name(format!("job {}", job.name()))
                    .spawn_scoped(scope, move || {
                        run::execute(job, options, view, interrupted, &who, false)
                    })
            })
            .collect();
        running
            .into_iter()
            .map(|r| match r.map(|handle| handle.join()) {
                Ok(Ok(code)) => code,
                Ok(Err(_)) | Err(_) => ExitCode::from(3),
            })
            .collect()
    });
    if !interrupted.load(Ordering::SeqCst) {
        if !options.quiet {
            eprintln!("every job has ended; serving their outputs until Ctrl+C");
        }
        while !interrupted.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The first failure's code (3: a job failed while running; 2: it
    // could not start), else success.
    codes
        .into_iter()
        .find(|c| *c != ExitCode::SUCCESS)
        .unwrap_or(ExitCode::SUCCESS)
}

/// The job files of `dir`: its `*.asaql` files, in name order.
fn job_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "asaql"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no job files (*.asaql) in {}", dir.display()));
    }
    Ok(files)
}
