//! `serve()`: what every service exposes beside its own API — grpc.health.v1, reflection,
//! Prometheus `/metrics` on the same port — and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::service::Routes;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::ApiError;
use crate::auth::AuthSettings;
use crate::auth::gate::{Authenticator, Gate};
use crate::client::ClientOptions;
use crate::config::{LimitSettings, StorageSettings};
use crate::tls::TlsSettings;

/// Binds a TCP listener, with an error naming the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ApiError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot listen on {addr}: {e}")))
}

/// What every server gets besides its own routes.
#[derive(Clone)]
pub struct ServeOptions {
    pub gate: Gate,
    pub limits: LimitSettings,
    pub tls: Option<ServerTlsConfig>,
    /// When set, calls beyond this many in flight are refused at once (RESOURCE_EXHAUSTED, or
    /// 503 over HTTP) before their body is read; health probes and /metrics are exempt. Shared
    /// by every listener given the same options.
    pub in_flight: Option<InFlight>,
}

/// A cap on calls in flight across a service's listeners.
#[derive(Clone)]
pub struct InFlight(Arc<tokio::sync::Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(max.max(1))))
    }

    fn wrap(self, router: axum::Router) -> axum::Router {
        router.layer(axum::middleware::from_fn_with_state(self, admit))
    }
}

async fn admit(
    axum::extract::State(limit): axum::extract::State<InFlight>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/v2/health/")
        || path == "/metrics"
    {
        return next.run(request).await;
    }
    let Ok(_permit) = limit.0.clone().try_acquire_owned() else {
        metrics::counter!("mlops_requests_shed_total").increment(1);
        let message = "the server is at its limit of requests in flight; retry with backoff";
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        return if grpc {
            tonic::Status::resource_exhausted(message).into_http::<axum::body::Body>()
        } else {
            use axum::response::IntoResponse;
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "error": message })),
            )
                .into_response()
        };
    };
    next.run(request).await
}

impl ServeOptions {
    /// The options a service's settings describe: opens the shared auth store.
    pub async fn from_settings(
        service: &'static str,
        auth: &AuthSettings,
        storage: &StorageSettings,
        limits: &LimitSettings,
        tls: &TlsSettings,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            gate: Gate {
                auth: Authenticator::open(auth, storage).await?,
                service,
            },
            limits: limits.clone(),
            tls: tls.server_config()?,
            in_flight: None,
        })
    }

    /// How this service calls its peers: with the service token, over TLS when configured.
    pub fn client_options(&self, tls: &TlsSettings) -> Result<ClientOptions, ApiError> {
        Ok(ClientOptions {
            token: self.gate.auth.service_token().map(str::to_string),
            tls: tls.client_config()?,
        })
    }
}

/// Serves `routes` plus health, reflection and `/metrics` behind the authentication gate until
/// `shutdown` fires, then stops accepting, reports NOT_SERVING and drains in-flight calls.
///
/// `services` are the fully-qualified gRPC service names whose health is reported.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    services: &[&str],
    options: ServeOptions,
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
    let router = routes
        .add_service(health)
        .add_service(reflection)
        .into_axum_router()
        .merge(metrics);
    let mut router = options
        .gate
        .clone()
        .wrap(router)
        .layer(axum::middleware::from_fn(oversized_is_resource_exhausted));
    if let Some(limit) = options.in_flight.clone() {
        router = limit.wrap(router);
    }
    let routes = Routes::from(router);

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
    let mut server = Server::builder();
    if let Some(tls) = options.tls {
        server = server
            .tls_config(tls)
            .map_err(|e| ApiError::invalid_argument(format!("TLS: {e}")))?;
    }
    server
        // HTTP/1.1 for `/metrics` scrapes; gRPC stays on HTTP/2.
        .accept_http1(true)
        .max_concurrent_streams(options.limits.max_concurrent_streams)
        .timeout(Duration::from_secs(options.limits.request_timeout_seconds))
        .trace_fn(request_span)
        .add_routes(routes)
        .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(listener)), drain)
        .await
        .map_err(|e| ApiError::unavailable(format!("server failed: {e}")))
}

/// Serves a plain HTTP router (the inference REST API) behind the gate, over TLS when
/// configured, with the same shutdown.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    options: ServeOptions,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let mut router = options.gate.wrap(router);
    if let Some(limit) = options.in_flight {
        router = limit.wrap(router);
    }
    let Some(tls) = tls else {
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        return axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|e| ApiError::unavailable(format!("http server failed: {e}")));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        connections.spawn(async move {
            // A failed handshake (plaintext, unknown client certificate) just closes it.
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let connection =
                builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// tonic answers a message over the decoding limit with OUT_OF_RANGE; the protocol (and what
/// Triton clients expect) is RESOURCE_EXHAUSTED, so the status is rewritten on the way out.
async fn oversized_is_resource_exhausted(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let oversized = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            // Percent-encoded on the wire.
            .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if oversized {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
    response
}

/// Accepted connections with Nagle's algorithm off. Without it a response that does not fill a
/// segment waits for the client's delayed ACK: about 40 ms added to every larger reply.
fn nodelay(
    incoming: TcpListenerStream,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    incoming.map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
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
