//! The README's language tour is true: every `sql` example parses, and every
//! example that is a whole query (no declarations) passes the checks.

use std::path::Path;

use iotql_dsl::ast::Statement;
use iotql_dsl::{CheckOptions, Style, parse, parse_and_check, render};

fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```sql") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn readme_examples_parse_and_check() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let blocks = sql_blocks(&readme);
    assert!(
        blocks.len() >= 6,
        "the README tour has {} sql examples",
        blocks.len()
    );
    for block in blocks {
        let script = parse(&block)
            .unwrap_or_else(|d| panic!("{}", render(&[d], "README.md", &block, Style::Plain)));
        let has_declarations = script
            .statements
            .iter()
            .any(|s| !matches!(s, Statement::Query(_)));
        if !has_declarations
            && let Err(problems) = parse_and_check(&block, &CheckOptions::default())
        {
            panic!("{}", render(&problems, "README.md", &block, Style::Plain));
        }
    }
}
