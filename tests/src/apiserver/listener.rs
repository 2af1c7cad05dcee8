//! The accept loop. It is ours rather than `axum::serve` so that stopping
//! closes every open connection at once (a graceful shutdown would wait for
//! watches), and so the server can listen again on the same port.

use std::net::SocketAddr;
use std::sync::Mutex;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

pub(crate) struct Listener {
    addr: Mutex<SocketAddr>,
    router: Router,
    running: Mutex<Option<Running>>,
}

impl Listener {
    /// Binds `addr` (port 0 for one the OS picks) and starts serving.
    pub async fn bind(addr: SocketAddr, router: Router) -> anyhow::Result<Listener> {
        let listener = Listener {
            addr: Mutex::new(addr),
            router,
            running: Mutex::new(None),
        };
        listener.start().await?;
        Ok(listener)
    }

    pub fn addr(&self) -> SocketAddr {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_running(&self) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Listens again on the address of the first start; does nothing when
    /// already listening.
    pub async fn start(&self) -> anyhow::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let addr = self.addr();
        let socket = TcpSocket::new_v4().context("cannot create the API server's socket")?;
        // The port may still have connections in TIME_WAIT from before a stop.
        socket
            .set_reuseaddr(true)
            .context("cannot set SO_REUSEADDR")?;
        socket
            .bind(addr)
            .with_context(|| format!("cannot bind the test API server to {addr}"))?;
        let tcp = socket.listen(1024).context("cannot listen")?;
        let bound = tcp.local_addr().context("no local address")?;
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = bound;
        let (shutdown, stop) = oneshot::channel();
        let task = tokio::spawn(serve(tcp, self.router.clone(), stop));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running = Some(Running { shutdown, task });
        Ok(())
    }

    /// Stops listening and closes every connection; returns once they are
    /// all closed.
    pub async fn stop(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Running { shutdown, task }) = running {
            let _ = shutdown.send(());
            let _ = task.await;
        }
    }

    /// Stops without waiting (for Drop).
    pub fn abort(&self) {
        if let Some(running) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            running.task.abort();
        }
    }
}

async fn serve(tcp: TcpListener, router: Router, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = tcp.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "test API server: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(tcp);
    // Aborting a connection's task drops its socket: the peer sees the
    // connection close, and an open watch ends mid-stream.
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(router);
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = result {
        tracing::debug!(error = %err, "test API server: connection ended with an error");
    }
}
