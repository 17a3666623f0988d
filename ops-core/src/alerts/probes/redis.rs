//! The `redis` probe: RESP `AUTH` + `PING` -> `+PONG`.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::*;

pub(super) async fn redis(p: &ProbeConfig, target: &str) -> ProbeOutcome {
    let stream = match TcpStream::connect(target).await {
        Ok(s) => s,
        Err(e) => return ProbeOutcome::Fail(format!("cannot connect: {}", io_kind(&e))),
    };
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if let Some(src) = &p.password {
        let pw = match src.resolve() {
            Ok(pw) => pw,
            Err(m) => return ProbeOutcome::Fail(m),
        };
        let mut parts = vec!["AUTH".to_string()];
        if let Some(u) = &p.username {
            parts.push(u.clone());
        }
        parts.push(pw.expose().to_string());
        if let Err(e) = stream.get_mut().write_all(&resp_command(&parts)).await {
            return ProbeOutcome::Fail(format!("write failed: {}", io_kind(&e)));
        }
        match read_line(&mut stream, &mut line).await {
            Ok(()) if line == "+OK" => {}
            Ok(()) => return ProbeOutcome::Fail(format!("AUTH refused: {}", resp_error(&line))),
            Err(m) => return ProbeOutcome::Fail(m),
        }
    }
    if let Err(e) = stream
        .get_mut()
        .write_all(&resp_command(&["PING".to_string()]))
        .await
    {
        return ProbeOutcome::Fail(format!("write failed: {}", io_kind(&e)));
    }
    match read_line(&mut stream, &mut line).await {
        Ok(()) if line == "+PONG" => ProbeOutcome::Ok("PONG".into()),
        Ok(()) => ProbeOutcome::Fail(format!("PING answered {}", resp_error(&line))),
        Err(m) => ProbeOutcome::Fail(m),
    }
}

/// A RESP array of bulk strings.
pub fn resp_command(parts: &[String]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The error word of a RESP error line (`-WRONGPASS ...` -> `WRONGPASS`), never more.
pub(super) fn resp_error(line: &str) -> String {
    match line.strip_prefix('-') {
        Some(e) => e.split_whitespace().next().unwrap_or("error").to_string(),
        None => "an unexpected reply".into(),
    }
}

pub(super) async fn read_line(
    r: &mut BufReader<TcpStream>,
    line: &mut String,
) -> Result<(), String> {
    line.clear();
    match r.read_line(line).await {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => {
            let t = line.trim_end().to_string();
            *line = t;
            Ok(())
        }
        Err(e) => Err(format!("read failed: {}", io_kind(&e))),
    }
}
