//! The byte transforms between a socket and MQTT: TLS, then WebSocket framing.

use super::tls::TlsLayer;
use super::ws::WsLayer;

/// Optional TLS and WebSocket layers of one connection.
#[derive(Debug, Default)]
pub struct Transport {
    // Boxed: most connections have neither, and an idle connection should cost little.
    pub tls: Option<Box<TlsLayer>>,
    pub ws: Option<Box<WsLayer>>,
}

impl Transport {
    /// A transport with these layers.
    pub fn new(tls: Option<TlsLayer>, ws: Option<WsLayer>) -> Self {
        Self {
            tls: tls.map(Box::new),
            ws: ws.map(Box::new),
        }
    }

    /// Neither TLS nor WebSocket: bytes go straight through.
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.ws.is_none()
    }

    /// Bytes from the socket; MQTT bytes are appended to `mqtt`.
    pub fn decode(&mut self, raw: &[u8], mqtt: &mut Vec<u8>) -> Result<(), String> {
        match (&mut self.tls, &mut self.ws) {
            (None, None) => mqtt.extend_from_slice(raw),
            (Some(t), None) => t.feed(raw, mqtt).map_err(|e| e.to_string())?,
            (None, Some(w)) => w.feed(raw, mqtt)?,
            (Some(t), Some(w)) => {
                let mut tls_out = std::mem::take(&mut w.scratch);
                tls_out.clear();
                let fed = t.feed(raw, &mut tls_out).map_err(|e| e.to_string());
                let res = fed.and_then(|()| w.feed(&tls_out, mqtt));
                w.scratch = tls_out;
                res?;
            }
        }
        Ok(())
    }

    /// MQTT bytes to send; the bytes for the socket are appended to `wire` (including any
    /// TLS handshake records or WebSocket control frames waiting).
    pub fn encode<'a>(
        &mut self,
        chunks: impl Iterator<Item = &'a [u8]>,
        wire: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        match (&mut self.tls, &mut self.ws) {
            (None, None) => {
                for c in chunks {
                    wire.extend_from_slice(c);
                }
            }
            (Some(t), None) => t.encrypt(chunks, wire)?,
            (None, Some(w)) => w.encode(chunks, wire)?,
            (Some(t), Some(w)) => {
                let mut frames = std::mem::take(&mut w.scratch);
                frames.clear();
                let res = w
                    .encode(chunks, &mut frames)
                    .and_then(|()| t.encrypt(std::iter::once(frames.as_slice()), wire));
                w.scratch = frames;
                res?;
            }
        }
        Ok(())
    }

    /// True when a layer has bytes of its own to send (handshake, pong, alert).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
            || self.ws.as_ref().is_some_and(|w| w.wants_write())
    }
}
