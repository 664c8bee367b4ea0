//! Offline notification webhook: `POST` a small JSON [`Notice`] per
//! recipient that has no connection anywhere. Plain `http://` only (an
//! in-cluster notifier); HTTP/1.1 written by hand to avoid a client
//! dependency.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::offline::notice::Notice;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    host_port: String,
    path: String,
    /// Sent as the `Authorization` header as it is (`Bearer …`, `Basic …`).
    authorization: Option<String>,
}

/// Why a webhook address is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookUrlError {
    #[error("{0}: only http:// webhooks are supported")]
    NotHttp(String),
    #[error("{0}: no host")]
    NoHost(String),
    #[error("the authorization value holds a line break")]
    BadAuthorization,
}

/// Why a notice did not reach the webhook.
#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("status {0}")]
    Status(String),
    #[error("timed out")]
    TimedOut,
}

impl NotifyError {
    /// The HTTP status the notifier answered, if it answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            NotifyError::Status(s) => s.parse().ok(),
            _ => None,
        }
    }
}

impl Webhook {
    /// Accepts `http://host:port/path` (port and path optional).
    pub fn parse(url: &str) -> Result<Self, WebhookUrlError> {
        let rest = url.strip_prefix("http://").ok_or_else(|| WebhookUrlError::NotHttp(url.to_owned()))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if host.is_empty() {
            return Err(WebhookUrlError::NoHost(url.to_owned()));
        }
        let host_port = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
        Ok(Self { host_port, path: path.to_owned(), authorization: None })
    }

    /// The same webhook, sending `value` as the `Authorization` header.
    pub fn with_authorization(mut self, value: Option<String>) -> Result<Self, WebhookUrlError> {
        if value.as_deref().is_some_and(|v| v.contains(['\r', '\n'])) {
            return Err(WebhookUrlError::BadAuthorization);
        }
        self.authorization = value.filter(|v| !v.is_empty());
        Ok(self)
    }

    fn request(&self, notice: &Notice) -> String {
        let body = serde_json::to_string(notice).unwrap_or_default();
        let authorization = self.authorization.as_ref().map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Idempotency-Key: {}\r\n{authorization}Connection: close\r\n\r\n{body}",
            self.path,
            self.host_port,
            body.len(),
            notice.idempotency_key(),
        )
    }

    pub async fn notify(&self, notice: &Notice) -> Result<(), NotifyError> {
        let request = self.request(notice);
        let exchange = async {
            let mut stream = TcpStream::connect(&self.host_port).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await?;
            let status = String::from_utf8_lossy(&head[9..12]).into_owned();
            if status.starts_with('2') { Ok(()) } else { Err(NotifyError::Status(status)) }
        };
        tokio::time::timeout(TIMEOUT, exchange).await.map_err(|_| NotifyError::TimedOut)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let w = Webhook::parse("http://notify:8081/offline").unwrap();
        assert_eq!((w.host_port.as_str(), w.path.as_str()), ("notify:8081", "/offline"));
        assert_eq!(Webhook::parse("http://notify").unwrap().host_port, "notify:80");
        assert!(Webhook::parse("https://x").is_err());
        assert!(Webhook::parse("http:///x").is_err());
    }

    #[test]
    fn requests_carry_the_notice_its_key_and_the_credentials() {
        let notice =
            Notice { user: "bob".into(), conversation: "g:x".into(), seq: 3, msg_id: "m3".into(), from: "ann".into() };
        let plain = Webhook::parse("http://notify:8081/offline").unwrap();
        let req = plain.request(&notice);
        assert!(req.starts_with("POST /offline HTTP/1.1\r\nHost: notify:8081\r\n"), "{req}");
        assert!(req.contains("Idempotency-Key: m3:bob\r\n") && !req.contains("Authorization"), "{req}");
        let body = req.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(serde_json::from_str::<Notice>(body).unwrap(), notice);
        let authed = plain.clone().with_authorization(Some("Bearer s3cret".into())).unwrap();
        assert!(authed.request(&notice).contains("\r\nAuthorization: Bearer s3cret\r\n"));
        assert!(plain.clone().with_authorization(Some("x\r\nEvil: 1".into())).is_err(), "no header injection");
        assert_eq!(plain.clone().with_authorization(Some(String::new())).unwrap(), plain, "empty: none");
    }
}
