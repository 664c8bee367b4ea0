//! WebSocket connections of the load tool: spread over loopback source
//! addresses (one address has ~28k ephemeral ports), authenticated with a
//! minted token, ready once the server's `hello` arrives. The tool keeps
//! the raw connection (its own send and read loops); the token, handshake
//! and `hello` are the test kit's, as in every test's client.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use parley_testkit::client::{self, HelloError};
use parley_testkit::http::{self, HttpError};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::error::{BenchError, Result, io};

pub use parley_testkit::client::Ws;

/// The writing half of a load connection (its reader runs apart).
pub type Sink = futures::stream::SplitSink<Ws, tokio_tungstenite::tungstenite::Message>;

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
    client::mint(secret, user, Duration::from_secs(6 * 3600)).map_err(|e| BenchError::Token(e.to_string()))
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

/// Connect from `src` to `gateway` as `user` and wait for `hello`: the
/// socket set up here for 100,000s of connections, the handshake and the
/// `hello` the test kit's.
pub async fn connect(gateway: SocketAddr, src: Ipv4Addr, secret: &str, user: &str) -> Result<Ws> {
    let stream = tcp(gateway, src).await?;
    let mut ws = client::handshake(stream, &gateway.to_string(), &token(secret, user)?, Some(ws_config())).await?;
    client::hello(&mut ws, user, HELLO_WAIT).await.map_err(|e| match e {
        HelloError::WebSocket { source, .. } => BenchError::WebSocket(*source),
        HelloError::Malformed { source, .. } => BenchError::Json(source),
        other => BenchError::Setup(other.to_string()),
    })?;
    Ok(ws)
}

/// A TCP connection from `src` to `server`, set up for 100,000s of them.
pub async fn tcp(server: SocketAddr, src: Ipv4Addr) -> Result<tokio::net::TcpStream> {
    let sock = TcpSocket::new_v4().map_err(io("socket"))?;
    bind_address_no_port(&sock).map_err(io("IP_BIND_ADDRESS_NO_PORT"))?;
    sock.bind(SocketAddr::from((src, 0))).map_err(io(format!("bind {src}")))?;
    let stream = sock.connect(server).await.map_err(io(format!("connect {server}")))?;
    stream.set_nodelay(true).map_err(io("nodelay"))?;
    Ok(stream)
}

/// Small buffers, as on the gateway: the tool holds up to 200,000 of them.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
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
    let token = token(secret, user)?;
    let addr = gateway.to_string();
    http::try_request(&addr, method, path, Some(&token), body, Duration::from_secs(30)).await.map_err(|e| match e {
        HttpError::Io { request, source } => BenchError::Io { context: request, source },
        other => BenchError::Setup(other.to_string()),
    })
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
