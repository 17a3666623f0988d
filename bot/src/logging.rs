//! The bot's own log: every record, at every level, is formatted and then passed through the
//! process-wide redactor ([`ops_core::redact::global`]) before a byte reaches stderr, so fields
//! and messages alike are redacted (including those of serenity, poise, hyper and the `log`
//! records of tungstenite). The gateway's payload logging stays off whatever `RUST_LOG` says:
//! serenity logs a payload it cannot parse at WARN, whole (`serenity::gateway::ws`), and
//! tungstenite logs every frame at TRACE (as hex, which no pattern would recognise). Libraries
//! that log whole request or response bodies below INFO are capped at INFO too: bollard (Docker
//! answers: service specs with their env), rustify and vaultrs (Vault requests, unseal keys).

use std::io::Write;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;

/// Targets capped whatever the configured filter says (see the module documentation).
pub fn payload_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("serenity::gateway::ws", LevelFilter::OFF)
        .with_target("tungstenite", LevelFilter::DEBUG)
        .with_target("tokio_tungstenite", LevelFilter::DEBUG)
        .with_target("bollard", LevelFilter::INFO)
        .with_target("rustify", LevelFilter::INFO)
        .with_target("vaultrs", LevelFilter::INFO)
}

/// A [`MakeWriter`] whose writers collect one formatted record and write it redacted to the
/// inner writer when dropped (the fmt layer makes one writer per record).
#[derive(Clone)]
pub struct Redacting<W> {
    inner: W,
}

impl<W> Redacting<W> {
    pub fn new(inner: W) -> Redacting<W> {
        Redacting { inner }
    }
}

/// One record on its way out.
pub struct RecordWriter<W: Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Write for RecordWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RecordWriter<W> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf);
        let red = ops_core::redact::global().redact(&text);
        let _ = self.out.write_all(red.as_bytes());
        let _ = self.out.flush();
    }
}

impl<'a, W> MakeWriter<'a> for Redacting<W>
where
    W: MakeWriter<'a>,
{
    type Writer = RecordWriter<W::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        RecordWriter {
            buf: Vec::with_capacity(256),
            out: self.inner.make_writer(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[test]
    fn fields_and_messages_are_redacted_and_the_payload_targets_are_off() {
        ops_core::redact::global().learn(["log-layer-known-secret"]);
        let buf = Buf::default();
        for json in [false, true] {
            let fmt = tracing_subscriber::fmt::layer()
                .with_writer(Redacting::new(buf.clone()))
                .with_ansi(false);
            let fmt = if json {
                fmt.json().boxed()
            } else {
                fmt.boxed()
            };
            let sub = tracing_subscriber::registry().with(
                fmt.with_filter(LevelFilter::TRACE)
                    .with_filter(payload_filter()),
            );
            tracing::subscriber::with_default(sub, || {
                let span = tracing::info_span!("op", dsn = "postgres://u:span-field-pw@db/x");
                let _g = span.enter();
                tracing::trace!(
                    detail = "password=field-secret-1",
                    "trace {}",
                    "log-layer-known-secret"
                );
                tracing::error!("message token: msg-secret-22");
                tracing::warn!(target: "serenity::gateway::ws", "Err deserializing text: gateway-payload-xyz");
                tracing::trace!(target: "tungstenite::protocol", "received frame 0x7368617265");
                tracing::debug!(target: "tungstenite::protocol", "Received close frame");
                tracing::debug!(target: "bollard::docker", "Decoded into string: bollard-body-xyz");
            });
        }
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        for leak in [
            "log-layer-known-secret",
            "field-secret-1",
            "msg-secret-22",
            "span-field-pw",
            "gateway-payload-xyz",
            "7368617265",
            "bollard-body-xyz",
        ] {
            assert!(!out.contains(leak), "{leak} in {out}");
        }
        assert!(out.contains("Received close frame"), "{out}");
        assert!(out.matches("[REDACTED]").count() >= 8, "{out}");
    }
}
