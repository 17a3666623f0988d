//! One raw `GET` to the Engine API, for the single field bollard's models lack: a service's
//! `PreviousSpec` (what Swarm's rollback returns to). Same address forms as
//! [`super::docker::DockerSwarm`] (`unix://` socket, `tcp://` or `http://` for a
//! docker-socket-proxy), same timeout, the API version already negotiated by bollard. The
//! body is read up to a fixed limit.

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::SwarmError;

/// More than any service object; a larger body is an error.
const MAX_BODY: usize = 8 << 20;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `GET {path}` (path and query, e.g. `/v1.41/services/web`): the status and the body.
pub(crate) async fn get(
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), SwarmError> {
    let fut = async {
        if let Some(socket) = host.strip_prefix("unix://") {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            request(TokioIo::new(stream), path).await
        } else {
            let authority = host
                .trim_start_matches("tcp://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let stream = tokio::net::TcpStream::connect(authority).await?;
            request(TokioIo::new(stream), path).await
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(SwarmError::Unreachable {
            detail: format!("{host}: GET {path}: {e}"),
        }),
        Err(_) => Err(SwarmError::Unreachable {
            detail: format!("{host}: GET {path}: no answer within {timeout:?}"),
        }),
    }
}

async fn request<T>(io: T, path: &str) -> Result<(u16, Bytes), BoxError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "docker")
        .body(Empty::<Bytes>::new())?;
    let result = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, BoxError>((status, body))
    }
    .await;
    drop(sender);
    conn.abort();
    result
}
