//! Where an input or output is: from a URI on the command line (`csv:PATH`,
//! `jsonl:PATH`, `stdout`) or from a declaration's options
//! (`connector = 'csv', path = '...'`). Paths in a job file are relative to
//! the file's folder; paths on the command line to the working directory.
//!
//! `${NAME}` in a URI or an option value is replaced from the environment
//! here, when the input or output is resolved (`secret::expand`): the job
//! text and the bindings keep the reference. Errors are scrubbed of secrets.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use iotql_engine::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use iotql_engine::arrow::record_batch::RecordBatch;
use iotql_engine::error::EngineError;
use iotql_engine::io::{Sink, Source};

use crate::file::csv::{self, CsvSink};
use crate::file::jsonl::{self, JsonLinesSink};
use crate::file::{Input, OutputTarget};
use crate::secret;
use crate::throttle::{Throttle, ThrottledSink};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    Csv(Input),
    JsonLines(Input),
    /// A table or query of a SQLite database (reference data).
    Sqlite(crate::sqlite::SqliteInput),
    /// Topics of a Kafka cluster.
    Kafka(crate::kafka::KafkaInput),
    /// A subscription to an MQTT topic filter.
    Mqtt(Box<crate::mqtt::MqttInput>),
    /// The device simulator, paced on the wall clock.
    Sim(Box<crate::sim::SimInput>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    Csv(OutputTarget),
    JsonLines(OutputTarget),
    /// A table of a SQLite database.
    Sqlite(crate::sqlite::SqliteOutput),
    Kafka(crate::kafka::KafkaOutput),
    /// Rows published to an MQTT topic.
    Mqtt(Box<crate::mqtt::MqttOutput>),
    /// Alerts: a webhook, Slack, or an alert log.
    Alert(Box<crate::alert::AlertOutput>),
    /// Rolling Parquet files in a folder.
    Parquet(crate::parquet::ParquetOutput),
    /// Rows written to a PostgreSQL table.
    Postgres(Box<crate::postgres::PostgresOutput>),
    /// Another output, throttled (`throttle = '10m'`).
    Throttled(Box<OutputSpec>, Throttle),
}

/// Why the simulator cannot be an output.
const SIM_IS_AN_INPUT: &str = "`sim` is an input (the device simulator); to write simulated events to an output use `iotql simulate --to URI`";

/// Why an alert connector cannot be an input.
fn output_only(kind: &str) -> String {
    let hint = if kind == "log" {
        "; read an alert log with jsonl:PATH"
    } else {
        ""
    };
    format!("`{kind}` is an output connector (where alerts go), not an input{hint}")
}

fn split_uri(uri: &str) -> (&str, &str) {
    if let Some(rest) = uri.strip_prefix("stdout")
        && rest.is_empty()
    {
        return ("stdout", "");
    }
    match uri.split_once(':') {
        Some((scheme, rest)) => (scheme, rest.strip_prefix("//").unwrap_or(rest)),
        None => ("", uri),
    }
}

/// `sqlite:PATH?table=NAME` or `sqlite:PATH?query=SELECT ...`.
fn parse_sqlite(rest: &str) -> Result<InputSpec, String> {
    use crate::sqlite::{SqliteInput, SqliteRead};
    let (path, read) = match rest.split_once('?') {
        Some((path, q)) => match q.split_once('=') {
            Some(("table", t)) if !t.is_empty() => (path, SqliteRead::Table(t.to_string())),
            Some(("query", q)) if !q.is_empty() => (path, SqliteRead::Query(q.to_string())),
            _ => {
                return Err(format!(
                    "`sqlite:{rest}`: after `?` write table=NAME or query=SELECT ..."
                ));
            }
        },
        None => {
            return Err(format!(
                "`sqlite:{rest}` names no table: write sqlite:{rest}?table=NAME"
            ));
        }
    };
    Ok(InputSpec::Sqlite(SqliteInput {
        path: path.into(),
        read,
    }))
}

/// `uri` with its `${NAME}` references replaced from the environment.
fn expand_uri(uri: &str) -> Result<String, String> {
    secret::expand(uri, false).map_err(|e| format!("`{}`: {e}", secret::redact_uri(uri)))
}

/// An error message without the secrets it may quote.
fn scrubbed(message: String) -> String {
    secret::scrub(&message).into_owned()
}

/// `csv:PATH`, `jsonl:PATH` (`-` = stdin), `sqlite:PATH?table=NAME`,
/// `kafka://`, `mqtt://`, `sim:?devices=3&rate=50`; `${NAME}` references
/// are replaced from the environment.
pub fn parse_input_uri(uri: &str) -> Result<InputSpec, String> {
    let uri = expand_uri(uri)?;
    parse_expanded_input_uri(&uri).map_err(scrubbed)
}

fn parse_expanded_input_uri(uri: &str) -> Result<InputSpec, String> {
    let (scheme, rest) = split_uri(uri);
    match scheme.to_ascii_lowercase().as_str() {
        "csv" => Ok(InputSpec::Csv(Input::parse(rest))),
        "jsonl" | "json" => Ok(InputSpec::JsonLines(Input::parse(rest))),
        "sqlite" => parse_sqlite(rest),
        "kafka" => crate::kafka::KafkaInput::from_uri(rest).map(InputSpec::Kafka),
        "mqtt" | "mqtts" => crate::mqtt::MqttInput::from_uri(rest, scheme.len() == 5)
            .map(|i| InputSpec::Mqtt(Box::new(i))),
        "sim" => crate::sim::SimInput::from_uri(rest)
            .map(|i| InputSpec::Sim(Box::new(i)))
            .map_err(|e| format!("`{uri}`: {e}")),
        "parquet" => Err(format!(
            "`{uri}`: Parquet is an output only; iotql reads csv:, jsonl:, sqlite:, kafka://, mqtt:// and sim: inputs"
        )),
        s if crate::alert::CONNECTORS.contains(&s) => Err(output_only(s)),
        "" => Err(format!(
            "`{uri}` has no scheme: write csv:{uri} or jsonl:{uri}"
        )),
        s => Err(format!(
            "unknown input scheme `{s}:` (known: csv:, jsonl:, sqlite:, kafka://, mqtt://, sim:)"
        )),
    }
}

/// `uri` without its `throttle` and `throttle_by` query options, and the
/// throttle they make.
fn take_throttle_from_uri(uri: &str) -> Result<(String, Option<Throttle>), String> {
    let Some((head, query)) = uri.split_once('?') else {
        return Ok((uri.to_string(), None));
    };
    let (ours, theirs): (Vec<&str>, Vec<&str>) = query
        .split('&')
        .partition(|p| matches!(p.split_once('='), Some(("throttle" | "throttle_by", _))));
    let mut options: BTreeMap<String, String> = query_pairs(&ours.join("&"))?.into_iter().collect();
    let throttle = Throttle::take(&mut options)?;
    let rest = if theirs.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", theirs.join("&"))
    };
    Ok((rest, throttle))
}

/// `spec`, throttled when `throttle` says so.
fn throttled(spec: OutputSpec, throttle: Option<Throttle>) -> OutputSpec {
    match throttle {
        Some(t) => OutputSpec::Throttled(Box::new(spec), t),
        None => spec,
    }
}

/// `csv:PATH`, `jsonl:PATH` (`-` = stdout), `stdout` (JSON lines), ...;
/// any of them with `?throttle=INTERVAL[&throttle_by=COLUMN]`; `${NAME}`
/// references are replaced from the environment.
pub fn parse_output_uri(uri: &str) -> Result<OutputSpec, String> {
    let uri = expand_uri(uri)?;
    let result = take_throttle_from_uri(&uri).and_then(|(uri, throttle)| {
        parse_plain_output_uri(&uri).map(|spec| throttled(spec, throttle))
    });
    result.map_err(scrubbed)
}

fn parse_plain_output_uri(uri: &str) -> Result<OutputSpec, String> {
    let (scheme, rest) = split_uri(uri);
    match scheme.to_ascii_lowercase().as_str() {
        "stdout" => Ok(OutputSpec::JsonLines(OutputTarget::Stdout)),
        "csv" => Ok(OutputSpec::Csv(OutputTarget::parse(rest))),
        "jsonl" | "json" => Ok(OutputSpec::JsonLines(OutputTarget::parse(rest))),
        "sqlite" => crate::sqlite::SqliteOutput::from_uri(rest).map(OutputSpec::Sqlite),
        "kafka" => crate::kafka::KafkaOutput::from_uri(rest).map(OutputSpec::Kafka),
        "mqtt" | "mqtts" => crate::mqtt::MqttOutput::from_uri(rest, scheme.len() == 5)
            .map(|o| OutputSpec::Mqtt(Box::new(o))),
        s if crate::alert::CONNECTORS.contains(&s) => {
            crate::alert::AlertOutput::from_uri(s, rest).map(|o| OutputSpec::Alert(Box::new(o)))
        }
        "parquet" => crate::parquet::ParquetOutput::from_uri(rest).map(OutputSpec::Parquet),
        "postgres" | "postgresql" => crate::postgres::PostgresOutput::from_uri(uri)
            .map(|o| OutputSpec::Postgres(Box::new(o))),
        "sim" => Err(SIM_IS_AN_INPUT.into()),
        "" => Err(format!(
            "`{uri}` has no scheme: write csv:{uri}, jsonl:{uri} or stdout"
        )),
        s => Err(format!(
            "unknown output scheme `{s}:` (known: csv:, jsonl:, sqlite:, postgres://, parquet:, kafka://, mqtt://, webhook:, slack:, log:, stdout)"
        )),
    }
}

/// A URI as the options of a declaration that means the same
/// (`csv:data/r.csv` -> `connector = 'csv', path = 'data/r.csv'`), for
/// writing bound inputs and outputs into a job file. Paths are left as
/// written.
pub fn uri_as_options(uri: &str) -> Result<Vec<(String, String)>, String> {
    let (scheme, rest) = split_uri(uri);
    let scheme = scheme.to_ascii_lowercase();
    let (head, query) = rest.split_once('?').unwrap_or((rest, ""));
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    let mut options = match scheme.as_str() {
        "stdout" => return Ok(vec![pair("connector", "stdout")]),
        "sim" => vec![pair("connector", "sim")],
        "csv" | "jsonl" | "json" | "sqlite" | "parquet" | "log" => {
            vec![pair("connector", &scheme), pair("path", head)]
        }
        "kafka" => {
            let (brokers, topic) = head
                .split_once('/')
                .ok_or_else(|| format!("`{uri}`: write kafka://HOST:PORT/TOPIC"))?;
            vec![
                pair("connector", "kafka"),
                pair("brokers", brokers),
                pair("topic", topic),
            ]
        }
        _ => {
            return Err(format!(
                "`{uri}` cannot be written as a declaration here: declare it with CREATE INPUT/OUTPUT ... WITH (connector = ...) instead"
            ));
        }
    };
    options.extend(query_pairs(query)?);
    Ok(options)
}

/// The query of a URI (`a=1&b=2`) as (key, value) pairs, decoded
/// (`%20`, `%2C`).
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((decode(k), decode(v))),
            _ => Err(format!("`{pair}` in the URI query: write key=value")),
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// A count option (`batch_size`, `max_rows`): a whole number above 0
/// (`1000000` or `1_000_000`); `None` when the options do not set it.
pub(crate) fn count_option(
    options: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<usize>, String> {
    let Some(text) = options.get(key) else {
        return Ok(None);
    };
    match text.trim().replace('_', "").parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "{key} `{text}` is not a positive number of rows (a whole number above 0)"
        )),
    }
}

/// A duration option (`max_latency = '500ms'`); `None` when the options do
/// not set it.
pub(crate) fn duration_option(
    options: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<std::time::Duration>, String> {
    options
        .get(key)
        .map(|d| iotql_engine::time::parse_duration(d).map_err(|e| format!("{key} `{d}`: {e}")))
        .transpose()
}

pub(crate) fn resolve(path: &str, base: &Path) -> String {
    if path == "-" || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        base.join(path).display().to_string()
    }
}

fn connector_and_path(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<(String, String), String> {
    let connector = options
        .get("connector")
        .ok_or("the declaration names no `connector` (e.g. connector = 'csv')")?
        .to_ascii_lowercase();
    if connector == "sim" {
        return Err(SIM_IS_AN_INPUT.into());
    }
    let path = options.get("path").map(|p| resolve(p, base));
    match (connector.as_str(), path) {
        ("stdout", _) => Ok((connector, String::new())),
        (_, Some(p)) => Ok((connector, p)),
        (_, None) => Err(format!("the `{connector}` connector needs `path = '...'`")),
    }
}

/// Whether the declaration's connector is `name`.
fn is_connector(options: &BTreeMap<String, String>, name: &str) -> bool {
    options
        .get("connector")
        .is_some_and(|c| c.eq_ignore_ascii_case(name))
}

/// The alert connector (`webhook`, `slack`, `log`) the declaration names.
fn alert_connector(options: &BTreeMap<String, String>) -> Option<&'static str> {
    crate::alert::CONNECTORS
        .iter()
        .copied()
        .find(|c| is_connector(options, c))
}

/// The input a declaration's options describe; `${NAME}` references in
/// their values are replaced from the environment.
pub fn input_from_options(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<InputSpec, String> {
    let options = secret::expand_options(options)?;
    expanded_input_from_options(&options, base).map_err(scrubbed)
}

fn expanded_input_from_options(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<InputSpec, String> {
    if let Some(kind) = alert_connector(options) {
        return Err(output_only(kind));
    }
    if is_connector(options, "kafka") {
        return crate::kafka::KafkaInput::from_options(options, base).map(InputSpec::Kafka);
    }
    if is_connector(options, "mqtt") {
        return crate::mqtt::MqttInput::from_options(options, base)
            .map(|i| InputSpec::Mqtt(Box::new(i)));
    }
    if is_connector(options, "sim") {
        return crate::sim::SimInput::from_options(options).map(|i| InputSpec::Sim(Box::new(i)));
    }
    let (connector, path) = connector_and_path(options, base)?;
    if connector == "sqlite" {
        let read = match (options.get("table"), options.get("query")) {
            (Some(t), None) => crate::sqlite::SqliteRead::Table(t.clone()),
            (None, Some(q)) => crate::sqlite::SqliteRead::Query(q.clone()),
            _ => {
                return Err(
                    "the `sqlite` connector needs `table = '...'` or `query = 'SELECT ...'`".into(),
                );
            }
        };
        return Ok(InputSpec::Sqlite(crate::sqlite::SqliteInput {
            path: path.into(),
            read,
        }));
    }
    parse_expanded_input_uri(&format!("{connector}:{path}"))
}

/// The output a declaration's options describe; `${NAME}` references in
/// their values are replaced from the environment.
pub fn output_from_options(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<OutputSpec, String> {
    let mut options = secret::expand_options(options)?;
    let result = Throttle::take(&mut options).and_then(|throttle| {
        plain_output_from_options(&options, base).map(|spec| throttled(spec, throttle))
    });
    result.map_err(scrubbed)
}

fn plain_output_from_options(
    options: &BTreeMap<String, String>,
    base: &Path,
) -> Result<OutputSpec, String> {
    if alert_connector(options).is_some() {
        return crate::alert::AlertOutput::from_options(options, base)
            .map(|o| OutputSpec::Alert(Box::new(o)));
    }
    if is_connector(options, "kafka") {
        return crate::kafka::KafkaOutput::from_options(options, base).map(OutputSpec::Kafka);
    }
    if is_connector(options, "mqtt") {
        return crate::mqtt::MqttOutput::from_options(options, base)
            .map(|o| OutputSpec::Mqtt(Box::new(o)));
    }
    if is_connector(options, "parquet") {
        return crate::parquet::ParquetOutput::from_options(options, base).map(OutputSpec::Parquet);
    }
    if is_connector(options, "postgres") || is_connector(options, "postgresql") {
        return crate::postgres::PostgresOutput::from_options(options, base)
            .map(|o| OutputSpec::Postgres(Box::new(o)));
    }
    let (connector, path) = connector_and_path(options, base)?;
    if connector == "sqlite" {
        let mut options = options.clone();
        options.insert("path".into(), path);
        return crate::sqlite::SqliteOutput::from_options(&options).map(OutputSpec::Sqlite);
    }
    if connector == "stdout" {
        return Ok(OutputSpec::JsonLines(OutputTarget::Stdout));
    }
    parse_plain_output_uri(&format!("{connector}:{path}"))
}

/// A schema declared as `schema = 'device_id nvarchar(max), ts datetime, temp float'`.
pub fn declared_schema(options: &BTreeMap<String, String>) -> Result<Option<SchemaRef>, String> {
    let Some(text) = options.get("schema") else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for column in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (name, ty) = column.rsplit_once(char::is_whitespace).ok_or_else(|| {
            format!("schema column `{column}` needs a name and a type, e.g. `temp float`")
        })?;
        let t = match ty.trim().to_ascii_lowercase().as_str() {
            "bigint" => DataType::Int64,
            "float" => DataType::Float64,
            "nvarchar(max)" | "nvarchar" => DataType::Utf8,
            "datetime" => DataType::Utf8,
            "bit" => DataType::Boolean,
            other => {
                return Err(format!(
                    "schema type `{other}` of `{}`: use bigint, float, nvarchar(max), datetime or bit",
                    name.trim()
                ));
            }
        };
        fields.push(Field::new(name.trim().trim_matches(['[', ']']), t, true));
    }
    Ok(Some(Arc::new(Schema::new(fields))))
}

/// Opens an input for reading; `columns` (lower-case names) limits it to
/// the columns the job reads (`None`: all). A declared schema is checked in
/// full: a value of the wrong type refuses its event even in a column the
/// job does not read.
pub fn open_source(
    name: &str,
    spec: &InputSpec,
    schema: Option<SchemaRef>,
    batch_size: usize,
    columns: Option<&std::collections::BTreeSet<String>>,
) -> Result<Box<dyn Source>, EngineError> {
    let columns = if schema.is_some() { None } else { columns };
    Ok(match spec {
        InputSpec::Csv(input) => csv::open_source(name, input, schema, batch_size, columns)?,
        InputSpec::JsonLines(input) => {
            jsonl::open_source(name, input, schema, batch_size, columns)?
        }
        InputSpec::Sqlite(input) => {
            Box::new(crate::sqlite::SqliteSource::open(name, input, batch_size)?)
        }
        InputSpec::Kafka(input) => Box::new(crate::kafka::KafkaSource::open(
            name, input, schema, batch_size, columns,
        )?),
        InputSpec::Mqtt(input) => Box::new(crate::mqtt::MqttSource::open(
            name, input, schema, batch_size, columns,
        )?),
        InputSpec::Sim(input) => Box::new(crate::sim::SimSource::open(name, input, batch_size)?),
    })
}

/// Every row of a bounded source (a reference table) as one batch, without
/// the hidden columns (position, raw text), and the rows it could not read.
pub fn read_all(
    source: &mut dyn Source,
) -> Result<(RecordBatch, Vec<iotql_engine::operator::DeadLetter>), EngineError> {
    let schema = source.schema();
    let mut batches = Vec::new();
    let mut dead_letters = Vec::new();
    while let Some(b) = source.next_batch()? {
        dead_letters.extend(b.dead_letters);
        if let Some(batch) = b.batch {
            let keep: Vec<usize> = (0..batch.num_columns())
                .filter(|&i| !batch.schema().field(i).name().starts_with("__iotql_"))
                .collect();
            batches.push(batch.project(&keep)?);
        }
    }
    let table = iotql_engine::arrow::compute::concat_batches(&schema, &batches)?;
    Ok((table, dead_letters))
}

/// The sink of an output.
pub fn open_sink(name: &str, spec: &OutputSpec) -> Box<dyn Sink> {
    match spec {
        OutputSpec::Csv(target) => Box::new(CsvSink::new(name, target.clone())),
        OutputSpec::JsonLines(target) => Box::new(JsonLinesSink::new(name, target.clone())),
        OutputSpec::Sqlite(output) => {
            Box::new(crate::sqlite::SqliteSink::new(name, output.clone()))
        }
        OutputSpec::Kafka(output) => Box::new(crate::kafka::KafkaSink::new(name, output.clone())),
        OutputSpec::Mqtt(output) => Box::new(crate::mqtt::MqttSink::new(name, (**output).clone())),
        OutputSpec::Postgres(output) => {
            Box::new(crate::postgres::PostgresSink::new(name, (**output).clone()))
        }
        OutputSpec::Parquet(output) => {
            Box::new(crate::parquet::ParquetSink::new(name, output.clone()))
        }
        OutputSpec::Alert(output) => output.open_sink(name),
        OutputSpec::Throttled(spec, throttle) => {
            Box::new(ThrottledSink::new(open_sink(name, spec), throttle.clone()))
        }
    }
}

/// Declaration options from pairs, for tests.
#[cfg(test)]
pub(crate) fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_become_the_options_of_a_declaration() {
        let pairs = |uri: &str| -> Vec<String> {
            uri_as_options(uri)
                .unwrap()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        };
        assert_eq!(
            pairs("csv:data/r.csv"),
            ["connector=csv", "path=data/r.csv"]
        );
        assert_eq!(
            pairs("sqlite:edge.db?table=alerts&key=device_id"),
            [
                "connector=sqlite",
                "path=edge.db",
                "table=alerts",
                "key=device_id"
            ]
        );
        assert_eq!(
            pairs("sim:?devices=2&rate=50"),
            ["connector=sim", "devices=2", "rate=50"]
        );
        assert_eq!(
            pairs("kafka://localhost:9092/readings?group=g"),
            [
                "connector=kafka",
                "brokers=localhost:9092",
                "topic=readings",
                "group=g"
            ]
        );
        assert_eq!(pairs("stdout"), ["connector=stdout"]);
        assert!(uri_as_options("webhook:https://example.com/hook").is_err());
        // Each means what the URI means.
        for uri in [
            "csv:data/r.csv",
            "sim:?devices=2&rate=max&start=2026-01-01T00:00:00Z",
        ] {
            let options: BTreeMap<String, String> =
                uri_as_options(uri).unwrap().into_iter().collect();
            assert_eq!(
                input_from_options(&options, Path::new("")).unwrap(),
                parse_input_uri(uri).unwrap()
            );
        }
    }

    #[test]
    fn sim_is_an_input_by_uri_and_by_declaration() {
        let InputSpec::Sim(sim) = parse_input_uri("sim:?devices=2&rate=max").unwrap() else {
            panic!("not the simulator");
        };
        assert_eq!(sim.fleet.devices(), 30);
        assert_eq!(sim.pace, crate::sim::Pace::Max);
        assert!(matches!(
            parse_input_uri("sim:").unwrap(),
            InputSpec::Sim(_)
        ));
        let declared = BTreeMap::from([
            ("connector".to_string(), "sim".to_string()),
            ("sites".to_string(), "1".to_string()),
        ]);
        assert!(matches!(
            input_from_options(&declared, Path::new(".")).unwrap(),
            InputSpec::Sim(s) if s.fleet.devices() == 15
        ));
        let e = parse_input_uri("sim:?devices=zero").unwrap_err();
        assert!(
            e.contains("sim:?devices=zero") && e.contains("devices"),
            "{e}"
        );
        assert!(
            parse_output_uri("sim:")
                .unwrap_err()
                .contains("iotql simulate")
        );
    }

    #[test]
    fn any_output_uri_takes_a_throttle() {
        let spec = parse_output_uri(
            "sqlite:fleet.db?table=alerts&throttle=10m&key=deviceId&throttle_by=deviceId",
        )
        .unwrap();
        let OutputSpec::Throttled(inner, throttle) = spec else {
            panic!("not throttled: {spec:?}");
        };
        assert_eq!(throttle.by, ["deviceId"]);
        let OutputSpec::Sqlite(sqlite) = *inner else {
            panic!("not SQLite: {inner:?}");
        };
        assert_eq!(
            (sqlite.table.as_str(), sqlite.key.as_slice()),
            ("alerts", &["deviceId".to_string()][..])
        );
        assert!(matches!(
            parse_output_uri("csv:out.csv").unwrap(),
            OutputSpec::Csv(_)
        ));
        let declared = BTreeMap::from([
            ("connector".to_string(), "csv".to_string()),
            ("path".to_string(), "a.csv".to_string()),
            ("throttle".to_string(), "1m".to_string()),
        ]);
        assert!(matches!(
            output_from_options(&declared, Path::new("/jobs")).unwrap(),
            OutputSpec::Throttled(..)
        ));
    }
}
