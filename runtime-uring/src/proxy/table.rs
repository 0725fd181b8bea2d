//! The compiled route table: what the proxy threads read for every new connection. It is
//! immutable; a change builds a new table and swaps it in atomically (`ArcSwap`), so a
//! connection takes no lock, and connections already forwarding keep going untouched.

use super::health::{HealthRegistry, NodeHealth};
use super::ring::{weighted_schedule, Ring};
use super::routes::{Balance, ConnFacts, FieldError, HashKey, Matcher, RouteSpec};
use super::ssl::SniIndex;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One node, ready to connect to.
#[derive(Debug)]
pub struct Node {
    /// `host:port`: its name on the ring and in logs.
    pub name: Arc<str>,
    /// Resolved when the route was compiled (None: the name did not resolve).
    pub addr: Option<SocketAddr>,
    /// The host, as the TLS server name when the upstream uses TLS.
    pub host: String,
    pub health: Arc<NodeHealth>,
}

#[derive(Debug)]
enum Picker {
    Chash {
        ring: Ring,
        key: HashKey,
    },
    RoundRobin {
        schedule: Vec<u32>,
        next: AtomicUsize,
    },
}

/// A compiled upstream.
#[derive(Debug)]
pub struct Upstream {
    pub nodes: Vec<Node>,
    picker: Picker,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub proxy_protocol: bool,
    pub max_tries: usize,
    pub connect_timeout: Duration,
}

/// The key a consistent-hashing upstream hashes for a client.
pub fn hash_key(key: HashKey, client_id: &str, ip: IpAddr) -> Vec<u8> {
    if key == HashKey::ClientId && !client_id.is_empty() {
        return client_id.as_bytes().to_vec();
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ip.to_string().into_bytes()
}

impl Upstream {
    /// The nodes to try for a client, best first: up nodes only, at most `max_tries`.
    /// When every node is marked down, all of them in the same order (as nginx does): a
    /// mark is a guess from the past, and a refusal costs the client nothing more.
    pub fn candidates(&self, client_id: &str, ip: IpAddr) -> Vec<usize> {
        let up = self.pick(client_id, ip, true);
        if up.is_empty() {
            self.pick(client_id, ip, false)
        } else {
            up
        }
    }

    fn pick(&self, client_id: &str, ip: IpAddr, only_up: bool) -> Vec<usize> {
        let usable = |i: &usize| {
            self.nodes
                .get(*i)
                .is_some_and(|n| n.addr.is_some() && (!only_up || n.health.is_up()))
        };
        match &self.picker {
            Picker::Chash { ring, key } => ring
                .walk(&hash_key(*key, client_id, ip))
                .filter(usable)
                .take(self.max_tries)
                .collect(),
            Picker::RoundRobin { schedule, next } => {
                if schedule.is_empty() {
                    return Vec::new();
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                let mut out: Vec<usize> = Vec::new();
                for k in 0..schedule.len() {
                    let Some(&i) = schedule.get((start + k) % schedule.len()) else {
                        break;
                    };
                    let i = i as usize;
                    if !out.contains(&i) && usable(&i) {
                        out.push(i);
                        if out.len() >= self.max_tries {
                            break;
                        }
                    }
                }
                out
            }
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub id: Arc<str>,
    pub matcher: Matcher,
    pub upstream: Upstream,
}

/// Everything a compile needs from outside the route.
#[derive(Debug)]
pub struct CompileCtx<'a> {
    pub health: &'a HealthRegistry,
    /// PEM of the CA that signs the nodes' certificates (`scheme: tls`).
    pub upstream_ca: Option<&'a str>,
    pub connect_timeout: Duration,
}

/// Compiles a route (resolving node names now, off the data path).
pub fn compile_route(
    id: &str,
    spec: &RouteSpec,
    ctx: &CompileCtx<'_>,
) -> Result<Route, FieldError> {
    let u = &spec.upstream;
    let mut nodes = Vec::with_capacity(u.nodes.len());
    for (i, n) in u.nodes.iter().enumerate() {
        let name = n.name();
        let addr = match n.host.parse::<IpAddr>() {
            Ok(ip) => Some(SocketAddr::new(ip, n.port)),
            Err(_) => match (n.host.as_str(), n.port).to_socket_addrs() {
                Ok(mut a) => a.next(),
                Err(e) => {
                    return Err(FieldError::new(
                        format!("upstream.nodes[{i}].host"),
                        format!("cannot resolve {}: {e}", n.host),
                    ))
                }
            },
        };
        nodes.push(Node {
            health: ctx.health.get(&name),
            name: name.into(),
            addr,
            host: n.host.clone(),
        });
    }
    let weights: Vec<u32> = u.nodes.iter().map(|n| n.weight).collect();
    let picker = match u.balance {
        Balance::Chash(key) => {
            let named: Vec<(&str, u32)> = nodes
                .iter()
                .zip(&weights)
                .map(|(n, &w)| (&*n.name, w))
                .collect();
            Picker::Chash {
                ring: Ring::new(&named),
                key,
            }
        }
        Balance::RoundRobin => Picker::RoundRobin {
            schedule: weighted_schedule(&weights),
            next: AtomicUsize::new(0),
        },
    };
    let tls = match &u.tls {
        None => None,
        Some(t) => {
            let ca = ctx.upstream_ca.ok_or_else(|| {
                FieldError::new(
                    "upstream.scheme",
                    "tls needs petrel proxy --upstream-ca FILE (the CA of the nodes' certificates)",
                )
            })?;
            Some(super::ssl::client_config(ca, t.client_cert.as_ref())?)
        }
    };
    let positive = weights.iter().filter(|&&w| w > 0).count();
    let max_tries = match u.retries {
        Some(r) => (r as usize + 1).min(positive.max(1)),
        None => positive.max(1),
    };
    Ok(Route {
        id: id.into(),
        matcher: spec.matcher.clone(),
        upstream: Upstream {
            nodes,
            picker,
            tls,
            proxy_protocol: u.proxy_protocol,
            max_tries,
            connect_timeout: u.connect_timeout.unwrap_or(ctx.connect_timeout),
        },
    })
}

/// The routes in the order they are tried, the command line's default route last, and
/// the TLS certificates by name.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Option<Route>,
    pub sni: SniIndex,
}

impl RouteTable {
    /// Orders `routes`: the more specific first (more match fields set), then by id.
    pub fn new(mut routes: Vec<Route>, default: Option<Route>, sni: SniIndex) -> Self {
        routes.sort_by(|a, b| {
            b.matcher
                .specificity()
                .cmp(&a.matcher.specificity())
                .then_with(|| a.id.cmp(&b.id))
        });
        Self {
            routes,
            default,
            sni,
        }
    }

    /// The route for a connection, if any.
    pub fn select(&self, facts: &ConnFacts<'_>) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.matcher.matches(facts))
            .or_else(|| self.default.as_ref().filter(|r| r.matcher.matches(facts)))
    }

    /// Every distinct node (for the active health check).
    pub fn nodes(&self) -> Vec<(SocketAddr, Arc<NodeHealth>)> {
        let mut out: Vec<(SocketAddr, Arc<NodeHealth>)> = Vec::new();
        for r in self.routes.iter().chain(self.default.iter()) {
            for n in &r.upstream.nodes {
                if let Some(a) = n.addr {
                    if !out.iter().any(|(x, _)| *x == a) {
                        out.push((a, n.health.clone()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::routes::parse_route;
    use mqtt_proto::ProtocolVersion;
    use serde_json::json;

    fn ctx(h: &HealthRegistry) -> CompileCtx<'_> {
        CompileCtx {
            health: h,
            upstream_ca: None,
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn chash_is_independent_of_version_and_falls_back_to_ip() {
        let h = HealthRegistry::default();
        let spec = parse_route(
            &json!({"upstream": {"type": "chash", "key": "mqtt_client_id",
            "nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1, "127.0.0.1:3": 1}}}),
        )
        .unwrap();
        let r = compile_route("1", &spec, &ctx(&h)).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ip2: IpAddr = "10.0.0.2".parse().unwrap();
        let a = r.upstream.candidates("c1", ip);
        assert_eq!(a.len(), 3);
        assert_eq!(a, r.upstream.candidates("c1", ip2));
        assert_eq!(r.upstream.candidates("", ip), r.upstream.candidates("", ip));
        assert_eq!(
            hash_key(HashKey::ClientId, "", "::ffff:10.0.0.1".parse().unwrap()),
            b"10.0.0.1"
        );
        // A down node is skipped: the next on the ring takes its clients.
        let owner = a[0];
        r.upstream.nodes[owner]
            .health
            .mark_down(Duration::from_secs(60));
        assert_eq!(r.upstream.candidates("c1", ip), a[1..]);
        // All down: all of them are tried anyway, in ring order.
        for n in &r.upstream.nodes {
            n.health.mark_down(Duration::from_secs(60));
        }
        assert_eq!(r.upstream.candidates("c1", ip), a);
    }

    #[test]
    fn roundrobin_rotates() {
        let h = HealthRegistry::default();
        let spec =
            parse_route(&json!({"upstream": {"nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1}}}))
                .unwrap();
        let r = compile_route("1", &spec, &ctx(&h)).unwrap();
        let firsts: Vec<usize> = (0..4)
            .map(|_| r.upstream.candidates("x", "10.0.0.1".parse().unwrap())[0])
            .collect();
        assert_eq!(firsts, [0, 1, 0, 1]);
    }

    #[test]
    fn specific_routes_first_then_default() {
        let h = HealthRegistry::default();
        let any = compile_route(
            "a",
            &parse_route(&json!({"upstream": {"nodes": {"127.0.0.1:1": 1}}})).unwrap(),
            &ctx(&h),
        )
        .unwrap();
        let v5 = compile_route(
            "z",
            &parse_route(&json!({"plugins": {"mqtt-proxy": {"protocol_level": 5}},
                "upstream": {"nodes": {"127.0.0.1:2": 1}}}))
            .unwrap(),
            &ctx(&h),
        )
        .unwrap();
        let t = RouteTable::new(vec![any, v5], None, SniIndex::default());
        let facts = |v| ConnFacts {
            version: v,
            sni: None,
            local: "127.0.0.1:1883".parse().unwrap(),
            remote: "127.0.0.1:5000".parse().unwrap(),
        };
        assert_eq!(&*t.select(&facts(ProtocolVersion::V5)).unwrap().id, "z");
        assert_eq!(&*t.select(&facts(ProtocolVersion::V3_1_1)).unwrap().id, "a");
        assert_eq!(t.nodes().len(), 2);
        let empty = RouteTable::default();
        assert!(empty.select(&facts(ProtocolVersion::V5)).is_none());
    }

    #[test]
    fn tls_upstream_needs_a_ca() {
        let h = HealthRegistry::default();
        let spec =
            parse_route(&json!({"upstream": {"scheme": "tls", "nodes": {"127.0.0.1:1": 1}}}))
                .unwrap();
        assert_eq!(
            compile_route("1", &spec, &ctx(&h)).unwrap_err().field,
            "upstream.scheme"
        );
    }
}
