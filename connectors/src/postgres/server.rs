//! Connections to a PostgreSQL server: one r2d2 pool per server (address,
//! credentials, TLS) in the process, shared by every output that writes
//! there; TLS through rustls; and which errors are outages to wait out
//! rather than reasons to stop.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use r2d2_postgres::PostgresConnectionManager;
use r2d2_postgres::r2d2::{self, NopErrorHandler, Pool, PooledConnection};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{PostgresOutput, TlsMode};

type Manager = PostgresConnectionManager<MakeRustlsConnect>;

/// A connection taken from the pool; back to the pool when dropped.
pub(super) type Connection = PooledConnection<Manager>;

/// Connections per server: an output uses one at a time (writes come from
/// the job's one pump thread), so a few serve every output of a job.
const POOL_SIZE: u32 = 4;

/// How long taking a connection waits while the server cannot be reached,
/// before the caller backs off and tries again.
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server as the outputs of this process reach it.
#[derive(Clone)]
pub(super) struct Server {
    pool: Pool<Manager>,
    config: postgres::Config,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The pools made so far, by configuration (few: a linear search).
type Pools = Vec<((tokio_postgres::Config, TlsMode), Server)>;

fn pools() -> &'static Mutex<Pools> {
    static POOLS: OnceLock<Mutex<Pools>> = OnceLock::new();
    POOLS.get_or_init(|| Mutex::new(Vec::new()))
}

impl Server {
    /// The server of `output`, shared with the other outputs of this
    /// process that connect to it the same way. Connects lazily.
    pub(super) fn of(output: &PostgresOutput) -> Result<Server, String> {
        let key = (output.config.clone(), output.tls.clone());
        let mut pools = pools()
            .lock()
            .map_err(|_| "the PostgreSQL connection pools are poisoned (a bug)".to_string())?;
        if let Some((_, server)) = pools.iter().find(|(k, _)| *k == key) {
            return Ok(server.clone());
        }
        let tls = MakeRustlsConnect::new(client_config(&output.tls)?);
        let config = postgres::Config::from(output.config.clone());
        let manager = PostgresConnectionManager::new(config.clone(), tls.clone());
        let pool = r2d2::Builder::new()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(CHECKOUT_TIMEOUT)
            // Failures are reported by the caller, once per outage.
            .error_handler(Box::new(NopErrorHandler))
            .build_unchecked(manager);
        let server = Server { pool, config, tls };
        pools.push((key, server.clone()));
        Ok(server)
    }

    /// A connection of the pool (checked with an empty query first, so that
    /// one broken by a server restart is replaced). Fails after a few
    /// seconds when the server cannot be reached.
    pub(super) fn get(&self) -> Result<Connection, String> {
        self.pool.get().map_err(|e| e.to_string())
    }

    /// A connection of its own, with the client's error: to tell at start
    /// whether the server is away (wait) or refuses us (stop).
    pub(super) fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.config.connect(self.tls.clone())
    }
}

/// Whether `error` means the server cannot be reached or is restarting (so
/// the work is to be done again once it is back), rather than a refusal
/// that waiting will not cure (bad data, permissions, credentials,
/// certificates).
pub(super) fn is_outage(error: &postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        // Connection exceptions; shutdown, crash, starting up; too many
        // connections; serialization failure and deadlock (retried as a whole).
        return code.starts_with("08")
            || matches!(
                code,
                "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
            );
    }
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::NotConnected
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
                    | ErrorKind::UnexpectedEof
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
                    | ErrorKind::NetworkDown
            );
        }
        source = e.source();
    }
    false
}

/// `error` as a person reads it: the server's message with its detail and
/// hint, or the client's with its cause.
pub(super) fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = db.message().to_string();
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        let cause = e.to_string();
        if !text.contains(&cause) {
            text.push_str(&format!(": {cause}"));
        }
        source = e.source();
    }
    text
}

/// What to do when the server's certificate did not verify (`error`, as
/// [`describe`] put it) under `verify-full`; empty otherwise.
pub(super) fn certificate_hint(error: &str, mode: &TlsMode) -> String {
    let TlsMode::VerifyFull { root_cert } = mode else {
        return String::new();
    };
    if !error.contains("invalid peer certificate") {
        return String::new();
    }
    let authorities = root_cert.as_ref().map_or_else(
        || "the system's authorities (no sslrootcert)".to_string(),
        |p| format!("sslrootcert {}", p.display()),
    );
    format!(
        "; with sslmode = 'verify-full' the server's certificate must be signed by {authorities} and name the host of the url: give the authority that signed it, or sslmode = 'require' to encrypt without checking it"
    )
}

/// rustls settings for `mode` (unused when TLS is disabled).
fn client_config(mode: &TlsMode) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    Ok(match mode {
        TlsMode::VerifyFull { root_cert } => builder
            .with_root_certificates(crate::tls::root_store(root_cert.as_deref(), "sslrootcert")?)
            .with_no_client_auth(),
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
    })
}

/// libpq's `prefer` and `require`: the connection is encrypted, but the
/// server's certificate is not checked (`verify-full` checks it). The
/// handshake's signatures are still verified.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl Unverified {
    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.0.signature_verification_algorithms
    }
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}
