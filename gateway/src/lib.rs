//! The Parley WebSocket gateway: axum app (WebSocket endpoint, group API,
//! browser page, metrics), JWT auth, per-connection limits, the connection
//! registry, and the clustered `serve` wiring (Kafka, PostgreSQL, internal
//! delivery stream). The one-process chat wires the same app with the
//! in-process workers: crate `parley-standalone`.

pub mod api;
pub mod api_error;
pub mod auth;
pub mod config;
pub mod error;
pub mod internal;
pub mod limits;
pub mod listener;
pub mod membership;
pub mod metrics;
pub mod page;
pub mod presence;
pub mod registry;
pub mod remote;
pub mod routes;
pub mod serve;
pub mod session;
pub mod state;
pub mod user_events;

pub use error::{Error, Result};

use config::{Command, DEV_JWT_SECRET, TokenArgs};

/// Run one subcommand to completion.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Standalone { .. } => Err(Error::Config(
            "the one-process chat is its own binary: parley-standalone (scripts/chat.sh runs it)".into(),
        )),
        Command::Serve(args) => {
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(serve::run(*args))
        }
        Command::Token(args) => {
            println!("{}", mint_token(&args)?);
            Ok(())
        }
    }
}

fn mint_token(args: &TokenArgs) -> Result<String> {
    let secret = match (&args.jwt_secret, args.dev_secret) {
        (Some(s), _) if !s.is_empty() => s.clone(),
        (_, true) => {
            tracing::warn!("signing with the well-known standalone dev secret");
            DEV_JWT_SECRET.to_owned()
        }
        _ => {
            return Err(Error::Config(
                "a secret is required: --jwt-secret / PARLEY_JWT_SECRET, \
                 or --dev-secret for a standalone server running without one"
                    .into(),
            ));
        }
    };
    auth::Auth::new(&secret).mint(&args.user, args.ttl)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn args(secret: Option<&str>, dev: bool) -> TokenArgs {
        TokenArgs {
            user: "alice".into(),
            ttl: Duration::from_secs(60),
            jwt_secret: secret.map(str::to_owned),
            dev_secret: dev,
        }
    }

    #[test]
    fn token_needs_a_secret() {
        assert!(matches!(mint_token(&args(None, false)), Err(Error::Config(_))));
        assert!(matches!(mint_token(&args(Some(""), false)), Err(Error::Config(_))));
        let t = mint_token(&args(Some("s"), false)).unwrap();
        assert_eq!(auth::Auth::new("s").verify(&t).unwrap(), "alice");
        let t = mint_token(&args(None, true)).unwrap();
        assert_eq!(auth::Auth::new(DEV_JWT_SECRET).verify(&t).unwrap(), "alice");
    }
}
