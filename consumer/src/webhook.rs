//! Offline notification webhook: `POST` a small JSON notice per recipient
//! that has no connection anywhere. Plain `http://` only (an in-cluster
//! notifier); HTTP/1.1 written by hand to avoid a client dependency.

use std::time::Duration;

use parley_adapters::store::StoredMessage;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    host_port: String,
    path: String,
}

/// Why a webhook address is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WebhookUrlError {
    #[error("{0}: only http:// webhooks are supported")]
    NotHttp(String),
    #[error("{0}: no host")]
    NoHost(String),
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
        Ok(Self { host_port, path: path.to_owned() })
    }

    pub async fn notify(&self, user: &str, message: &StoredMessage) -> Result<(), NotifyError> {
        let body = serde_json::json!({
            "user": user,
            "conversation": message.conversation.to_string(),
            "seq": message.seq,
            "msg_id": message.msg_id,
            "from": message.from,
        })
        .to_string();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            self.path,
            self.host_port,
            body.len()
        );
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
}
