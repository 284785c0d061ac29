//! HTTPS for the API (rustls, ring): the certificate chain and key from PEM files, checked for
//! changes every `api.tls.reload_interval` and swapped in for new connections without a
//! restart; a broken or half-written pair is refused and the running one kept.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// Why a certificate/key pair cannot be used, naming the configuration key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use the certificate file {path}: {why}")]
    Cert { path: String, why: String },
    #[error("cannot use the private key file {path}: {why}")]
    Key { path: String, why: String },
}

impl TlsError {
    /// The configuration key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert { .. } => "api.tls.cert",
            TlsError::Key { .. } => "api.tls.key",
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair: the chain parses, the key parses, and the key belongs to the
/// chain's first certificate.
pub fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let cert_err = |why: String| TlsError::Cert {
        path: shown(&files.cert),
        why,
    };
    let key_err = |why: String| TlsError::Key {
        path: shown(&files.key),
        why,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| key_err(e.to_string()))?;
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| key_err(e.to_string()))?;
    Ok(certified)
}

/// The pair in use, swapped when the files change.
#[derive(Debug)]
pub struct Reloading {
    files: TlsFiles,
    current: Mutex<Arc<CertifiedKey>>,
    /// The files' contents the current pair was made from.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(duet_base::lock(&self.current).clone())
    }
}

impl Reloading {
    /// Loads the pair now (an error names the configuration key).
    pub fn new(files: TlsFiles) -> Result<Arc<Reloading>, TlsError> {
        let contents = contents(&files);
        let certified = load(&files)?;
        Ok(Arc::new(Reloading {
            files,
            current: Mutex::new(Arc::new(certified)),
            loaded: Mutex::new(contents),
        }))
    }

    /// The acceptor for the API's connections: TLS 1.2 and 1.3, HTTP/1.1.
    pub fn acceptor(self: &Arc<Self>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Re-reads the files; a changed, usable pair replaces the current one. Whether it did.
    pub fn reload(&self) -> bool {
        let now = contents(&self.files);
        if *duet_base::lock(&self.loaded) == now {
            return false;
        }
        match load(&self.files) {
            Ok(certified) => {
                *duet_base::lock(&self.current) = Arc::new(certified);
                *duet_base::lock(&self.loaded) = now;
                tracing::info!(cert = %self.files.cert.display(), "API: new TLS certificate loaded");
                true
            }
            Err(e) => {
                // Remembered, so a broken pair is said once, not at every check.
                *duet_base::lock(&self.loaded) = now;
                tracing::warn!(error = %e, "API: the changed TLS files are refused; the running certificate is kept");
                false
            }
        }
    }

    /// Checks the files every `reload_interval` until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.files.reload_interval) => {}
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reload()).await;
        }
    }
}

/// Both files' bytes (empty when unreadable: a file being replaced).
fn contents(files: &TlsFiles) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(&files.cert).unwrap_or_default(),
        std::fs::read(&files.key).unwrap_or_default(),
    )
}
