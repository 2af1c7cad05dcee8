//! The one HTTP port of the controller: `/metrics` for Prometheus, `/healthz`
//! and `/readyz` for the kubelet's probes.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Metrics;
use crate::health::Liveness;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const NOT_READY: &str = "not ready: waiting for the first complete node list";

#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    liveness: Arc<Liveness>,
}

/// Serves the endpoints on `listener` until `shutdown` turns true (or its
/// sender is dropped, since then nothing could ever stop the server).
///
/// `/readyz` answers 200 once `ready` is true; `/healthz` answers 500 while
/// `liveness` says the process should be restarted. Other paths get 404,
/// other methods on these paths 405.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    liveness: Arc<Liveness>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(Endpoint {
            metrics,
            ready,
            liveness,
        });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // An Err means the sender is gone, which is a stop as well.
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

async fn scrape(State(endpoint): State<Endpoint>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        endpoint.metrics.encode(),
    )
}

async fn healthz(State(endpoint): State<Endpoint>) -> (StatusCode, String) {
    match endpoint.liveness.check(std::time::Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

async fn readyz(State(endpoint): State<Endpoint>) -> (StatusCode, &'static str) {
    if *endpoint.ready.borrow() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, NOT_READY)
    }
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    use super::*;

    struct Running {
        addr: SocketAddr,
        ready: watch::Sender<bool>,
        shutdown: watch::Sender<bool>,
        task: JoinHandle<std::io::Result<()>>,
    }

    async fn start() -> Running {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let metrics = Arc::new(Metrics::new());
        metrics.router_up("edge-1", true);
        let (ready, ready_rx) = watch::channel(false);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let task = tokio::spawn(serve(
            listener,
            metrics,
            ready_rx,
            Arc::new(Liveness::default()),
            shutdown_rx,
        ));
        Running {
            addr,
            ready,
            shutdown,
            task,
        }
    }

    /// Sends one request and returns the status code and the whole response.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read response");
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {response:?}"));
        (status, response)
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let server = start().await;
        let (status, response) = request(server.addr, "GET", "/metrics").await;
        assert_eq!(status, 200, "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS}")),
            "{response}"
        );
        assert!(
            response.contains(r#"nativeroute_router_up{router="edge-1"} 1"#),
            "{response}"
        );
        assert!(response.ends_with("# EOF\n"), "{response}");
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let server = start().await;
        let (status, response) = request(server.addr, "GET", "/healthz").await;
        assert_eq!(status, 200, "{response}");
        assert!(response.ends_with("\r\n\r\nok"), "{response}");
    }

    #[tokio::test]
    async fn readyz_waits_for_the_first_node_list() {
        let server = start().await;
        let (status, response) = request(server.addr, "GET", "/readyz").await;
        assert_eq!(status, 503, "{response}");
        assert!(response.ends_with(NOT_READY), "{response}");

        server.ready.send_replace(true);
        let (status, response) = request(server.addr, "GET", "/readyz").await;
        assert_eq!(status, 200, "{response}");
        assert!(response.ends_with("\r\n\r\nready"), "{response}");
    }

    #[tokio::test]
    async fn unknown_path_is_not_found() {
        let server = start().await;
        let (status, response) = request(server.addr, "GET", "/nope").await;
        assert_eq!(status, 404, "{response}");
    }

    #[tokio::test]
    async fn only_get_is_allowed() {
        let server = start().await;
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (status, response) = request(server.addr, "POST", path).await;
            assert_eq!(status, 405, "POST {path}: {response}");
        }
    }

    #[tokio::test]
    async fn server_stops_when_shutdown_turns_true() {
        let server = start().await;
        let (status, _) = request(server.addr, "GET", "/healthz").await;
        assert_eq!(status, 200);

        server.shutdown.send_replace(true);
        let result = tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .expect("server did not stop within 5 s")
            .expect("server task panicked");
        assert!(result.is_ok(), "{result:?}");
        assert!(TcpStream::connect(server.addr).await.is_err());
    }
}
