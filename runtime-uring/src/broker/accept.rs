//! Accepting connections: PROXY protocol, TLS handshake, then the first packet is read to
//! find the client identifier, and the connection goes to the shard that owns it (the
//! socket and the bytes already read are handed over; the session never moves).

use super::shard::{Inbox, Phase, Shard};
use crate::net::listen::Acceptor;
use crate::net::proxy_protocol;
use crate::net::sock;
use crate::net::tls::{peer_identity, TlsLayer};
use crate::net::transport::Transport;
use crate::net::ws::{self, WsLayer};
use broker_core::admission::{self, FirstPacket};
use broker_core::PeerInfo;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;

/// A connection moving to its owner shard.
pub struct Handoff {
    pub fd: OwnedFd,
    pub peer: PeerInfo,
    pub transport: Transport,
    pub initial: Vec<u8>,
}

pub async fn accept_loop(shard: Rc<Shard>, mut listener: Acceptor, index: usize) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                if shard.phase.get() == Phase::Closing {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                monoio::spawn(admit(shard.clone(), stream, addr, index));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection was dropped before reaching the core.
#[derive(Debug)]
enum Early {
    Timeout,
    Closed,
    Proxy(proxy_protocol::Invalid),
    Tls(String),
}

/// Reads what arrived into `into`. Small reads: a connection's first bytes are a short
/// CONNECT (or a ClientHello) and, with thousands of connections arriving at once, large
/// short-lived buffers fragment the heap that their long-lived state then sits in.
async fn read_more(stream: &mut TcpStream, into: &mut Vec<u8>) -> Result<(), Early> {
    let buf = Vec::with_capacity(512);
    let (res, buf) = stream.read(buf).await;
    match res {
        Ok(0) | Err(_) => Err(Early::Closed),
        Ok(n) => {
            into.extend_from_slice(buf.get(..n).unwrap_or_default());
            Ok(())
        }
    }
}

/// Appends what the socket already has to `into`, without waiting.
fn read_now(stream: &TcpStream, into: &mut Vec<u8>) -> Result<(), Early> {
    let mut buf = [0u8; 512];
    match sock::recv(stream.as_raw_fd(), &mut buf) {
        Ok(0) => Err(Early::Closed),
        Ok(n) => {
            into.extend_from_slice(buf.get(..n).unwrap_or_default());
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(_) => Err(Early::Closed),
    }
}

/// PROXY header, TLS handshake and first packet, within the connect timeout. The optional
/// steps are boxed: a plain connection's task then carries none of their state.
async fn prelude(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    peer: &mut PeerInfo,
    index: usize,
) -> Result<(Transport, Vec<u8>), Early> {
    let Some(listener) = shard.listeners.get(index) else {
        return Err(Early::Closed);
    };
    // In a burst of connects the first bytes are often in by the time the connection is
    // accepted: take them at once, without a trip through the runtime.
    let mut raw = Vec::new();
    read_now(stream, &mut raw)?;
    if listener.proxy_protocol {
        Box::pin(proxy_header(stream, peer, &mut raw)).await?;
    }
    let tls_cfg = listener.tls.borrow().clone();
    let (mut transport, mut plain) = match tls_cfg {
        Some(cfg) => Box::pin(tls_handshake(stream, peer, cfg, raw)).await?,
        None => (Transport::default(), raw),
    };
    if listener.websockets {
        Box::pin(ws_upgrade(shard, stream, &mut transport, &mut plain)).await?;
    }
    // The first packet, bounded by the maximum packet size.
    loop {
        // Anything but an incomplete first packet goes to the core, which answers it.
        if admission::first_packet(&plain, shard.max_packet_size) != FirstPacket::Incomplete {
            break;
        }
        let mut raw = Vec::new();
        read_more(stream, &mut raw).await?;
        transport.decode(&raw, &mut plain).map_err(Early::Tls)?;
    }
    Ok((transport, plain))
}

/// A PROXY protocol v2 header: the client's address replaces the proxy's.
async fn proxy_header(
    stream: &mut TcpStream,
    peer: &mut PeerInfo,
    raw: &mut Vec<u8>,
) -> Result<(), Early> {
    loop {
        match proxy_protocol::parse(raw).map_err(Early::Proxy)? {
            proxy_protocol::Parsed::Incomplete => read_more(stream, raw).await?,
            proxy_protocol::Parsed::Header { len, source } => {
                if source.is_some() {
                    tracing::debug!("PROXY protocol: {:?} speaks for {source:?}", peer.addr);
                    peer.addr = source;
                }
                raw.drain(..len);
                return Ok(());
            }
        }
    }
}

/// The TLS handshake; returns the layer and the plaintext that came with it.
async fn tls_handshake(
    stream: &mut TcpStream,
    peer: &mut PeerInfo,
    cfg: Arc<rustls::ServerConfig>,
    mut raw: Vec<u8>,
) -> Result<(Transport, Vec<u8>), Early> {
    let mut plain = Vec::new();
    let mut layer = TlsLayer::server(cfg).map_err(|e| Early::Tls(e.to_string()))?;
    loop {
        if let Err(e) = layer.feed(&raw, &mut plain) {
            // Tell the client why (the TLS alert) before closing.
            let mut alert = Vec::new();
            let _ = layer.pending(&mut alert);
            if !alert.is_empty() {
                let _ = stream.write_all(alert).await;
            }
            return Err(Early::Tls(e.to_string()));
        }
        raw.clear();
        let mut out = Vec::new();
        layer
            .pending(&mut out)
            .map_err(|e| Early::Tls(e.to_string()))?;
        if !out.is_empty() {
            let (res, _) = stream.write_all(out).await;
            res.map_err(|_| Early::Closed)?;
        }
        if !layer.is_handshaking() {
            break;
        }
        read_more(stream, &mut raw).await?;
    }
    peer.cert_identity = peer_identity(&layer.conn).map(String::into_boxed_str);
    Ok((Transport::new(Some(layer), None), plain))
}

/// The WebSocket upgrade (the HTTP request arrives in `plain`); what follows it is
/// unframed into `plain`.
async fn ws_upgrade(
    shard: &Rc<Shard>,
    stream: &mut TcpStream,
    transport: &mut Transport,
    plain: &mut Vec<u8>,
) -> Result<(), Early> {
    loop {
        match ws::server_upgrade(plain) {
            ws::Upgrade::Incomplete => {
                let mut raw = Vec::new();
                read_more(stream, &mut raw).await?;
                transport.decode(&raw, plain).map_err(Early::Tls)?;
            }
            ws::Upgrade::Refuse(resp) => {
                let mut out = Vec::new();
                let _ = transport.encode(std::iter::once(resp.as_slice()), &mut out);
                let _ = stream.write_all(out).await;
                return Err(Early::Closed);
            }
            ws::Upgrade::Accept { len, response } => {
                let mut out = Vec::new();
                transport
                    .encode(std::iter::once(response.as_slice()), &mut out)
                    .map_err(|_| Early::Closed)?;
                let (res, _) = stream.write_all(out).await;
                res.map_err(|_| Early::Closed)?;
                let rest = plain.split_off(len);
                plain.clear();
                let mut layer = WsLayer::server(shard.max_packet_size + 16);
                layer.feed(&rest, plain).map_err(Early::Tls)?;
                transport.ws = Some(Box::new(layer));
                return Ok(());
            }
        }
    }
}

async fn admit(shard: Rc<Shard>, mut stream: TcpStream, addr: SocketAddr, index: usize) {
    let mut peer = PeerInfo {
        addr: Some(addr),
        cert_identity: None,
        listener: index as u16,
    };
    let timeout = shard.connect_timeout;
    let res = monoio::time::timeout(timeout, prelude(&shard, &mut stream, &mut peer, index)).await;
    let (transport, initial) = match res {
        Ok(Ok(x)) => x,
        Ok(Err(Early::Tls(e))) => {
            tracing::warn!("TLS handshake with {addr} failed: {e}");
            return;
        }
        Ok(Err(Early::Proxy(e))) => {
            tracing::warn!("{addr}: {e}");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!("{addr}: closed before CONNECT ({e:?})");
            return;
        }
        Err(_) => {
            tracing::debug!("{addr}: {:?} waiting for CONNECT", Early::Timeout);
            return;
        }
    };
    // A node of a cluster serves a client only once it owns its identifier cluster-wide
    // (a connection on another node is taken over first); otherwise the core refuses the
    // CONNECT (0x88 Server unavailable).
    let mut denied = None;
    if let Some(link) = &shard.cluster {
        let fenced = || {
            link.shared
                .fenced
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let unavailable = Some(broker_core::mqtt_proto::ReasonCode::ServerUnavailable);
        match admission::peek_connect(&initial, shard.max_packet_size) {
            admission::Peek::Connect { client_id, .. } if !client_id.is_empty() => {
                // Only a client that can connect takes its identifier over; the others
                // are refused with their own code.
                let authenticated = shard
                    .broker
                    .borrow_mut()
                    .connect_authenticates(&peer, &initial);
                denied = match authenticated {
                    Err(code) => Some(code),
                    Ok(()) => {
                        let id = client_id.to_owned();
                        (!link.claim(&id).await).then_some(unavailable).flatten()
                    }
                };
            }
            _ => {}
        }
        // Fenced meanwhile (a claim etcd granted late), or an assigned identifier, which
        // needs no claim: this node serves nobody while fenced.
        if fenced() {
            denied = denied.or(unavailable);
        }
    }
    let owner = admission::owner_shard(&initial, shard.max_packet_size, shard.id, shard.shards);
    if let Some(code) = denied {
        // Refused where it was accepted (no session is touched).
        super::conn::serve_denied(shard, stream, peer, transport, initial, code);
        return;
    }
    if owner == shard.id {
        // A task of its own: this one's frame (handshake state) is freed now, which
        // matters with thousands of idle connections.
        super::conn::serve(shard, stream, peer, transport, initial);
        return;
    }
    if shard.placement == super::Placement::Relay {
        super::relay::start(&shard, stream, peer, transport, initial, owner);
        return;
    }
    let fd = stream.into_raw_fd();
    // SAFETY: `into_raw_fd` gave up ownership of this descriptor; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let Some(tx) = shard.peers.get(usize::from(owner)) else {
        return;
    };
    let _ = tx
        .send(Inbox::Handoff(Box::new(Handoff {
            fd,
            peer,
            transport,
            initial,
        })))
        .await;
}

/// Serves a connection handed over by another shard.
pub fn adopt(shard: &Rc<Shard>, h: Handoff) {
    let std_stream = std::net::TcpStream::from(h.fd);
    match TcpStream::from_std(std_stream) {
        Ok(stream) => {
            super::conn::serve(shard.clone(), stream, h.peer, h.transport, h.initial);
        }
        Err(e) => tracing::warn!("cannot adopt a connection: {e}"),
    }
}
