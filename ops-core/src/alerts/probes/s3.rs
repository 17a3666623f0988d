//! The `s3` probe: HEAD of the bucket, signed with AWS SigV4 by hand.

use super::*;

/// SHA-256 of the empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What a SigV4 signature covers.
#[derive(Debug, Clone)]
pub struct SigV4<'a> {
    pub method: &'a str,
    /// The canonical (already URI-encoded) path.
    pub path: &'a str,
    /// The canonical query string (may be empty).
    pub query: &'a str,
    /// Headers to sign, `host` and `x-amz-date` included (any case; sorted here).
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_sha256: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
}

/// The `Authorization` header value of AWS Signature Version 4.
pub fn sigv4_authorization(r: &SigV4<'_>) -> String {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method, r.path, r.query, canonical_headers, signed, r.payload_sha256
    );
    let date = r.amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{}/{}/aws4_request", r.region, r.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        r.amz_date,
        hex(&<sha2::Sha256 as sha2::Digest>::digest(
            canonical.as_bytes()
        ))
    );
    let k = hmac_sha256(format!("AWS4{}", r.secret_key).as_bytes(), date.as_bytes());
    let k = hmac_sha256(&k, r.region.as_bytes());
    let k = hmac_sha256(&k, r.service.as_bytes());
    let k = hmac_sha256(&k, b"aws4_request");
    let signature = hex(&hmac_sha256(&k, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        r.access_key
    )
}

pub(super) async fn s3(
    client: &reqwest::Client,
    p: &ProbeConfig,
    url: &str,
    now_ms: i64,
) -> ProbeOutcome {
    let secret = match p.password.as_ref().map(|s| s.resolve()) {
        Some(Ok(s)) => s,
        Some(Err(m)) => return ProbeOutcome::Fail(m),
        None => return ProbeOutcome::Fail("no secret key configured".into()),
    };
    let bucket = p.bucket.as_deref().unwrap_or("");
    let endpoint = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(_) => return ProbeOutcome::Fail("invalid endpoint URL".into()),
    };
    let host = match (endpoint.host_str(), endpoint.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return ProbeOutcome::Fail("invalid endpoint URL".into()),
    };
    let amz_date = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    let path = format!("/{bucket}");
    let auth = sigv4_authorization(&SigV4 {
        method: "HEAD",
        path: &path,
        query: "",
        headers: &[
            ("host", &host),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", &amz_date),
        ],
        payload_sha256: EMPTY_SHA256,
        amz_date: &amz_date,
        region: p.region.as_deref().unwrap_or("us-east-1"),
        service: "s3",
        access_key: p.username.as_deref().unwrap_or(""),
        secret_key: secret.expose(),
    });
    let req = client
        .head(format!("{}{path}", url.trim_end_matches('/')))
        .header("x-amz-content-sha256", EMPTY_SHA256)
        .header("x-amz-date", &amz_date)
        .header(reqwest::header::AUTHORIZATION, auth);
    match req.send().await {
        Ok(r) => match r.status().as_u16() {
            200 => ProbeOutcome::Ok("bucket reachable".into()),
            403 => ProbeOutcome::Fail("HTTP 403: access denied (credentials or clock)".into()),
            404 => ProbeOutcome::Fail("HTTP 404: no such bucket".into()),
            s => ProbeOutcome::Fail(format!("HTTP {s}")),
        },
        Err(e) => ProbeOutcome::Fail(reqwest_kind(&e)),
    }
}
