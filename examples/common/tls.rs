//! The TLS flags the example servers share (`--tls-cert`, `--tls-key`,
//! `--tls-handshake-timeout`) and the acceptor they build. Included by each server with
//! `#[path = "common/tls.rs"] mod tls_flags;` (not an example itself). Without `--tls-cert`
//! nothing changes: the server speaks plain TCP as before.

use clap::Args;
use sockloop::tls::TlsAcceptor;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// `--tls-cert PEM --tls-key PEM [--tls-handshake-timeout SECS]`.
#[derive(Args, Debug, Clone)]
pub struct TlsFlags {
    /// Serve TLS with this PEM certificate chain (the server's own certificate first).
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for --tls-cert (RSA, PKCS#8 or EC).
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a TLS handshake may take before the connection is closed.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub tls_handshake_timeout: f64,
}

impl TlsFlags {
    /// The acceptor the flags describe, offering `alpn` (`None` without `--tls-cert`).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> io::Result<Option<TlsAcceptor>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else { return Ok(None) };
        let tls = TlsAcceptor::from_pem_files(cert, key)?
            .with_alpn(alpn)
            .with_handshake_timeout(Duration::from_secs_f64(self.tls_handshake_timeout));
        Ok(Some(tls))
    }
}
