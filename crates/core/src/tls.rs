//! TLS for every endpoint (rustls): server identity from PEM files, optional mutual TLS
//! between services, and the matching client configuration.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::ApiError;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub enabled: bool,
    /// This service's certificate chain and private key (PEM).
    pub cert_file: String,
    pub key_file: String,
    /// The CA that signed the peers' certificates: clients verify servers with it, and with
    /// `mutual` servers require client certificates signed by it.
    pub ca_file: String,
    pub mutual: bool,
}

fn read(field: &str, path: &str) -> Result<Vec<u8>, ApiError> {
    if path.is_empty() {
        return Err(ApiError::invalid_argument(format!(
            "tls.{field} is required when TLS is enabled"
        )));
    }
    std::fs::read(path).map_err(|e| {
        ApiError::invalid_argument(format!("tls.{field} {path:?} cannot be read: {e}"))
    })
}

impl TlsSettings {
    fn identity(&self) -> Result<Identity, ApiError> {
        Ok(Identity::from_pem(
            read("cert_file", &self.cert_file)?,
            read("key_file", &self.key_file)?,
        ))
    }

    /// For the gRPC server; `None` when TLS is off.
    pub fn server_config(&self) -> Result<Option<ServerTlsConfig>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let mut config = ServerTlsConfig::new().identity(self.identity()?);
        if self.mutual {
            config = config.client_ca_root(Certificate::from_pem(read("ca_file", &self.ca_file)?));
        }
        Ok(Some(config))
    }

    /// For calls to peers; `None` when TLS is off.
    pub fn client_config(&self) -> Result<Option<ClientTlsConfig>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("ca_file", &self.ca_file)?));
        if self.mutual {
            config = config.identity(self.identity()?);
        }
        Ok(Some(config))
    }

    /// For the plain-HTTP endpoints (inference REST); `None` when TLS is off.
    pub fn rustls_server_config(
        &self,
    ) -> Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>, ApiError> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        if !self.enabled {
            return Ok(None);
        }
        let invalid = |field: &str, e: &dyn std::fmt::Display| {
            ApiError::invalid_argument(format!("tls.{field}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(&read("cert_file", &self.cert_file)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("cert_file", &e))?;
        let key = PrivateKeyDer::from_pem_slice(&read("key_file", &self.key_file)?)
            .map_err(|e| invalid("key_file", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("enabled", &e))?;
        let builder = if self.mutual {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_slice_iter(&read("ca_file", &self.ca_file)?) {
                roots
                    .add(ca.map_err(|e| invalid("ca_file", &e))?)
                    .map_err(|e| invalid("ca_file", &e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| invalid("ca_file", &e))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid("cert_file", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// Makes ring the process-wide rustls provider, for clients that take the default (the S3 and
/// HTTP clients). Idempotent.
pub fn install_crypto_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
