//! [`TlsAcceptor`] and [`TlsConnector`]: the shared, immutable TLS settings of a server or a
//! client (certificates, keys, roots, ALPN, the handshake timeout), loaded from PEM files with
//! rustls' own PEM parser. One value serves every channel; cloning it is cheap.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a handshake may take before the loop closes the connection (without writing to it).
///
/// ```
/// assert_eq!(sockloop::tls::DEFAULT_HANDSHAKE_TIMEOUT, std::time::Duration::from_secs(10));
/// ```
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> io::Error {
    match e {
        rustls::pki_types::pem::Error::Io(e) => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
        other => invalid(format!("{}: {other:?}", path.display())),
    }
}

/// Every certificate in a PEM file, in order (a server's chain: its own first).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sockloop-pem-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let empty = dir.join("empty.pem");
/// std::fs::write(&empty, "")?;
/// assert!(sockloop::tls::load_certs(&empty).is_err()); // no certificate in it
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn load_certs(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no CERTIFICATE in this PEM file", path.display())));
    }
    Ok(certs)
}

/// The first private key in a PEM file: PKCS#8 (`PRIVATE KEY`), RSA (`RSA PRIVATE KEY`) or EC
/// (`EC PRIVATE KEY`).
///
/// ```
/// let dir = std::env::temp_dir().join(format!("sockloop-key-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let none = dir.join("none.pem");
/// std::fs::write(&none, "not a key")?;
/// assert!(sockloop::tls::load_key(&none).is_err());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn load_key(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e))
}

/// A server's TLS settings: its certificate chain and key, ALPN protocols, session resumption
/// (on: a session cache and tickets), and the handshake timeout. Give it to
/// [`Channel::tls_server`](crate::Channel::tls_server) for each accepted socket, or to
/// [`Channel::start_tls_server`](crate::Channel::start_tls_server) for STARTTLS.
///
/// ```no_run
/// let tls = sockloop::tls::TlsAcceptor::from_pem_files("cert.pem", "key.pem")?
///     .with_alpn(&[b"http/1.1"]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TlsAcceptor {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl TlsAcceptor {
    /// Loads the certificate chain and key from PEM files (RSA, PKCS#8 or EC keys); TLS 1.2
    /// and 1.3.
    ///
    /// ```
    /// assert!(sockloop::tls::TlsAcceptor::from_pem_files("/nonexistent.pem", "/nonexistent.key").is_err());
    /// ```
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<TlsAcceptor> {
        TlsAcceptor::new(load_certs(cert)?, load_key(key)?)
    }

    /// From a certificate chain and key already in DER form.
    ///
    /// ```
    /// let bad = sockloop::tls::TlsAcceptor::new(
    ///     vec![rustls::pki_types::CertificateDer::from(vec![1, 2, 3])],
    ///     rustls::pki_types::PrivateKeyDer::Pkcs8(vec![4, 5, 6].into()),
    /// );
    /// assert!(bad.is_err());
    /// ```
    pub fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> io::Result<TlsAcceptor> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(invalid)?;
        // Resumption: the session cache (256 entries) is rustls' default; tickets are added.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(invalid)?;
        Ok(TlsAcceptor::from_config(Arc::new(config)))
    }

    /// From a rustls configuration built by hand (client certificates, other versions ...).
    ///
    /// ```no_run
    /// # let config: std::sync::Arc<rustls::ServerConfig> = unimplemented!();
    /// let tls = sockloop::tls::TlsAcceptor::from_config(config);
    /// ```
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
        TlsAcceptor { config, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT }
    }

    /// The ALPN protocols offered, most preferred first (a client offering none of them still
    /// connects; one offering only others is refused, as RFC 7301 says).
    ///
    /// ```no_run
    /// # let tls: sockloop::tls::TlsAcceptor = unimplemented!();
    /// let tls = tls.with_alpn(&[b"h2", b"http/1.1"]);
    /// ```
    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> TlsAcceptor {
        Arc::make_mut(&mut self.config).alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// How long a handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    ///
    /// ```no_run
    /// # let tls: sockloop::tls::TlsAcceptor = unimplemented!();
    /// let tls = tls.with_handshake_timeout(std::time::Duration::from_secs(3));
    /// ```
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsAcceptor {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration.
    ///
    /// ```no_run
    /// # let tls: sockloop::tls::TlsAcceptor = unimplemented!();
    /// assert!(tls.config().alpn_protocols.is_empty());
    /// ```
    pub fn config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }

    pub(crate) fn connection(&self) -> io::Result<rustls::Connection> {
        Ok(rustls::ServerConnection::new(self.config.clone()).map_err(invalid)?.into())
    }
}

/// A client's TLS settings: the roots it trusts (Mozilla's, from `webpki-roots`, unless
/// given), ALPN protocols, session resumption (on: rustls' in-memory cache) and the handshake
/// timeout. Give it to [`Channel::tls_client`](crate::Channel::tls_client) with the server's
/// name (a DNS name or an IP literal, checked against the certificate's subject alternative
/// names and sent as SNI when it is a name).
///
/// ```
/// let tls = sockloop::tls::TlsConnector::new();
/// assert!(tls.config().enable_sni);
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) handshake_timeout: Duration,
}

impl Default for TlsConnector {
    fn default() -> TlsConnector {
        TlsConnector::new()
    }
}

impl TlsConnector {
    /// Trusts the Mozilla root set compiled in from `webpki-roots`.
    ///
    /// ```
    /// let _tls = sockloop::tls::TlsConnector::new();
    /// ```
    pub fn new() -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        TlsConnector::with_roots(roots).expect("the ring provider supports its safe default versions")
    }

    /// Trusts only the certificates in a PEM file (a private CA, a self-signed server).
    ///
    /// ```
    /// assert!(sockloop::tls::TlsConnector::from_ca_file("/nonexistent-ca.pem").is_err());
    /// ```
    pub fn from_ca_file(path: impl AsRef<Path>) -> io::Result<TlsConnector> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(path.as_ref())? {
            roots.add(cert).map_err(|e| invalid(format!("{}: {e}", path.as_ref().display())))?;
        }
        TlsConnector::with_roots(roots)
    }

    /// Trusts exactly `roots`.
    ///
    /// ```
    /// let tls = sockloop::tls::TlsConnector::with_roots(rustls::RootCertStore::empty())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_roots(roots: rustls::RootCertStore) -> io::Result<TlsConnector> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from_config(Arc::new(config)))
    }

    /// From a rustls configuration built by hand.
    ///
    /// ```no_run
    /// # let config: std::sync::Arc<rustls::ClientConfig> = unimplemented!();
    /// let tls = sockloop::tls::TlsConnector::from_config(config);
    /// ```
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> TlsConnector {
        TlsConnector { config, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT }
    }

    /// The ALPN protocols asked for, most preferred first.
    ///
    /// ```
    /// let tls = sockloop::tls::TlsConnector::new().with_alpn(&[b"http/1.1"]);
    /// assert_eq!(tls.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    /// ```
    pub fn with_alpn(mut self, protocols: &[&[u8]]) -> TlsConnector {
        Arc::make_mut(&mut self.config).alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        self
    }

    /// How long a handshake may take (default [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    ///
    /// ```
    /// let tls = sockloop::tls::TlsConnector::new().with_handshake_timeout(std::time::Duration::from_secs(2));
    /// ```
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> TlsConnector {
        self.handshake_timeout = timeout;
        self
    }

    /// The rustls configuration.
    ///
    /// ```
    /// assert!(sockloop::tls::TlsConnector::new().config().alpn_protocols.is_empty());
    /// ```
    pub fn config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }

    pub(crate) fn connection(&self, server_name: &str) -> io::Result<rustls::Connection> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{server_name:?}: {e}")))?;
        Ok(rustls::ClientConnection::new(self.config.clone(), name).map_err(invalid)?.into())
    }
}
