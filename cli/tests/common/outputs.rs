//! Reading back what a job wrote, for the crash tests' comparisons with an
//! uninterrupted run (`checkpoints.rs`, `kafka_exactly_once.rs`): a SQLite
//! query's rows, a Parquet folder's rows, an alert log's alerts, as text.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;

/// The rows of `query` over the SQLite database `db`, in the query's
/// order, each row's cells joined by commas.
pub fn sqlite_rows(db: &Path, query: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(db).unwrap();
    let mut stmt = db.prepare(query).unwrap();
    let columns = stmt.column_count();
    stmt.query_map([], |r| {
        let cells = (0..columns)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => String::new(),
                    ValueRef::Integer(n) => n.to_string(),
                    ValueRef::Real(x) => x.to_string(),
                    ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into(),
                })
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(cells.join(","))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// The rows of every Parquet file in `dir` (and its partition folders),
/// sorted: the files' names and number are not part of the contract.
pub fn parquet_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap()
                    .build()
                    .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                for row in 0..batch.num_rows() {
                    let cells: Vec<String> = batch
                        .columns()
                        .iter()
                        .map(|c| {
                            iotql_engine::arrow::util::display::array_value_to_string(c, row)
                                .unwrap()
                        })
                        .collect();
                    rows.push(cells.join(","));
                }
            }
        }
    }
    rows.sort();
    rows
}

/// The alert log's lines, one per idempotency key (an alert is delivered
/// at least once: a resumed run may append one again, with its key), in
/// key order. Fails when two lines share a key but differ.
pub fn alert_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_key = BTreeMap::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = row["idempotency_key"].as_str().unwrap().to_string();
        let earlier = by_key.insert(key, line.to_string());
        assert!(
            earlier.is_none_or(|e| e == line),
            "two alerts with one key: {line}"
        );
    }
    by_key.into_values().collect()
}

/// Asserts that two runs' outputs, by name, are equal, saying which
/// differs (not dumping them).
pub fn same(got: &[(String, Vec<u8>)], expected: &[(String, Vec<u8>)]) {
    let names = |o: &[(String, Vec<u8>)]| o.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(expected));
    for ((name, have), (_, want)) in got.iter().zip(expected) {
        assert!(
            have == want,
            "{name} differs: {} bytes expected, {} written",
            want.len(),
            have.len()
        );
    }
}
