//! A TCP front for a real dependency (the Docker engine's unix socket, OpenBao's port) that a
//! test can take down and bring back: while down it accepts and at once closes every
//! connection and cuts the open ones, so clients see exactly what an unreachable engine or a
//! crashed server gives them (connection reset / EOF), and the dependency itself is untouched.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::JoinHandle;

/// Where the proxy forwards to.
#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

struct Shared {
    down: AtomicBool,
    accepted: AtomicUsize,
    open: Mutex<Vec<JoinHandle<()>>>,
}

/// The switchable front; dropped, it stops listening.
pub struct SwitchProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl SwitchProxy {
    /// Listens on 127.0.0.1 (a free port), up.
    pub async fn start(upstream: Upstream) -> SwitchProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the outage proxy on 127.0.0.1");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            down: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                if s.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    let _ = forward(client, upstream).await;
                });
                let mut open = s.open.lock().unwrap();
                open.retain(|t| !t.is_finished());
                open.push(task);
            }
        });
        SwitchProxy {
            addr,
            shared,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `tcp://127.0.0.1:<port>` (the form `[docker] host` takes).
    pub fn tcp_url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Takes the dependency "down": new connections are closed at once, open ones are cut.
    pub fn down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        for t in self.shared.open.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Brings it back.
    pub fn up(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
    }

    /// Connections accepted so far (up or down): shows the client really tried.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.down();
    }
}

async fn forward(mut client: TcpStream, upstream: Upstream) -> std::io::Result<()> {
    match upstream {
        Upstream::Tcp(addr) => {
            let mut server = TcpStream::connect(addr).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        }
        Upstream::Unix(path) => {
            let mut server = UnixStream::connect(path).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
        }
    }
    Ok(())
}
