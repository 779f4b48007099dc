//! Test certificates made at test time: a CA (ECDSA P-256, rcgen) and a server certificate it
//! signs for `localhost` and `127.0.0.1`, with an EC key (written as SEC1 `EC PRIVATE KEY` when
//! `openssl` can convert it, PKCS#8 otherwise) or an RSA key (made by `openssl`, which ring
//! cannot do; written as PKCS#1 `RSA PRIVATE KEY`).

use super::TempDir;
use std::path::PathBuf;
use std::process::Command;

/// Which key the server certificate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Ec,
    Rsa,
}

/// PEM files in a temp dir: `ca`, the server's `cert` and `key`.
pub struct Certs {
    pub dir: TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) -> bool {
    Command::new("openssl").args(args).output().is_ok_and(|o| o.status.success())
}

/// Whether RSA certificates can be made here (`openssl` makes the key).
pub fn have_rsa() -> bool {
    super::process::have("openssl") || openssl(&["version"])
}

/// A CA and a server certificate with a `key` key, for `localhost` and `127.0.0.1`.
pub fn make(key: Key) -> Certs {
    let dir = TempDir::new("tls");
    let (ca_path, cert_path, key_path) = (dir.path("ca.pem"), dir.path("cert.pem"), dir.path("key.pem"));
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sockloop test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let leaf_key = match key {
        Key::Ec => rcgen::KeyPair::generate().expect("EC key"),
        Key::Rsa => {
            let pkcs8 = dir.path("rsa-pkcs8.pem");
            assert!(
                openssl(&[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    pkcs8.to_str().unwrap()
                ]),
                "openssl genpkey RSA"
            );
            let pem = std::fs::read_to_string(&pkcs8).unwrap();
            rcgen::KeyPair::from_pem(&pem).expect("RSA key for rcgen")
        }
    };
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&leaf_key, &ca, &ca_key).expect("server certificate");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, cert.pem()).unwrap();
    let pkcs8 = dir.path("key-pkcs8.pem");
    std::fs::write(&pkcs8, leaf_key.serialize_pem()).unwrap();
    // The traditional forms (PKCS#1, SEC1) where openssl can write them, else PKCS#8.
    let (p, k) = (pkcs8.to_str().unwrap(), key_path.to_str().unwrap());
    let converted = match key {
        Key::Rsa => openssl(&["rsa", "-in", p, "-traditional", "-out", k]),
        Key::Ec => openssl(&["ec", "-in", p, "-out", k]),
    };
    if !converted {
        std::fs::copy(&pkcs8, &key_path).unwrap();
    }
    Certs { dir, ca: ca_path, cert: cert_path, key: key_path }
}
