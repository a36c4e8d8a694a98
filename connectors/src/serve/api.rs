//! The REST API: the jobs and their state, each output's latest rows and
//! rows in a time range (from the output's store, or its in-memory tail),
//! live rows as Server-Sent Events. Read-only: every route is a GET. The
//! OpenAPI document (`/openapi.json`) is generated from these handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::query::{RowQuery, iso};
use super::registry::{JobView, OutputView, Registry};

/// The OpenAPI document of the API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "iotql",
        description = "The jobs an iotql process runs, their state and their outputs' rows. Read-only. With an access token (`--http-token`), send it as `Authorization: Bearer TOKEN` or as the `token` query parameter."
    ),
    paths(jobs, job, latest, rows, live, super::metrics_text),
    components(schemas(
        JobInfo,
        InputInfo,
        PartitionInfo,
        LatencyInfo,
        OutputInfo,
        ColumnInfo,
        CheckpointInfo,
        Rows,
        ApiError
    ))
)]
pub struct ApiDoc;

/// What went wrong with a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiError {
    /// In words, with what to do.
    pub error: String,
}

/// A request that failed: its status and why.
#[derive(Debug)]
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

fn not_found(what: String) -> Failure {
    Failure(StatusCode::NOT_FOUND, what)
}

/// A job and its counters now.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobInfo {
    pub name: String,
    /// The job file.
    pub file: String,
    /// `starting`, `running`, `completed`, `stopped` or `failed`.
    pub state: String,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Events read by all inputs.
    pub events_in: u64,
    /// The slowest input's watermark (RFC 3339).
    pub watermark: Option<String>,
    /// How far the watermark is behind the wall clock.
    pub watermark_delay_seconds: Option<f64>,
    /// Events and rows in the dead-letter output.
    pub dead_letters: u64,
    pub last_checkpoint: Option<CheckpointInfo>,
    /// How long its batches take to go through the job (operators and
    /// outputs); absent before the first batch.
    pub batch_latency: Option<LatencyInfo>,
    pub inputs: Vec<InputInfo>,
    pub outputs: Vec<OutputInfo>,
}

/// Quantiles of the batch latency, as the upper bounds of the histogram's
/// buckets that hold them (`/metrics` has the buckets).
#[derive(Debug, Serialize, ToSchema)]
pub struct LatencyInfo {
    /// Batches measured.
    pub batches: u64,
    /// The median is at most this long (absent when it is past the last
    /// bucket, 10 s).
    pub p50_seconds: Option<f64>,
    /// The 99th percentile is at most this long (absent when it is past
    /// the last bucket, 10 s).
    pub p99_seconds: Option<f64>,
    /// The mean.
    pub mean_seconds: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointInfo {
    pub id: u64,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InputInfo {
    pub name: String,
    pub events_in: u64,
    pub late_adjusted: u64,
    pub late_dropped: u64,
    /// RFC 3339; absent before the first event.
    pub watermark: Option<String>,
    /// Messages left to read in its partitions (a Kafka input, as of its
    /// last statistics, at most a second old); absent for other inputs.
    pub consumer_lag: Option<u64>,
    /// Each partition's lag (a Kafka input).
    pub partitions: Vec<PartitionInfo>,
}

/// A Kafka partition an input reads.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionInfo {
    pub topic: String,
    pub partition: i32,
    /// Messages between the input's position and the partition's end.
    pub lag: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutputInfo {
    pub name: String,
    /// The connector (`sqlite`, `parquet`, `webhook`, ...).
    pub connector: String,
    /// Where `latest` and `rows` read: `sqlite`, `postgres`, `parquet`, or
    /// `tail` (the latest rows, in memory).
    pub source: String,
    /// Rows the job gave the output.
    pub rows_out: u64,
    /// Rows its destination has taken, when the output counts them.
    pub rows_written: Option<u64>,
    pub retries: u64,
    pub outages: u64,
    /// Its destination is unreachable now.
    pub down: bool,
    pub columns: Vec<ColumnInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// The Arrow type (`Utf8`, `Float64`, `Timestamp(Microsecond, Some("UTC"))`).
    pub data_type: String,
}

/// Rows of an output.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rows {
    pub job: String,
    pub output: String,
    /// Where they were read: `sqlite`, `postgres`, `parquet` or `tail`.
    pub source: String,
    /// The column the time range and the order apply to.
    pub time_column: Option<String>,
    /// One object per row, keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
}

/// The parameters of a rows request. Any other parameter filters by a
/// column: `device_id=d-001` keeps the rows whose `device_id` is `d-001`
/// (compared as text).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RowParams {
    /// Rows at or after this time: RFC 3339, or a duration before now
    /// (`-15m`, `-2h`, `-7d`).
    from: Option<String>,
    /// Rows before this time (same forms).
    to: Option<String>,
    /// At most this many rows (1 to 10000; default 100).
    limit: Option<usize>,
    /// The datetime column of the range and order (default: the output's
    /// first datetime column).
    time_column: Option<String>,
    /// Only the newest row of each value of this column (`by=device_id`:
    /// each device's latest row).
    by: Option<String>,
}

/// The jobs and their state.
#[utoipa::path(get, path = "/api/jobs", responses((status = 200, body = [JobInfo])))]
pub async fn jobs(State(registry): State<Arc<Registry>>) -> Json<Vec<JobInfo>> {
    Json(registry.jobs().iter().map(|j| info(j)).collect())
}

/// One job and its state.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}",
    params(("job" = String, Path, description = "The job's name")),
    responses((status = 200, body = JobInfo), (status = 404, body = ApiError))
)]
pub async fn job(
    State(registry): State<Arc<Registry>>,
    Path(name): Path<String>,
) -> Result<Json<JobInfo>, Failure> {
    let job = find_job(&registry, &name)?;
    Ok(Json(info(&job)))
}

/// An output's latest rows, newest first.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/outputs/{output}/latest",
    params(
        ("job" = String, Path, description = "The job's name"),
        ("output" = String, Path, description = "The output's name"),
        RowParams
    ),
    responses((status = 200, body = Rows), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn latest(
    State(registry): State<Arc<Registry>>,
    Path((job, output)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Rows>, Failure> {
    read(&registry, &job, &output, &params, true).await
}

/// An output's rows in a time range, oldest first.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/outputs/{output}/rows",
    params(
        ("job" = String, Path, description = "The job's name"),
        ("output" = String, Path, description = "The output's name"),
        RowParams
    ),
    responses((status = 200, body = Rows), (status = 400, body = ApiError), (status = 404, body = ApiError))
)]
pub async fn rows(
    State(registry): State<Arc<Registry>>,
    Path((job, output)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Rows>, Failure> {
    read(&registry, &job, &output, &params, false).await
}

/// An output's rows as the job writes them, as Server-Sent Events: an
/// event `row` per row (its data a JSON object), `lagged` when a slow
/// client missed rows (its data how many). Column filters apply.
#[utoipa::path(
    get,
    path = "/api/jobs/{job}/outputs/{output}/live",
    params(
        ("job" = String, Path, description = "The job's name"),
        ("output" = String, Path, description = "The output's name"),
    ),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 404, body = ApiError)
    )
)]
pub async fn live(
    State(registry): State<Arc<Registry>>,
    Path((job, output)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Failure> {
    let (_, view) = find_output(&registry, &job, &output)?;
    let schema = view.schema().ok_or_else(not_started)?;
    let query = RowQuery::parse(&params, &schema, true).map_err(bad_request)?;
    let receiver = view.tail.subscribe();
    let stream = futures_util::stream::unfold(receiver, move |mut receiver| {
        let filters = query.filters.clone();
        async move {
            loop {
                let event = match receiver.recv().await {
                    Ok(row) => {
                        if !super::tail::passes(&row, &filters) {
                            continue;
                        }
                        Event::default()
                            .event("row")
                            .json_data(&row.values)
                            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
                    }
                    Err(RecvError::Lagged(n)) => {
                        Event::default().event("lagged").data(n.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), receiver));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn read(
    registry: &Registry,
    job: &str,
    output: &str,
    params: &[(String, String)],
    newest_first: bool,
) -> Result<Json<Rows>, Failure> {
    let (job, view) = find_output(registry, job, output)?;
    let schema = view.schema().ok_or_else(not_started)?;
    let query = RowQuery::parse(params, &schema, newest_first).map_err(bad_request)?;
    let (source, rows) = match &view.store {
        Some(store) => {
            let rows = store.query(&query, &schema).await.map_err(|e| {
                Failure(
                    StatusCode::BAD_GATEWAY,
                    format!("reading output `{}` ({}): {e}", view.name, store.kind()),
                )
            })?;
            (store.kind(), rows)
        }
        None => ("tail", view.tail.query(&query)),
    };
    Ok(Json(Rows {
        job: job.name.clone(),
        output: view.name.clone(),
        source: source.to_string(),
        time_column: query.time_column,
        rows,
    }))
}

fn bad_request(e: String) -> Failure {
    Failure(StatusCode::BAD_REQUEST, e)
}

fn not_started() -> Failure {
    Failure(
        StatusCode::SERVICE_UNAVAILABLE,
        "the job has not started its outputs yet: try again in a moment".into(),
    )
}

fn find_job(registry: &Registry, name: &str) -> Result<Arc<JobView>, Failure> {
    registry.job(name).ok_or_else(|| {
        let names: Vec<String> = registry.jobs().iter().map(|j| j.name.clone()).collect();
        not_found(format!("no job `{name}` (jobs: {})", names.join(", ")))
    })
}

fn find_output(
    registry: &Registry,
    job: &str,
    output: &str,
) -> Result<(Arc<JobView>, Arc<OutputView>), Failure> {
    let job = find_job(registry, job)?;
    let view = job.output(output).ok_or_else(|| {
        let names: Vec<String> = job.outputs().iter().map(|o| o.name.clone()).collect();
        not_found(format!(
            "job `{}` has no output `{output}` (outputs: {})",
            job.name,
            names.join(", ")
        ))
    })?;
    Ok((job, view))
}

fn info(job: &JobView) -> JobInfo {
    let state = job.state();
    let now = super::registry::now_ms() * 1000;
    let watermark = job.watermark();
    let checkpoint = job.checkpoint_id.load(Ordering::Relaxed);
    JobInfo {
        name: job.name.clone(),
        file: job.file.clone(),
        state: state.name().to_string(),
        error: match state {
            super::registry::JobState::Failed(e) => Some(e),
            _ => None,
        },
        started_at: iso(job.started_ms * 1000),
        events_in: job.events_in(),
        watermark: watermark.map(iso),
        watermark_delay_seconds: watermark.map(|w| (now - w) as f64 / 1e6),
        dead_letters: job.dead_letters(),
        last_checkpoint: (checkpoint > 0).then(|| CheckpointInfo {
            id: checkpoint,
            taken_at: iso(job.checkpoint_ms.load(Ordering::Relaxed) * 1000),
        }),
        batch_latency: job
            .batch_latency()
            .filter(|h| h.count > 0)
            .map(|h| LatencyInfo {
                batches: h.count,
                p50_seconds: h.quantile(0.5).filter(|q| q.is_finite()),
                p99_seconds: h.quantile(0.99).filter(|q| q.is_finite()),
                mean_seconds: h.sum_seconds / h.count as f64,
            }),
        inputs: job
            .inputs()
            .iter()
            .map(|i| {
                let s = &i.stats;
                let w = s.watermark.load(Ordering::Relaxed);
                let partitions: Vec<PartitionInfo> = job
                    .lags(&i.name)
                    .into_iter()
                    .map(|l| PartitionInfo {
                        topic: l.topic,
                        partition: l.partition,
                        lag: l.lag,
                    })
                    .collect();
                InputInfo {
                    name: i.name.clone(),
                    events_in: s.events_in.load(Ordering::Relaxed),
                    late_adjusted: s.late_adjusted.load(Ordering::Relaxed),
                    late_dropped: s.late_dropped.load(Ordering::Relaxed),
                    watermark: (w != i64::MIN).then(|| iso(w)),
                    consumer_lag: (!partitions.is_empty())
                        .then(|| partitions.iter().map(|p| p.lag).sum()),
                    partitions,
                }
            })
            .collect(),
        outputs: job.outputs().iter().map(|o| output_info(o)).collect(),
    }
}

fn output_info(output: &OutputView) -> OutputInfo {
    let metrics = output.stats().and_then(|s| s.sink.clone());
    let load = |f: fn(&iotql_engine::io::SinkMetrics) -> u64| metrics.as_deref().map_or(0, f);
    OutputInfo {
        name: output.name.clone(),
        connector: output.connector.to_string(),
        source: output
            .store
            .as_ref()
            .map_or("tail", |s| s.kind())
            .to_string(),
        rows_out: output.rows(),
        rows_written: metrics
            .as_deref()
            .map(|m| m.rows_written.load(Ordering::Relaxed)),
        retries: load(|m| m.retries.load(Ordering::Relaxed)),
        outages: load(|m| m.outages.load(Ordering::Relaxed)),
        down: metrics
            .as_deref()
            .is_some_and(|m| m.down_since_ms.load(Ordering::Relaxed) != 0),
        columns: output
            .schema()
            .map(|s| {
                s.fields()
                    .iter()
                    .map(|f| ColumnInfo {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
