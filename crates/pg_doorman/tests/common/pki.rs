//! Test certificates (rcgen): a CA, a server certificate for localhost/127.0.0.1 and a client
//! certificate, written as PEM files into a temporary directory.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::PathBuf;

/// A CA with one server and one client certificate, as PEM files.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl Pki {
    /// A fresh CA named `name`, a server certificate (localhost, 127.0.0.1) and a client
    /// certificate with CN `app`.
    pub fn new(name: &str) -> Pki {
        Pki::for_host(name, "localhost", true)
    }

    /// As [`Pki::new`] with a server certificate for `host` only (and 127.0.0.1 when `ip`).
    pub fn for_host(name: &str, host: &str, ip: bool) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name.push(DnType::CommonName, name);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, sans: Vec<String>, ip: bool| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            if ip {
                p.subject_alt_names
                    .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
            }
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(host, vec![host.into()], ip);
        let (client_cert, client_key) = leaf("app", Vec::new(), false);
        let pki = Pki {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert_pem,
            server_key_pem,
        };
        pki.write("ca.pem", &pki.ca_pem);
        pki.write("server.crt", &pki.server_cert_pem);
        pki.write("server.key", &pki.server_key_pem);
        pki.write("client.crt", &client_cert);
        pki.write("client.key", &client_key);
        pki
    }

    fn write(&self, name: &str, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        // libpq refuses private keys readable by others.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// Path of one of the files: ca.pem, server.crt, server.key, client.crt, client.key.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Path as a string for configs and conninfo.
    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}
