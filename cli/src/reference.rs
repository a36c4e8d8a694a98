//! Reference inputs of `iotql run`: read whole before the job starts, and
//! read again when their `refresh` interval has passed and the file has
//! changed, so that a job that runs for days sees new thresholds and
//! devices without a restart.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use iotql_connectors::endpoint::{self, InputSpec};
use iotql_connectors::file::Input;
use iotql_engine::arrow::datatypes::SchemaRef;
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::dataflow::Dataflow;
use iotql_engine::operator::DeadLetter;

#[derive(Debug)]
pub(crate) struct Reference {
    pub name: String,
    spec: InputSpec,
    declared: Option<SchemaRef>,
    refresh: Option<Duration>,
    next: Instant,
    modified: Option<SystemTime>,
}

fn path_of(spec: &InputSpec) -> Option<&Path> {
    match spec {
        InputSpec::Csv(Input::Path(p)) | InputSpec::JsonLines(Input::Path(p)) => Some(p),
        InputSpec::Sqlite(s) => Some(&s.path),
        _ => None,
    }
}

fn modified(path: Option<&Path>) -> Option<SystemTime> {
    std::fs::metadata(path?).and_then(|m| m.modified()).ok()
}

impl Reference {
    /// `refresh`: the input option (`'30s'`, `'5m'`), if any.
    pub(crate) fn new(
        name: &str,
        spec: InputSpec,
        declared: Option<SchemaRef>,
        refresh: Option<&String>,
    ) -> Result<Reference, String> {
        let refresh = refresh
            .map(|r| iotql_engine::time::parse_duration(r))
            .transpose()
            .map_err(|e| format!("reference input `{name}`: option refresh: {e}"))?;
        Ok(Reference {
            name: name.to_string(),
            spec,
            declared,
            refresh,
            next: Instant::now() + refresh.unwrap_or_default(),
            modified: None,
        })
    }

    /// Reads the whole table.
    pub(crate) fn read(&mut self) -> Result<(RecordBatch, Vec<DeadLetter>), String> {
        self.modified = modified(path_of(&self.spec));
        let mut source =
            endpoint::open_source(&self.name, &self.spec, self.declared.clone(), 8192, None)
                .map_err(|e| e.to_string())?;
        endpoint::read_all(source.as_mut())
            .map_err(|e| format!("reference input `{}`: {e}", self.name))
    }

    /// Reloads the table into `dataflow` if its refresh interval has passed
    /// and the file changed; the rows it could not read.
    pub(crate) fn refresh(&mut self, dataflow: &mut Dataflow) -> Result<Vec<DeadLetter>, String> {
        let Some(interval) = self.refresh else {
            return Ok(Vec::new());
        };
        if Instant::now() < self.next {
            return Ok(Vec::new());
        }
        self.next = Instant::now() + interval;
        let now = modified(path_of(&self.spec));
        if now.is_some() && now == self.modified {
            return Ok(Vec::new());
        }
        // A table that cannot be read now is kept as it was: the job goes on.
        let reloaded = self.read().and_then(|(table, letters)| {
            dataflow
                .load_reference(&self.name, &table)
                .map_err(|e| e.to_string())?;
            Ok((table.num_rows(), letters))
        });
        match reloaded {
            Ok((rows, letters)) => {
                tracing::info!(reference = %self.name, rows, "reference data reloaded");
                Ok(letters)
            }
            Err(e) => {
                tracing::warn!(reference = %self.name, "reference data not reloaded, the old table stays: {e}");
                Ok(Vec::new())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use iotql_engine::Job;
    use iotql_engine::arrow::array::{AsArray, Float64Array, StringArray};
    use iotql_engine::arrow::datatypes::{DataType, Field, Schema};
    use iotql_engine::io::CollectSink;

    use super::*;

    fn reading(ts: &str) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", DataType::Utf8, false),
            Field::new("temp", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(StringArray::from(vec![ts])),
                Arc::new(Float64Array::from(vec![25.0])),
            ],
        )
        .unwrap()
    }

    /// The limits the job saw, in order.
    fn limits(sink: &CollectSink) -> Vec<i64> {
        sink.batches()
            .iter()
            .flat_map(|b| {
                let i = b.schema().index_of("max_temp").unwrap();
                b.column(i)
                    .as_primitive::<iotql_engine::arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn a_changed_table_is_reloaded_after_its_refresh_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thresholds.csv");
        std::fs::write(&path, "device_id,max_temp\na,30\n").unwrap();
        let spec = InputSpec::Csv(Input::Path(path.clone()));
        let mut reference =
            Reference::new("thresholds", spec, None, Some(&"1ms".to_string())).unwrap();
        let (table, letters) = reference.read().unwrap();
        assert!(letters.is_empty());
        let job = Job::parse(
            "CREATE INPUT readings WITH (connector = 'csv', path = 'r.csv');
             CREATE REFERENCE INPUT thresholds WITH (connector = 'csv', path = 't.csv');
             SELECT r.device_id, t.max_temp INTO output
             FROM readings r TIMESTAMP BY ts JOIN thresholds t ON r.device_id = t.device_id",
        )
        .unwrap();
        let sink = CollectSink::new();
        let mut flow = job
            .start(
                &[
                    ("readings", reading("2026-01-01T00:00:00Z").schema()),
                    ("thresholds", table.schema()),
                ],
                vec![("output", Box::new(sink.clone()))],
            )
            .unwrap();
        flow.load_reference("thresholds", &table).unwrap();
        flow.push("readings", reading("2026-01-01T00:00:00Z"))
            .unwrap();

        // Unchanged: nothing is read again.
        std::thread::sleep(Duration::from_millis(5));
        reference.refresh(&mut flow).unwrap();
        flow.push("readings", reading("2026-01-01T00:00:01Z"))
            .unwrap();

        // Changed (a new modification time): the next event sees the new limit.
        std::fs::write(&path, "device_id,max_temp\na,20\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        reference.refresh(&mut flow).unwrap();
        flow.push("readings", reading("2026-01-01T00:00:02Z"))
            .unwrap();
        flow.finish().unwrap();
        assert_eq!(limits(&sink), vec![30, 30, 20]);
    }

    #[test]
    fn a_table_that_cannot_be_read_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "device_id,max_temp\na,30\n").unwrap();
        let spec = InputSpec::Csv(Input::Path(path.clone()));
        let mut reference = Reference::new("t", spec, None, Some(&"1ms".to_string())).unwrap();
        reference.read().unwrap();
        std::fs::remove_file(&path).unwrap();
        let job = Job::parse("SELECT * INTO output FROM readings TIMESTAMP BY ts").unwrap();
        let mut flow = job
            .start(
                &[("readings", reading("2026-01-01T00:00:00Z").schema())],
                vec![("output", Box::new(CollectSink::new()))],
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(reference.refresh(&mut flow).unwrap().is_empty());
    }
}
