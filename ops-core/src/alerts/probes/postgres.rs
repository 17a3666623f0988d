//! The `postgres` probe: connect (TLS by `sslmode`) and `SELECT 1`.

use std::str::FromStr;

use sqlx::Connection;

use super::*;
use crate::config::alerts::PgTls;

pub(super) async fn postgres(p: &ProbeConfig, url: &str) -> ProbeOutcome {
    let mut opts = match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(o) => o,
        Err(_) => return ProbeOutcome::Fail("invalid postgres URL".into()),
    };
    if let Some(src) = &p.password {
        match src.resolve() {
            Ok(pw) => opts = opts.password(pw.expose()),
            Err(m) => return ProbeOutcome::Fail(m),
        }
    }
    if let Some(mode) = p.sslmode {
        use sqlx::postgres::PgSslMode;
        opts = opts.ssl_mode(match mode {
            PgTls::Disable => PgSslMode::Disable,
            PgTls::Prefer => PgSslMode::Prefer,
            PgTls::Require => PgSslMode::Require,
            PgTls::VerifyCa => PgSslMode::VerifyCa,
            PgTls::VerifyFull => PgSslMode::VerifyFull,
        });
    }
    if let Some(ca) = &p.ssl_root_cert {
        opts = opts.ssl_root_cert(ca.as_str());
    }
    let mut conn = match sqlx::PgConnection::connect_with(&opts).await {
        Ok(c) => c,
        Err(e) => return ProbeOutcome::Fail(format!("cannot connect: {}", sqlx_kind(&e))),
    };
    let r = sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    match r {
        Ok(1) => ProbeOutcome::Ok("SELECT 1 answered".into()),
        Ok(_) => ProbeOutcome::Fail("SELECT 1 answered something else".into()),
        Err(e) => ProbeOutcome::Fail(format!("query failed: {}", sqlx_kind(&e))),
    }
}

pub(super) fn sqlx_kind(e: &sqlx::Error) -> String {
    match e {
        // rustls' verdicts reach sqlx as I/O errors of kind InvalidData.
        sqlx::Error::Io(io)
            if io.kind() == std::io::ErrorKind::InvalidData
                && io.to_string().contains("certificate") =>
        {
            "TLS failure: the server's certificate is not trusted".into()
        }
        sqlx::Error::Io(io) => io_kind(io),
        sqlx::Error::Tls(_) => "TLS failure".into(),
        sqlx::Error::Database(d) => match d.code() {
            Some(c) if c == "28P01" || c == "28000" => "authentication failed".into(),
            Some(c) => format!("database error {c}"),
            None => "database error".into(),
        },
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Configuration(_) => "bad configuration".into(),
        _ => "protocol error".into(),
    }
}
