//! TLS trust shared by the connectors that speak TLS through rustls (MQTT,
//! PostgreSQL): which certificate authorities a server's certificate must
//! chain to.

use std::path::Path;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The authorities of the PEM file `ca_file` (named by the option `option`
/// in messages), or the system's when there is none.
pub(crate) fn root_store(ca_file: Option<&Path>, option: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let failed = |e: &dyn std::fmt::Display| format!("{option} {}: {e}", path.display());
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| failed(&e))? {
                roots
                    .add(cert.map_err(|e| failed(&e))?)
                    .map_err(|e| failed(&e))?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "{option} {} holds no PEM certificate",
                    path.display()
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(format!(
                    "TLS: the system has no root certificates; name the server's CA with {option}"
                ));
            }
        }
    }
    Ok(roots)
}
