//! The query corpus: every valid query in the repository parses, prints as
//! canonical text that parses back to the same tree, and passes the checks;
//! every invalid one is refused with the diagnostic in its snapshot.

use std::path::{Path, PathBuf};

use iotql_dsl::{CheckOptions, Style, parse, parse_and_check, render};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Query files (`.asaql`, `.sql`) under `dir`, recursively, sorted.
fn query_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(query_files(&path));
        } else if path.extension().is_some_and(|e| e == "asaql" || e == "sql") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn valid_queries() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = query_files(&root.join("queries"));
    files.extend(query_files(&root.join("dsl/tests/corpus/valid")));
    files.extend(query_files(&root.join("../shared/bench/queries")));
    // A golden case's job is its query.asaql (a `.sql` there can be a
    // SQLite script that builds reference data).
    files.extend(
        query_files(&root.join("tests/cases"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n == "query.asaql")),
    );
    files
}

/// Parse, print, parse again: the trees are equal and printing is stable.
fn assert_round_trip(name: &str, source: &str) {
    let first = parse(source).unwrap_or_else(|d| panic!("{name}: {}", d.one_line(name, source)));
    let printed = first.to_string();
    let second = parse(&printed).unwrap_or_else(|d| {
        panic!(
            "{name}: the canonical text does not parse: {}\n{printed}",
            d.one_line(name, &printed)
        )
    });
    assert_eq!(
        first, second,
        "{name}: the tree changed through printing:\n{printed}"
    );
    assert_eq!(
        printed,
        second.to_string(),
        "{name}: printing is not stable"
    );
}

#[test]
fn every_valid_query_round_trips_and_checks() {
    let files = valid_queries();
    let corpus = files
        .iter()
        .filter(|f| f.components().any(|c| c.as_os_str() == "valid"))
        .count();
    assert!(
        corpus >= 80,
        "the valid corpus has {corpus} queries, want at least 80"
    );
    for file in &files {
        let name = file.display().to_string();
        let source = std::fs::read_to_string(file).expect("read query");
        assert_round_trip(&name, &source);
        if let Err(problems) = parse_and_check(&source, &CheckOptions::default()) {
            panic!(
                "{name} fails the checks:\n{}",
                render(&problems, &name, &source, Style::Plain)
            );
        }
    }
}

#[test]
fn every_invalid_query_is_refused_with_its_snapshot() {
    let dir = repo_root().join("dsl/tests/corpus/invalid");
    let files = query_files(&dir);
    assert!(
        files.len() >= 25,
        "the invalid corpus has {} queries, want at least 25",
        files.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots/invalid");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for file in &files {
            let stem = file
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("file name");
            let name = format!("invalid/{stem}.asaql");
            let source = std::fs::read_to_string(file).expect("read query");
            let problems = match parse_and_check(&source, &CheckOptions::default()) {
                Ok(_) => panic!("{name} was accepted, but it has a fault"),
                Err(problems) => problems,
            };
            insta::assert_snapshot!(stem, render(&problems, &name, &source, Style::Plain));
        }
    });
}
