//! MQTT over WebSocket (MQTT 5.0 section 6): binary frames carry the MQTT byte stream.
//! tungstenite does the framing over an in-memory duplex, so WebSocket is one more byte
//! transform between the socket and the MQTT core, like TLS.

use bytes::Bytes;
use std::io::{self, Read, Write};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// The subprotocol MQTT clients ask for ([MQTT-6.0.0-3]).
pub const SUBPROTOCOL: &str = "mqtt";

#[derive(Debug, Default)]
struct MemIo {
    input: Vec<u8>,
    pos: usize,
    output: Vec<u8>,
}

impl Read for MemIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.input.get(self.pos..).unwrap_or_default();
        if avail.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.pos += n;
        if self.pos == self.input.len() {
            self.input.clear();
            self.pos = 0;
        }
        Ok(n)
    }
}

impl Write for MemIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A WebSocket connection (after the HTTP upgrade) as a byte transform.
pub struct WsLayer {
    ws: WebSocket<MemIo>,
    /// Bytes between the TLS and WebSocket layers when both are used (kept here, not in
    /// every connection's transport).
    pub scratch: Vec<u8>,
}

impl std::fmt::Debug for WsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WsLayer")
    }
}

impl WsLayer {
    fn new(role: Role, max_message: usize) -> Self {
        let cfg = WebSocketConfig::default()
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        Self {
            ws: WebSocket::from_raw_socket(MemIo::default(), role, Some(cfg)),
            scratch: Vec::new(),
        }
    }

    /// Server side of an upgraded connection.
    pub fn server(max_message: usize) -> Self {
        Self::new(Role::Server, max_message)
    }

    /// Client side of an upgraded connection.
    pub fn client(max_message: usize) -> Self {
        Self::new(Role::Client, max_message)
    }

    /// Frames from the wire; the MQTT bytes they carry are appended to `out`. Control
    /// frames are answered (see `pending`). Text frames are refused ([MQTT-6.0.0-1]).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.ws.get_mut().input.extend_from_slice(input);
        loop {
            match self.ws.read() {
                Ok(Message::Binary(b)) => out.extend_from_slice(&b),
                Ok(Message::Text(_)) => return Err("text frame: MQTT needs binary frames".into()),
                Ok(Message::Close(_)) => return Err("WebSocket closed by the peer".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(e) => return Err(format!("WebSocket: {e}")),
            }
        }
    }

    /// MQTT bytes to send, as one binary frame appended to `out`.
    pub fn encode<'a>(
        &mut self,
        chunks: impl Iterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut data = Vec::new();
        for c in chunks {
            data.extend_from_slice(c);
        }
        if !data.is_empty() {
            self.ws
                .send(Message::Binary(Bytes::from(data)))
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        self.pending(out);
        Ok(())
    }

    /// Frames waiting to be written (pong replies, close).
    pub fn pending(&mut self, out: &mut Vec<u8>) {
        let _ = self.ws.flush();
        out.append(&mut self.ws.get_mut().output);
    }

    /// True when frames are waiting.
    pub fn wants_write(&self) -> bool {
        !self.ws.get_ref().output.is_empty()
    }
}

/// What parsing an HTTP upgrade request gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// More bytes are needed.
    Incomplete,
    /// A valid request of `len` bytes: the 101 response to send.
    Accept { len: usize, response: Vec<u8> },
    /// Not a WebSocket upgrade: the error response to send before closing.
    Refuse(Vec<u8>),
}

/// Parses a WebSocket upgrade request and builds the answer.
pub fn server_upgrade(buf: &[u8]) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < 16 * 1024 => return Upgrade::Incomplete,
        _ => {
            return Upgrade::Refuse(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n".to_vec(),
            )
        }
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let is_upgrade = req.method == Some("GET")
        && header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = header("sec-websocket-key").filter(|_| is_upgrade) else {
        return Upgrade::Refuse(
            b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n"
                .to_vec(),
        );
    };
    let offers_mqtt = header("sec-websocket-protocol").is_some_and(|v| {
        v.split(',')
            .any(|p| p.trim().eq_ignore_ascii_case(SUBPROTOCOL))
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if offers_mqtt {
        response.push_str("Sec-WebSocket-Protocol: mqtt\r\n");
    }
    response.push_str("\r\n");
    Upgrade::Accept {
        len,
        response: response.into_bytes(),
    }
}

/// The client's upgrade request and the key to check the answer with.
pub fn client_request(host: &str, path: &str) -> (Vec<u8>, String) {
    let key = tungstenite::handshake::client::generate_key();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    (req.into_bytes(), key)
}

/// Checks the server's answer; `Ok(Some(len))` when complete and valid.
pub fn client_response(buf: &[u8], key: &str) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid WebSocket upgrade response: {e}")),
    };
    if resp.code != Some(101) {
        return Err(format!(
            "WebSocket upgrade refused: HTTP {}",
            resp.code.unwrap_or(0)
        ));
    }
    let want = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let ok = resp
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == want.as_bytes());
    if !ok {
        return Err("WebSocket upgrade: wrong Sec-WebSocket-Accept".into());
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_and_frames_round_trip() {
        let (req, key) = client_request("localhost", "/mqtt");
        let Upgrade::Accept { len, response } = server_upgrade(&req) else {
            panic!("refused")
        };
        assert_eq!(len, req.len());
        assert_eq!(client_response(&response, &key), Ok(Some(response.len())));
        let mut client = WsLayer::client(1 << 20);
        let mut server = WsLayer::server(1 << 20);
        let mut wire = Vec::new();
        client
            .encode([&b"two "[..], b"slices"].into_iter(), &mut wire)
            .unwrap();
        let mut got = Vec::new();
        for b in wire.chunks(3) {
            server.feed(b, &mut got).unwrap();
        }
        assert_eq!(got, b"two slices");
    }

    #[test]
    fn plain_http_is_refused() {
        assert!(matches!(
            server_upgrade(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Upgrade::Refuse(_)
        ));
        assert_eq!(server_upgrade(b"GET / HT"), Upgrade::Incomplete);
    }
}
