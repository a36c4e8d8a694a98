//! The HTTP server of `iotql run --http` and `iotql serve`: a read-only
//! REST API over the jobs and their outputs ([`api`], described at
//! `/openapi.json`), Prometheus metrics at `/metrics` ([`metrics`]) and the
//! dashboard at `/` (its files embedded in the binary: nothing to install,
//! no CDN). It runs on a tokio runtime of its own, on two threads, beside
//! the jobs: a slow client never holds a job up, and a job reaches it only
//! through the counters it shares and the taps on its outputs
//! ([`registry`]). See `docs/http.md`.
//!
//! Safe by default: it listens on loopback; an address beyond this machine
//! is refused unless an access token is set, which every request must then
//! carry.

pub mod api;
pub mod metrics;
pub mod query;
pub mod registry;
pub mod store;
pub mod tail;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;

pub use registry::{JobState, JobView, OutputView, Registry};

/// Rows kept in memory for an output that has no store to read back.
pub const TAIL_ROWS: usize = 10_000;

/// The address the server listens on unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8080";

/// Where the server listens and who may ask it.
#[derive(Clone)]
pub struct HttpOptions {
    pub address: SocketAddr,
    /// Every request must carry it (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`).
    pub token: Option<String>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HttpOptions {
    /// From `--http ADDR:PORT` and the token, refusing an address beyond
    /// this machine without a token.
    pub fn new(address: &str, token: Option<String>) -> Result<HttpOptions, String> {
        let address: SocketAddr = address.parse().map_err(|_| {
            format!("--http `{address}`: write an address and a port (127.0.0.1:8080)")
        })?;
        let token = token.filter(|t| !t.is_empty());
        if !address.ip().is_loopback() && token.is_none() {
            return Err(format!(
                "--http {address} listens beyond this machine: give an access token (--http-token, or the environment variable IOTQL_HTTP_TOKEN), or listen on 127.0.0.1"
            ));
        }
        Ok(HttpOptions { address, token })
    }
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds the address now (so that a port in use is an error before the
    /// job starts) and serves `registry` on threads of its own.
    pub fn start(options: &HttpOptions, registry: Arc<Registry>) -> Result<Server, String> {
        let listener = std::net::TcpListener::bind(options.address)
            .map_err(|e| format!("--http {}: {e}", options.address))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("iotql-http")
            .enable_all()
            .build()
            .map_err(|e| format!("the HTTP server's runtime: {e}"))?;
        let app = router(registry, options.token.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("iotql-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("the HTTP server cannot listen: {e}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = served.await {
                        tracing::error!("the HTTP server stopped: {e}");
                    }
                });
                // Live clients (an open event stream) do not hold the
                // process: what is left is dropped with the runtime.
                runtime.shutdown_background();
            })
            .map_err(|e| format!("the HTTP server's thread: {e}"))?;
        tracing::info!("serving the API, metrics and dashboard on http://{address}/");
        Ok(Server {
            address,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens (the port chosen when asked for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The routes, behind the token check when there is a token.
pub fn router(registry: Arc<Registry>, token: Option<String>) -> Router {
    let routes = Router::new()
        .route("/api/jobs", get(api::jobs))
        .route("/api/jobs/{job}", get(api::job))
        .route("/api/jobs/{job}/outputs/{output}/latest", get(api::latest))
        .route("/api/jobs/{job}/outputs/{output}/rows", get(api::rows))
        .route("/api/jobs/{job}/outputs/{output}/live", get(api::live))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route("/", get(|| asset("index.html")))
        .route(
            "/assets/{file}",
            get(|axum::extract::Path(file): axum::extract::Path<String>| asset_named(file)),
        )
        .with_state(registry);
    match token {
        Some(token) => routes.layer(axum::middleware::from_fn_with_state(
            Arc::<str>::from(token),
            require_token,
        )),
        None => routes,
    }
}

/// The jobs' metrics, in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Metrics for Prometheus", content_type = "application/openmetrics-text"))
)]
pub async fn metrics_text(State(registry): State<Arc<Registry>>) -> Response {
    match metrics::render(&registry) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the metrics could not be written",
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    match api::ApiDoc::openapi().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => api::Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The dashboard's files, embedded in the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
];

async fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => api::Failure(StatusCode::NOT_FOUND, format!("no file `{name}`")).into_response(),
    }
}

async fn asset_named(name: String) -> Response {
    asset(&name).await
}

/// Lets a request through when it carries the token, in the
/// `Authorization` header (`Bearer TOKEN`) or as `?token=` (a browser's
/// EventSource cannot set headers).
async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = request.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(|t| {
                percent_encoding::percent_decode_str(t)
                    .decode_utf8_lossy()
                    .into_owned()
            })
    });
    let given = header.map(str::to_string).or(query);
    if given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = api::Failure(
        StatusCode::UNAUTHORIZED,
        "this server wants its access token: `Authorization: Bearer TOKEN`, or `?token=TOKEN`"
            .into(),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares in time that does not depend on where the texts differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}
