//! One client connection, from accept to forwarding: TLS termination (server certificate
//! chosen by SNI), the CONNECT read within a time and size limit, the route and node
//! choice, the connection to the node (PROXY v2 header, TLS), the CONNECT handed over,
//! then [`super::relay`]. Refusals are a CONNACK "server unavailable" in the client's
//! own protocol version.

use super::relay::{self, Side};
use super::routes::ConnFacts;
use super::table::{Route, RouteTable};
use super::Shared;
use crate::net::proxy_protocol;
use crate::net::tls::TlsLayer;
use broker_core::admission::{self, FirstPacket, Peek};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use mqtt_proto::ReasonCode;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// Whether a listener takes TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS when the client starts with a TLS handshake and certificates are configured,
    /// plain MQTT otherwise (a CONNECT starts with 0x10, a TLS record with 0x16).
    Auto,
    /// TLS only.
    Required,
}

/// Why a connection ended before forwarding.
#[derive(Debug)]
enum Early {
    Closed,
    NotConnect(&'static str),
    TooLarge(usize),
    Tls(String),
}

/// The client side while the CONNECT is read.
struct Client {
    stream: TcpStream,
    // Boxed, like every large piece here: this task lives as long as the connection, and
    // its future is as large as its largest state.
    tls: Option<Box<TlsLayer>>,
    sni: Option<String>,
}

/// Appends what the client sent next to `into`. Reads through the thread's buffer (a
/// burst of connects then leaves no read buffer per connection behind: they fragmented
/// the heap), and tries before waiting for readiness: the listener defers accepts until
/// the first bytes are in (TCP_DEFER_ACCEPT).
async fn read_more(stream: &mut TcpStream, into: &mut Vec<u8>) -> Result<(), Early> {
    loop {
        match relay::recv_into(stream.as_raw_fd(), into) {
            Ok(0) => return Err(Early::Closed),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return Err(Early::Closed),
        }
        stream.readable(false).await.map_err(|_| Early::Closed)?;
    }
}

async fn write_raw(stream: &mut TcpStream, data: Vec<u8>) -> Result<(), Early> {
    if data.is_empty() {
        return Ok(());
    }
    let (res, _) = stream.write_all(data).await;
    res.map(|_| ()).map_err(|_| Early::Closed)
}

/// Server-side TLS: the ClientHello picks the configuration, then the handshake.
async fn accept_tls(
    stream: &mut TcpStream,
    mut raw: Vec<u8>,
    table: &RouteTable,
) -> Result<(TlsLayer, Option<String>, Vec<u8>), Early> {
    let mut acceptor = rustls::server::Acceptor::default();
    let accepted = loop {
        let mut input = raw.as_slice();
        while !input.is_empty() {
            match acceptor.read_tls(&mut input) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(Early::Tls(e.to_string())),
            }
        }
        raw.clear();
        match acceptor.accept() {
            Ok(Some(a)) => break a,
            Ok(None) => read_more(stream, &mut raw).await?,
            Err((e, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write_all(&mut out);
                let _ = write_raw(stream, out).await;
                return Err(Early::Tls(e.to_string()));
            }
        }
    };
    let sni = accepted.client_hello().server_name().map(str::to_owned);
    let Some(cfg) = table.sni.lookup(sni.as_deref()) else {
        return Err(Early::Tls(format!(
            "no certificate for server name {sni:?}"
        )));
    };
    let conn = match accepted.into_connection(cfg) {
        Ok(c) => c,
        Err((e, mut alert)) => {
            let mut out = Vec::new();
            let _ = alert.write_all(&mut out);
            let _ = write_raw(stream, out).await;
            return Err(Early::Tls(e.to_string()));
        }
    };
    let mut layer = TlsLayer {
        conn: rustls::Connection::Server(conn),
    };
    let mut plain = Vec::new();
    loop {
        let mut out = Vec::new();
        layer
            .pending(&mut out)
            .map_err(|e| Early::Tls(e.to_string()))?;
        write_raw(stream, out).await?;
        if !layer.is_handshaking() {
            break;
        }
        let mut raw = Vec::new();
        read_more(stream, &mut raw).await?;
        if let Err(e) = layer.feed(&raw, &mut plain) {
            let mut alert = Vec::new();
            let _ = layer.pending(&mut alert);
            let _ = write_raw(stream, alert).await;
            return Err(Early::Tls(e.to_string()));
        }
    }
    Ok((layer, sni, plain))
}

/// TLS (if any), then the whole CONNECT packet in plaintext.
async fn read_connect(
    shared: &Shared,
    stream: TcpStream,
    mode: TlsMode,
    client: &mut Option<Client>,
) -> Result<Vec<u8>, Early> {
    let mut stream = stream;
    let mut raw = Vec::new();
    read_more(&mut stream, &mut raw).await?;
    let table = shared.table.load_full();
    let tls_start = raw.first() == Some(&0x16);
    let (tls, sni, mut plain) = if tls_start && !table.sni.is_empty() {
        let (l, sni, plain) = accept_tls(&mut stream, raw, &table).await?;
        (Some(Box::new(l)), sni, plain)
    } else if mode == TlsMode::Required || tls_start {
        return Err(Early::Tls(
            "TLS required / no certificate configured".into(),
        ));
    } else {
        (None, None, raw)
    };
    drop(table);
    *client = Some(Client { stream, tls, sni });
    let max = shared.limits.max_connect_size;
    loop {
        match admission::first_packet(&plain, max) {
            FirstPacket::Connect(_) => return Ok(plain),
            FirstPacket::Incomplete => {}
            FirstPacket::NotConnect => {
                return Err(Early::NotConnect("first packet is not CONNECT"))
            }
            FirstPacket::TooLarge(size) => return Err(Early::TooLarge(size)),
            FirstPacket::Malformed => return Err(Early::NotConnect("malformed fixed header")),
        }
        let Some(c) = client.as_mut() else {
            return Err(Early::Closed);
        };
        let mut more = Vec::new();
        read_more(&mut c.stream, &mut more).await?;
        match c.tls.as_mut() {
            Some(t) => t
                .feed(&more, &mut plain)
                .map_err(|e| Early::Tls(e.to_string()))?,
            None => plain.extend_from_slice(&more),
        }
    }
}

/// Sends a refusal and closes: SHUT_WR after the CONNACK, then a short drain so that
/// unread input does not turn the close into a reset that would discard the CONNACK.
async fn refuse(mut c: Client, bytes: Vec<u8>) {
    let mut out = Vec::new();
    match c.tls.as_mut() {
        Some(t) => {
            let _ = t.encrypt(std::iter::once(bytes.as_slice()), &mut out);
            t.conn.send_close_notify();
            let _ = t.pending(&mut out);
        }
        None => out = bytes,
    }
    if write_raw(&mut c.stream, out).await.is_err() {
        return;
    }
    let _ = c.stream.shutdown().await;
    let drain = async {
        let mut buf = Vec::with_capacity(1024);
        loop {
            let (res, b) = c.stream.read(buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                break;
            }
        }
    };
    let _ = monoio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Connects to the route's nodes in order until one accepts; marks refusing nodes down.
async fn connect_node(
    shared: &Shared,
    route: &Route,
    client_id: &str,
    peer: SocketAddr,
    local: SocketAddr,
) -> Option<(Side, Arc<str>)> {
    let up = &route.upstream;
    for i in up.candidates(client_id, peer.ip()) {
        let Some(node) = up.nodes.get(i) else {
            continue;
        };
        let Some(addr) = node.addr else { continue };
        let attempt = async {
            let mut s = TcpStream::connect_addr(addr).await?;
            let _ = s.set_nodelay(true);
            if up.proxy_protocol {
                let (res, _) = s.write_all(proxy_protocol::encode(peer, local)).await;
                res?;
            }
            let tls = match &up.tls {
                None => None,
                Some(cfg) => Some(Box::new(
                    connect_tls(&mut s, cfg.clone(), &node.host).await?,
                )),
            };
            Ok::<_, std::io::Error>(Side { stream: s, tls })
        };
        match monoio::time::timeout(up.connect_timeout, attempt).await {
            Ok(Ok(side)) => {
                node.health.mark_up();
                return Some((side, node.name.clone()));
            }
            Ok(Err(e)) if local_shortage(&e) => {
                tracing::warn!(
                    "cannot connect to node {}: {e} (node not marked down)",
                    node.name
                );
                // Without a descriptor no node can work; other shortages (local ports run
                // out per destination) may spare the next node.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    return None;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "node {} failed: {e}; marked down for {:?}",
                    node.name,
                    shared.limits.down_time
                );
                node.health.mark_down(shared.limits.down_time);
            }
            Err(_) => {
                tracing::warn!(
                    "node {} did not answer within {:?}; marked down",
                    node.name,
                    up.connect_timeout
                );
                node.health.mark_down(shared.limits.down_time);
            }
        }
    }
    None
}

/// An error that says this process or host is short of something (descriptors, memory,
/// local ports towards that node), not that the node is down.
fn local_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    )
}

/// Client-side TLS handshake with a node.
async fn connect_tls(
    s: &mut TcpStream,
    cfg: Arc<rustls::ClientConfig>,
    host: &str,
) -> std::io::Result<TlsLayer> {
    let err = |e: String| std::io::Error::other(format!("TLS with the node: {e}"));
    let mut layer = TlsLayer::client(cfg, host).map_err(|e| err(e.to_string()))?;
    let mut sink = Vec::new();
    loop {
        let mut out = Vec::new();
        layer.pending(&mut out)?;
        if !out.is_empty() {
            let (res, _) = s.write_all(out).await;
            res?;
        }
        if !layer.is_handshaking() {
            return Ok(layer);
        }
        let (res, buf) = s.read(Vec::with_capacity(4096)).await;
        let n = res?;
        if n == 0 {
            return Err(err("closed during the handshake".into()));
        }
        layer
            .feed(buf.get(..n).unwrap_or_default(), &mut sink)
            .map_err(|e| err(e.to_string()))?;
    }
}

/// Serves one accepted connection to its end.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    mode: TlsMode,
) {
    // Boxed: the steps up to forwarding are large and short-lived; this task's own future
    // is then little more than the forwarding loops an idle connection keeps.
    let sides = Box::pin(establish(&shared, stream, peer, local, mode)).await;
    let Some((client, upstream)) = sides else {
        return;
    };
    relay::run(
        client,
        upstream,
        shared.limits.idle_timeout,
        shared.limits.copy,
    )
    .await;
}

/// Reads the CONNECT, picks the node, connects and sends the CONNECT on: the two sides to
/// forward between, or None when the client was refused or gone.
async fn establish(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    mode: TlsMode,
) -> Option<(Side, Side)> {
    let mut client: Option<Client> = None;
    let res = monoio::time::timeout(
        shared.limits.connect_timeout,
        read_connect(shared, stream, mode, &mut client),
    )
    .await;
    let initial = match res {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            match e {
                Early::Tls(e) => tracing::info!("{peer}: TLS handshake failed: {e}"),
                Early::TooLarge(n) => tracing::info!("{peer}: CONNECT of {n} bytes is too large"),
                Early::NotConnect(why) => tracing::info!("{peer}: {why}"),
                e => tracing::debug!("{peer}: closed before CONNECT ({e:?})"),
            }
            return None;
        }
        Err(_) => {
            tracing::debug!(
                "{peer}: no CONNECT within {:?}",
                shared.limits.connect_timeout
            );
            return None;
        }
    };
    let mut client = client?;
    let max = shared.limits.max_connect_size;
    let (version, client_id) = match admission::peek_connect(&initial, max) {
        Peek::Connect { version, client_id } => (version, client_id.to_owned()),
        Peek::Refuse(version, code) => {
            tracing::info!("{peer}: refused: {code}");
            refuse(client, admission::refusal(version, code)).await;
            return None;
        }
        Peek::Malformed => {
            tracing::info!("{peer}: malformed CONNECT");
            return None;
        }
    };
    let table = shared.table.load_full();
    let facts = ConnFacts {
        version,
        sni: client.sni.as_deref(),
        local,
        remote: peer,
    };
    let refused = |why: &'static str| {
        tracing::info!("{peer} (client id {client_id:?}): refused: {why}");
        admission::refusal(version, ReasonCode::ServerUnavailable)
    };
    let Some(route) = table.select(&facts) else {
        let bytes = refused("no route matches");
        refuse(client, bytes).await;
        return None;
    };
    let Some((upstream, node)) = connect_node(shared, route, &client_id, peer, local).await else {
        let bytes = refused("no healthy node");
        refuse(client, bytes).await;
        return None;
    };
    tracing::debug!(
        "{peer} (client id {client_id:?}) -> {node} (route {})",
        route.id
    );
    drop(table);
    let mut upstream = upstream;
    // The CONNECT (and whatever followed it) goes first.
    let mut first = Vec::new();
    match upstream.tls.as_mut() {
        Some(t) => {
            if t.encrypt(std::iter::once(initial.as_slice()), &mut first)
                .is_err()
            {
                return None;
            }
        }
        None => first = initial,
    }
    if write_raw(&mut upstream.stream, first).await.is_err() {
        let bytes = admission::refusal(version, ReasonCode::ServerUnavailable);
        refuse(client, bytes).await;
        return None;
    }
    let client_side = Side {
        stream: client.stream,
        tls: client.tls.take(),
    };
    Some((client_side, upstream))
}
