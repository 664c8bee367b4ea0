//! The peer server of the cost comparison: Centrifugo (v6) with its memory
//! engine and no history, driven through its JSON client protocol over
//! WebSocket. Connect with `{"id":N,"connect":{"token":...}}`, subscribe
//! with `{"id":N,"subscribe":{"channel":...}}`, publish with
//! `{"id":N,"publish":{"channel":...,"data":{...}}}`; replies carry the
//! command's `id`, publications arrive as `{"push":{"channel":...,"pub":
//! {"data":...}}}`, an empty `{}` is the server's ping (answered with `{}`),
//! and one WebSocket frame may hold several of these, a line each.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::pin;
use super::wire::Event;
use crate::client::{self, Ws};
use crate::error::{BenchError, Result, io};

pub const SECRET: &str = "parley-bench-centrifugo-secret";
/// The namespace of the benchmark's channels: `bench:<group>`.
pub const NAMESPACE: &str = "bench";
const START_WAIT: Duration = Duration::from_secs(30);
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// The binary `scripts/env/centrifugo.sh build` makes.
pub fn default_binary() -> PathBuf {
    let cache = std::env::var_os("PARLEY_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/root/.cache"));
        home.join("parley")
    });
    cache.join("centrifugo/v6.9.1/bin/centrifugo")
}

/// The server's configuration: loopback, memory engine, HMAC tokens, and a
/// namespace whose subscribers may publish. No history: a publication is
/// only fanned out, never kept.
pub fn config(port: u16, secret: &str) -> Value {
    json!({
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "engine": {"type": "memory"},
        "usage_stats": {"disabled": true},
        "client": {"token": {"hmac_secret_key": secret}},
        "channel": {"namespaces": [{
            "name": NAMESPACE,
            "allow_subscribe_for_client": true,
            "allow_publish_for_subscriber": true,
        }]},
    })
}

pub fn channel(group: u32) -> String {
    format!("{NAMESPACE}:{group}")
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

/// A connection token: HS256, `sub` the user, valid for six hours.
pub fn token(secret: &str, user: &str) -> Result<String> {
    let exp = jsonwebtoken::get_current_timestamp() + 6 * 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: user, exp },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| BenchError::Token(e.to_string()))
}

/// `from`'s publication into `group`'s channel as command `id`: its send
/// time (ns after the run's origin) and sender travel in the data.
pub fn publish(id: u32, group: u32, from: u32, sent_ns: u64, pad: &str) -> String {
    json!({"id": id, "publish": {"channel": channel(group), "data": {"t": sent_ns, "f": from, "p": pad}}}).to_string()
}

/// What one WebSocket frame from the server says, a line at a time.
pub fn events(text: &str) -> Vec<Event> {
    text.lines().filter(|l| !l.trim().is_empty()).map(event).collect()
}

fn event(line: &str) -> Event {
    let Ok(v) = serde_json::from_str::<Value>(line) else { return Event::Other };
    if v.as_object().is_some_and(serde_json::Map::is_empty) {
        return Event::Ping;
    }
    if let Some(data) = v.pointer("/push/pub/data") {
        return match (data["t"].as_u64(), data["f"].as_u64()) {
            (Some(sent_ns), Some(from)) => Event::Delivery { from: from as u32, sent_ns },
            _ => Event::Other,
        };
    }
    let Some(id) = v["id"].as_u64() else { return Event::Other };
    match v.get("error") {
        Some(e) => Event::Refused { id: Some(id as u32), reason: e.to_string() },
        None => Event::Replied { id: id as u32 },
    }
}

/// A started Centrifugo: stopped (TERM, then KILL) and its config removed on drop.
pub struct Running {
    child: Child,
    config: PathBuf,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Its `version` line.
    pub version: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::target::terminate(&mut self.child);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Start `bin` on a free loopback port (on `cpu` alone when given) and
/// wait until it accepts connections.
pub fn start(bin: &Path, cpu: Option<usize>) -> Result<Running> {
    let version = Command::new(bin)
        .arg("version")
        .output()
        .map_err(io(format!("run {} version (scripts/env/centrifugo.sh build makes it)", bin.display())))?;
    let version = String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or("").trim().to_owned();
    let port = parley_testkit::process::free_port();
    let path = std::env::temp_dir().join(format!("parley-bench-centrifugo-{}-{port}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_string_pretty(&config(port, SECRET))?).map_err(io("write config"))?;
    let mut cmd = Command::new(bin);
    if let Some(cpu) = cpu {
        pin::on_exec(&mut cmd, cpu);
    }
    let child = cmd
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(io(format!("start {}", bin.display())))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut running = Running { pid: child.id(), child, config: path, addr, version };
    let deadline = Instant::now() + START_WAIT;
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = running.child.try_wait() {
            return Err(BenchError::Setup(format!("centrifugo exited at start: {status}")));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!("centrifugo not listening on {addr} within {START_WAIT:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(running)
}

/// Connect `user` from `src`, then subscribe it to `group`'s channel; the
/// connection is ready when both replies have come.
pub async fn connect(addr: SocketAddr, src: Ipv4Addr, user: &str, group: u32) -> Result<Ws> {
    let stream = client::tcp(addr, src).await?;
    let url = format!("ws://{addr}/connection/websocket");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(client::ws_config())).await?;
    let token = token(SECRET, user)?;
    command(&mut ws, 1, json!({"id": 1, "connect": {"token": token, "name": "parley-bench"}})).await?;
    command(&mut ws, 2, json!({"id": 2, "subscribe": {"channel": channel(group)}})).await?;
    Ok(ws)
}

/// Send a command and wait for its reply (answering pings meanwhile).
async fn command(ws: &mut Ws, id: u32, cmd: Value) -> Result<()> {
    ws.send(Message::text(cmd.to_string())).await?;
    let wait = async {
        while let Some(m) = ws.next().await {
            let Message::Text(text) = m? else { continue };
            for e in events(text.as_str()) {
                match e {
                    Event::Replied { id: got } if got == id => return Ok(()),
                    Event::Refused { id: Some(got), reason } if got == id => {
                        return Err(BenchError::Setup(format!("centrifugo refused {cmd}: {reason}")));
                    }
                    Event::Ping => ws.send(Message::text("{}")).await?,
                    _ => {}
                }
            }
        }
        Err(BenchError::Setup("centrifugo closed the connection during setup".into()))
    };
    tokio::time::timeout(REPLY_WAIT, wait)
        .await
        .map_err(|_| BenchError::Setup(format!("no reply to command {id} within {REPLY_WAIT:?}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_a_publishing_namespace_memory_engine_and_no_history() {
        let c = config(18000, "s3cret");
        assert_eq!(c["http_server"]["port"], 18000);
        assert_eq!(c["http_server"]["address"], "127.0.0.1");
        assert_eq!(c["engine"]["type"], "memory");
        assert_eq!(c["client"]["token"]["hmac_secret_key"], "s3cret");
        let ns = &c["channel"]["namespaces"][0];
        assert_eq!(ns["name"], NAMESPACE);
        assert_eq!(ns["allow_subscribe_for_client"], true);
        assert_eq!(ns["allow_publish_for_subscriber"], true);
        assert!(ns.get("history_size").is_none(), "history is off");
        assert_eq!(channel(7), "bench:7");
    }

    #[test]
    fn tokens_name_the_user_and_verify_with_the_secret_only() {
        let t = token("s3cret", "u42").unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims = ["exp", "sub"].into_iter().map(String::from).collect();
        #[derive(serde::Deserialize)]
        struct C {
            sub: String,
            exp: u64,
        }
        let ok = jsonwebtoken::decode::<C>(&t, &jsonwebtoken::DecodingKey::from_secret(b"s3cret"), &v).unwrap();
        assert_eq!(ok.claims.sub, "u42");
        assert!(ok.claims.exp > jsonwebtoken::get_current_timestamp() + 3600);
        assert!(jsonwebtoken::decode::<C>(&t, &jsonwebtoken::DecodingKey::from_secret(b"other"), &v).is_err());
    }

    #[test]
    fn pushes_replies_errors_and_pings_are_told_apart() {
        let frame = concat!(
            r#"{"push":{"channel":"bench:3","pub":{"data":{"t":123456,"f":17,"p":"xx"},"offset":4}}}"#,
            "\n",
            r#"{"id":9,"publish":{}}"#,
            "\n",
            r#"{"id":10,"error":{"code":103,"message":"permission denied"}}"#,
            "\n{}\n",
            r#"{"id":2,"subscribe":{}}"#,
        );
        let got = events(frame);
        assert_eq!(got[0], Event::Delivery { from: 17, sent_ns: 123_456 });
        assert_eq!(got[1], Event::Replied { id: 9 });
        assert!(matches!(&got[2], Event::Refused { id: Some(10), reason } if reason.contains("permission denied")));
        assert_eq!(got[3], Event::Ping);
        assert_eq!(got[4], Event::Replied { id: 2 });
        assert_eq!(events("not json"), vec![Event::Other]);
    }

    #[test]
    fn a_publication_carries_channel_sender_and_send_time() {
        let p: Value = serde_json::from_str(&publish(5, 3, 17, 99, "pad")).unwrap();
        assert_eq!(p, json!({"id": 5, "publish": {"channel": "bench:3", "data": {"t": 99, "f": 17, "p": "pad"}}}));
        // What the server pushes of it reads back as the same delivery.
        let push = json!({"push": {"channel": "bench:3", "pub": {"data": p["publish"]["data"]}}}).to_string();
        assert_eq!(events(&push), vec![Event::Delivery { from: 17, sent_ns: 99 }]);
    }
}
