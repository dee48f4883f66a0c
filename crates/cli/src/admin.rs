//! `mlops auth` (tokens, roles, audit) and `mlops dev` (certificates, keys).

use std::path::Path;

use anyhow::Context;
use mlops_core::auth::{Action, Role};
use mlops_proto::v1::auth_service_client::AuthServiceClient;
use mlops_proto::v1::*;

use crate::args::{AuthCommand, DevCommand, TokenCommand};
use crate::commands::{Ctx, rpc};

pub async fn auth(e: &Ctx, command: AuthCommand) -> anyhow::Result<()> {
    let url = e.orchestrator.clone();
    let mut client = AuthServiceClient::new(e.connect("orchestrator", &url)?);
    let failed = rpc("orchestrator", &url);
    match command {
        AuthCommand::Whoami => {
            let me = client
                .who_am_i(WhoAmIRequest {})
                .await
                .map_err(&failed)?
                .into_inner();
            println!("{} ({})", me.subject, me.role);
            println!("may: {}", me.actions.join(", "));
            if !me.resources.is_empty() {
                println!("limited to: {}", me.resources.join(", "));
            }
        }
        AuthCommand::Roles => {
            for role in Role::ASSIGNABLE {
                let actions: Vec<&str> = Action::ALL
                    .iter()
                    .filter(|a| role.allows(**a))
                    .map(|a| a.name())
                    .collect();
                println!("{:<15} {}", role.name(), actions.join(", "));
            }
        }
        AuthCommand::Token(TokenCommand::Create {
            name,
            role,
            resources,
            ttl_seconds,
        }) => {
            let created = client
                .create_token(CreateTokenRequest {
                    name,
                    role,
                    resources,
                    ttl_seconds,
                })
                .await
                .map_err(&failed)?
                .into_inner();
            let info = created.info.unwrap_or_default();
            eprintln!(
                "created token {} ({}, role {}); it is shown only now:",
                info.id, info.name, info.role
            );
            println!("{}", created.token);
        }
        AuthCommand::Token(TokenCommand::List) => {
            let tokens = client
                .list_tokens(ListTokensRequest {})
                .await
                .map_err(&failed)?
                .into_inner()
                .tokens;
            println!(
                "{:<32}  {:<20} {:<15} {:<8} RESOURCES",
                "ID", "NAME", "ROLE", "STATE"
            );
            let now = mlops_core::now_ms();
            for t in tokens {
                let state = if t.revoked_at_ms != 0 {
                    "revoked"
                } else if t.expires_at_ms != 0 && t.expires_at_ms <= now {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{:<32}  {:<20} {:<15} {:<8} {}",
                    t.id,
                    t.name,
                    t.role,
                    state,
                    t.resources.join(",")
                );
            }
        }
        AuthCommand::Token(TokenCommand::Revoke { id }) => {
            client
                .revoke_token(RevokeTokenRequest { id: id.clone() })
                .await
                .map_err(&failed)?;
            println!("revoked {id}");
        }
        AuthCommand::Audit { limit, principal } => {
            let events = client
                .list_audit_events(ListAuditEventsRequest {
                    limit,
                    principal: principal.unwrap_or_default(),
                })
                .await
                .map_err(&failed)?
                .into_inner()
                .events;
            println!(
                "{:<14} {:<13} {:<20} {:<18} {:<56} RESOURCE",
                "TIME_MS", "SERVICE", "PRINCIPAL", "RESULT", "ACTION"
            );
            for ev in events {
                println!(
                    "{:<14} {:<13} {:<20} {:<18} {:<56} {}",
                    ev.time_ms, ev.service, ev.principal, ev.result, ev.action, ev.resource
                );
            }
        }
    }
    Ok(())
}

pub fn dev(command: DevCommand) -> anyhow::Result<()> {
    match command {
        DevCommand::Key => println!("{}", mlops_core::storage::cipher::generate_key()),
        DevCommand::Certs { out, hosts } => {
            write_certs(&out, &hosts)?;
            println!(
                "wrote {0}/ca.pem, {0}/server.pem, {0}/server.key, {0}/client.pem, {0}/client.key",
                out.display()
            );
        }
    }
    Ok(())
}

/// A local CA, a server certificate for `hosts` and a client certificate, all signed by it.
pub fn write_certs(out: &Path, hosts: &[String]) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "mlops local CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>,
                usages: Vec<ExtendedKeyUsagePurpose>,
                cn: &str|
     -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_pem, server_key) = leaf(
        hosts.to_vec(),
        // Services present the same certificate to each other under mutual TLS.
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        "mlops service",
    )?;
    let (client_pem, client_key) = leaf(
        vec!["mlops-client".into()],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        "mlops client",
    )?;
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).with_context(|| format!("writing {name}"))
    };
    write("ca.pem", &ca_cert.pem())?;
    write("server.pem", &server_pem)?;
    write("server.key", &server_key)?;
    write("client.pem", &client_pem)?;
    write("client.key", &client_key)?;
    Ok(())
}
