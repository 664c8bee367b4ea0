//! Minimal HTTP on loopback, enough for tests and the load tool: a GET of a
//! process's `/metrics` or probe path, and a request to the chat's API with
//! a bearer token.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long [`request`] waits for the whole answer.
pub const WAIT: Duration = Duration::from_secs(10);

/// A request of [`try_request`] that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{request}: {source}")]
    Io { request: String, source: std::io::Error },
    #[error("{request}: no answer within {} s", wait.as_secs())]
    Timeout { request: String, wait: Duration },
    #[error("{request}: no status line")]
    NoStatus { request: String },
}

/// [`http_get`] that reports a refused connection (a process still
/// starting) instead of panicking.
pub fn try_http_get(port: u16, path: &str) -> Result<String, String> {
    std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    Ok(http_get(port, path))
}

/// Minimal HTTP/1.0 GET on loopback, returning the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
}

/// [`try_request`] within [`WAIT`], panicking when it gets no answer.
pub async fn request(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> (u16, String) {
    try_request(addr, method, path, token, body, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

/// A minimal HTTP/1.1 request to `addr` (the bearer `token` and a JSON
/// `body` if given), answered within `wait`: (status, body).
pub async fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
    wait: Duration,
) -> Result<(u16, String), HttpError> {
    let request = || format!("{method} {path}");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let response = tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| HttpError::Timeout { request: request(), wait })?
        .map_err(|source| HttpError::Io { request: request(), source })?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::NoStatus { request: request() })?;
    Ok((status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}
