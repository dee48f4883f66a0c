//! `serve()`: what every service exposes beside its own API — grpc.health.v1, reflection,
//! Prometheus `/metrics` on the same port — and graceful shutdown.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::ApiError;

/// Binds a TCP listener, with an error naming the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot listen on {addr}: {e}")))
}

/// Serves `routes` plus health, reflection and `/metrics` until `shutdown` fires, then stops
/// accepting, reports NOT_SERVING and drains in-flight calls.
///
/// `services` are the fully-qualified gRPC service names whose health is reported.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    services: &[&str],
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    // Installed before the first request so no metric is recorded into the void.
    crate::telemetry::prometheus();
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in services {
        reporter
            .set_service_status(*service, ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mlops_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ApiError::internal(format!("reflection: {e}")))?;
    let metrics = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async { crate::telemetry::prometheus().render() }),
    );
    let routes = Routes::from(
        routes
            .add_service(health)
            .add_service(reflection)
            .into_axum_router()
            .merge(metrics),
    );

    let names: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    let drain = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            for name in &names {
                reporter
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        }
    };
    Server::builder()
        // HTTP/1.1 for `/metrics` scrapes; gRPC stays on HTTP/2.
        .accept_http1(true)
        .trace_fn(request_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), drain)
        .await
        .map_err(|e| ApiError::unavailable(format!("server failed: {e}")))
}

/// Serves a plain HTTP router (the inference REST API) with the same shutdown.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|e| ApiError::unavailable(format!("http server failed: {e}")))
}

/// One span per request carrying the caller's `x-request-id` (or a fresh one), and a request
/// counter per method.
fn request_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path().to_string();
    let request_id = request
        .headers()
        .get(crate::client::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(crate::ids::new_id);
    metrics::counter!("mlops_requests_total", "path" => path.clone()).increment(1);
    tracing::info_span!("request", %path, %request_id)
}

/// Cancels the returned token on SIGTERM or Ctrl-C.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutting down");
        trigger.cancel();
    });
    token
}
