//! The `tls` probe: the peer certificate, read without trusting it, and its verdict.

use std::sync::Arc;

use super::*;
use crate::config::alerts::host_port;

/// What the TLS probe learnt from the peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub issuer_cn: Option<String>,
    pub subject_cn: Option<String>,
    pub not_after_ms: i64,
}

pub(super) async fn tls(
    target: &str,
    server_name: Option<&str>,
    warn_days: i64,
    now_ms: i64,
) -> ProbeOutcome {
    let Some((host, _)) = host_port(target) else {
        return ProbeOutcome::Fail("bad target".into());
    };
    let name = server_name.unwrap_or(host).to_string();
    let cert = match peer_certificate(target, &name).await {
        Ok(c) => c,
        Err(m) => return ProbeOutcome::Fail(m),
    };
    let info = match parse_certificate(&cert) {
        Some(i) => i,
        None => return ProbeOutcome::Fail("unreadable certificate".into()),
    };
    tls_verdict(&info, &name, warn_days, now_ms)
}

/// The verdict on a certificate (pure).
pub fn tls_verdict(info: &CertInfo, name: &str, warn_days: i64, now_ms: i64) -> ProbeOutcome {
    if [&info.issuer_cn, &info.subject_cn]
        .iter()
        .any(|cn| cn.as_deref() == Some(TRAEFIK_DEFAULT_CERT))
    {
        return ProbeOutcome::Fail(format!(
            "{name} serves Traefik's default certificate (no certificate for this host)"
        ));
    }
    let left_ms = info.not_after_ms - now_ms;
    let days = left_ms.div_euclid(86_400_000);
    if left_ms < 0 {
        ProbeOutcome::Fail(format!(
            "the certificate of {name} expired {} day(s) ago",
            (-left_ms) / 86_400_000
        ))
    } else if days < warn_days {
        ProbeOutcome::Warn(format!("the certificate of {name} expires in {days} days"))
    } else {
        ProbeOutcome::Ok(format!("certificate valid for {days} days"))
    }
}

pub(super) async fn peer_certificate(target: &str, name: &str) -> Result<Vec<u8>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| "TLS setup failed".to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|_| "bad server name".to_string())?;
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("cannot connect: {}", io_kind(&e)))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {}", io_kind(&e)))?;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| "no certificate presented".to_string())
}

/// Accepts any certificate: the probe reads it, it does not trust it.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Reads issuer and subject common names and `notAfter` from a DER certificate (the peer's,
/// untrusted: parsed by `x509-parser`, not by hand).
pub fn parse_certificate(cert: &[u8]) -> Option<CertInfo> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    Some(CertInfo {
        issuer_cn: common_name(c.issuer()),
        subject_cn: common_name(c.subject()),
        not_after_ms: c.validity().not_after.timestamp().checked_mul(1000)?,
    })
}

/// The first common name of `name`, as text (lossy for a non-UTF-8 string type).
fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    let cn = name.iter_common_name().next()?;
    Some(match cn.as_str() {
        Ok(s) => s.to_string(),
        Err(_) => String::from_utf8_lossy(cn.as_slice()).into_owned(),
    })
}
