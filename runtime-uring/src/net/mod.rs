//! Networking pieces shared by the broker, the proxy and the client.

pub mod iovec;
pub mod listen;
pub mod notify;
pub mod proxy_protocol;
pub mod ring;
pub mod runtime;
pub mod sock;
pub mod tls;
pub mod transport;
pub mod ws;
