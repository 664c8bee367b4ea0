//! WebSocket connections of the load tool: spread over loopback source
//! addresses (one address has ~28k ephemeral ports), authenticated with a
//! minted token, ready once the server's `hello` arrives.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use parley_core::protocol::ServerFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::error::{BenchError, Result, io};

pub type Ws = WebSocketStream<TcpStream>;

/// Connections per loopback source address: well under its 28,232
/// ephemeral ports, leaving room for a previous run's connections still in
/// TIME_WAIT (60 s) when runs follow each other.
const PER_SOURCE_IP: u32 = 10_000;
const HELLO_WAIT: Duration = Duration::from_secs(30);

/// The source address of connection `i`: 127.0.0.1, then 127.0.0.2, ...
pub fn source_ip(i: u32) -> Ipv4Addr {
    let n = i / PER_SOURCE_IP;
    Ipv4Addr::new(127, 0, (n / 250) as u8, (n % 250 + 1) as u8)
}

pub fn token(secret: &str, user: &str) -> Result<String> {
    parley_gateway::auth::Auth::new(secret)
        .mint(user, Duration::from_secs(6 * 3600))
        .map_err(|e| BenchError::Token(e.to_string()))
}

/// Let connect(2) pick the source port rather than bind(2): a port bound
/// first is kept from every other socket of the address, TIME_WAIT ones
/// included. Right after a 5,000-connection run, 15,000 connections took
/// 17.6 s to open and 19,000 failed with "Address already in use"; with
/// connect(2) picking, 3.3 and 2.8 s, all open.
fn bind_address_no_port(sock: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of_val(&on) as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Connect from `src` to `gateway` as `user` and wait for `hello`.
pub async fn connect(gateway: SocketAddr, src: Ipv4Addr, secret: &str, user: &str) -> Result<Ws> {
    let sock = TcpSocket::new_v4().map_err(io("socket"))?;
    bind_address_no_port(&sock).map_err(io("IP_BIND_ADDRESS_NO_PORT"))?;
    sock.bind(SocketAddr::from((src, 0))).map_err(io(format!("bind {src}")))?;
    let stream = sock.connect(gateway).await.map_err(io(format!("connect {gateway}")))?;
    stream.set_nodelay(true).map_err(io("nodelay"))?;
    let url = format!("ws://{gateway}/ws?token={}", token(secret, user)?);
    // Small buffers, as on the gateway: the tool holds up to 200,000 of them.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let (mut ws, _) = client_async_with_config(url, stream, Some(config)).await?;
    let hello = tokio::time::timeout(HELLO_WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return match ServerFrame::from_json(t.as_str())? {
                        ServerFrame::Hello { .. } => Ok(()),
                        other => Err(BenchError::Setup(format!("{user}: expected hello, got {other:?}"))),
                    };
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err(BenchError::Setup(format!("{user}: closed before hello"))),
            }
        }
    })
    .await;
    match hello {
        Ok(r) => r.map(|()| ws),
        Err(_) => Err(BenchError::Setup(format!("{user}: no hello within {HELLO_WAIT:?}"))),
    }
}

/// A minimal HTTP/1.1 request on loopback as `user`: (status, body).
pub async fn http(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    secret: &str,
    user: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, String)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        token(secret, user)?,
        body.len()
    );
    let exchange = async {
        let mut s = TcpStream::connect(gateway).await?;
        s.write_all(request.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| BenchError::Setup(format!("{method} {path}: no answer within 30 s")))?
        .map_err(io(format!("{method} {path}")))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| BenchError::Setup(format!("{method} {path}: no status line")))?;
    Ok((status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_rotate_every_block() {
        assert_eq!(source_ip(0), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(PER_SOURCE_IP - 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_ip(PER_SOURCE_IP), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_ip(PER_SOURCE_IP * 250), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(source_ip(99_999), Ipv4Addr::new(127, 0, 0, 10), "100,000 connections use ten addresses");
    }
}
