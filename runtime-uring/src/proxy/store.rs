//! The routes and certificates the admin API manages, as stored JSON objects, and their
//! persistence in the `--state` file (written whole to a temporary file, synced, then
//! renamed over the old one: a crash leaves the old state or the new one, never half).
//!
//! Every change compiles a complete new [`RouteTable`] and publishes it with one atomic
//! swap; new connections see it at once, established ones are not touched.

use super::health::HealthRegistry;
use super::routes::{body_id, parse_route, valid_id, FieldError, RouteSpec};
use super::ssl::{compile as compile_ssl, parse_ssl, SniIndex, SslSpec};
use super::table::{compile_route, CompileCtx, Route, RouteTable};
use arc_swap::ArcSwap;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The two kinds of objects of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    StreamRoutes,
    Ssls,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::StreamRoutes => "stream_routes",
            Kind::Ssls => "ssls",
        }
    }
}

/// Why a change was refused.
#[derive(Debug)]
pub enum StoreError {
    /// 400: a field is wrong.
    Invalid(FieldError),
    /// 500: the state file could not be written (the change was not applied).
    Io(String),
}

impl From<FieldError> for StoreError {
    fn from(e: FieldError) -> Self {
        StoreError::Invalid(e)
    }
}

/// What the store needs from the proxy's settings.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub state: Option<PathBuf>,
    pub upstream_ca: Option<String>,
    pub connect_timeout: Duration,
    /// Routes that are not the admin API's: the command line's default route.
    pub default_route: Option<RouteSpec>,
    /// Certificates from the configuration file (always present, never persisted).
    pub static_ssls: Vec<SslSpec>,
}

struct Entry<S> {
    value: Value,
    spec: S,
}

/// The admin API's objects and the table they compile to.
pub struct Store {
    table: Arc<ArcSwap<RouteTable>>,
    health: Arc<HealthRegistry>,
    settings: StoreSettings,
    routes: BTreeMap<String, Entry<RouteSpec>>,
    ssls: BTreeMap<String, Entry<(SslSpec, Arc<rustls::ServerConfig>)>>,
    static_ssls: Vec<(SslSpec, Arc<rustls::ServerConfig>)>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// Loads the state file (if any), compiles, and publishes the first table.
    pub fn open(
        table: Arc<ArcSwap<RouteTable>>,
        health: Arc<HealthRegistry>,
        settings: StoreSettings,
    ) -> anyhow::Result<Store> {
        let mut static_ssls = Vec::new();
        for s in &settings.static_ssls {
            let cfg =
                compile_ssl(s).map_err(|e| anyhow::anyhow!("configured TLS certificate: {e}"))?;
            static_ssls.push((s.clone(), cfg));
        }
        let mut store = Store {
            table,
            health,
            settings,
            routes: BTreeMap::new(),
            ssls: BTreeMap::new(),
            static_ssls,
        };
        if let Some(p) = store.settings.state.clone() {
            store.load(&p)?;
        }
        let t = store.build();
        store.table.store(Arc::new(t));
        Ok(store)
    }

    fn load(&mut self, p: &Path) -> anyhow::Result<()> {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => anyhow::bail!("cannot read the state file {}: {e}", p.display()),
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("state file {}: {e}", p.display()))?;
        let section = |k: &str| -> Map<String, Value> {
            v.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        for (id, value) in section("ssls") {
            let spec = parse_ssl(&value)
                .map_err(|e| anyhow::anyhow!("state file {}: ssl {id}: {e}", p.display()))?;
            let cfg = compile_ssl(&spec)
                .map_err(|e| anyhow::anyhow!("state file {}: ssl {id}: {e}", p.display()))?;
            self.ssls.insert(
                id,
                Entry {
                    value,
                    spec: (spec, cfg),
                },
            );
        }
        for (id, value) in section("stream_routes") {
            let spec = parse_route(&value).map_err(|e| {
                anyhow::anyhow!("state file {}: stream route {id}: {e}", p.display())
            })?;
            self.routes.insert(id, Entry { value, spec });
        }
        tracing::info!(
            "state {}: {} stream route(s), {} ssl(s)",
            p.display(),
            self.routes.len(),
            self.ssls.len()
        );
        Ok(())
    }

    fn ctx(&self) -> CompileCtx<'_> {
        CompileCtx {
            health: &self.health,
            upstream_ca: self.settings.upstream_ca.as_deref(),
            connect_timeout: self.settings.connect_timeout,
        }
    }

    /// Compiles everything; a route that no longer compiles (a name that stopped
    /// resolving) is left out with a warning, not lost.
    fn build(&self) -> RouteTable {
        let ctx = self.ctx();
        let mut routes: Vec<Route> = Vec::with_capacity(self.routes.len());
        for (id, e) in &self.routes {
            match compile_route(id, &e.spec, &ctx) {
                Ok(r) => routes.push(r),
                Err(err) => tracing::warn!("stream route {id} left out: {err}"),
            }
        }
        let default = self.settings.default_route.as_ref().and_then(|spec| {
            compile_route("default", spec, &ctx)
                .map_err(|e| tracing::warn!("default route left out: {e}"))
                .ok()
        });
        let mut sni = SniIndex::default();
        for e in self.ssls.values() {
            if e.spec.0.enabled {
                sni.add(&e.spec.0.snis, &e.spec.1);
            }
        }
        for (spec, cfg) in &self.static_ssls {
            sni.add(&spec.snis, cfg);
        }
        RouteTable::new(routes, default, sni)
    }

    fn save(&self) -> Result<(), StoreError> {
        let Some(p) = &self.settings.state else {
            return Ok(());
        };
        let section = |m: Vec<(&String, &Value)>| -> Value {
            Value::Object(m.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        };
        let doc = json!({
            "version": 1,
            "stream_routes": section(self.routes.iter().map(|(k, e)| (k, &e.value)).collect()),
            "ssls": section(self.ssls.iter().map(|(k, e)| (k, &e.value)).collect()),
        });
        write_atomic(p, &doc)
            .map_err(|e| StoreError::Io(format!("cannot write {}: {e}", p.display())))
    }

    fn publish(&self) {
        self.table.store(Arc::new(self.build()));
    }

    fn stored(kind: Kind, id: &str, body: Value, created: Option<u64>) -> Value {
        let mut m = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let now = unix_now();
        m.insert("id".into(), Value::String(id.to_owned()));
        m.insert("create_time".into(), json!(created.unwrap_or(now)));
        m.insert("update_time".into(), json!(now));
        let _ = kind;
        Value::Object(m)
    }

    /// Creates or replaces an object; answers the stored value and whether it is new.
    pub fn put(&mut self, kind: Kind, id: &str, body: Value) -> Result<(Value, bool), StoreError> {
        if !valid_id(id) {
            return Err(FieldError::new("id", "must be 1 to 64 of [a-zA-Z0-9-_.]").into());
        }
        if let Some(bid) = body_id(&body)? {
            if bid != id {
                return Err(FieldError::new(
                    "id",
                    format!("{bid:?} differs from the id in the path"),
                )
                .into());
            }
        }
        match kind {
            Kind::StreamRoutes => {
                let spec = parse_route(&body)?;
                // Compile now so that every error is the caller's 400, not a warning later.
                compile_route(id, &spec, &self.ctx())?;
                let created = self
                    .routes
                    .get(id)
                    .map(|e| e.value["create_time"].as_u64().unwrap_or(0));
                let value = Self::stored(kind, id, body, created);
                let old = self.routes.insert(
                    id.to_owned(),
                    Entry {
                        value: value.clone(),
                        spec,
                    },
                );
                if let Err(e) = self.save() {
                    match old {
                        Some(o) => self.routes.insert(id.to_owned(), o),
                        None => self.routes.remove(id),
                    };
                    return Err(e);
                }
                self.publish();
                Ok((value, created.is_none()))
            }
            Kind::Ssls => {
                let spec = parse_ssl(&body)?;
                let cfg = compile_ssl(&spec)?;
                let created = self
                    .ssls
                    .get(id)
                    .map(|e| e.value["create_time"].as_u64().unwrap_or(0));
                let value = Self::stored(kind, id, body, created);
                let old = self.ssls.insert(
                    id.to_owned(),
                    Entry {
                        value: value.clone(),
                        spec: (spec, cfg),
                    },
                );
                if let Err(e) = self.save() {
                    match old {
                        Some(o) => self.ssls.insert(id.to_owned(), o),
                        None => self.ssls.remove(id),
                    };
                    return Err(e);
                }
                self.publish();
                Ok((value, created.is_none()))
            }
        }
    }

    /// A stored object.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Value> {
        match kind {
            Kind::StreamRoutes => self.routes.get(id).map(|e| e.value.clone()),
            Kind::Ssls => self.ssls.get(id).map(|e| e.value.clone()),
        }
    }

    /// Every stored object of a kind, by id.
    pub fn list(&self, kind: Kind) -> Vec<(String, Value)> {
        match kind {
            Kind::StreamRoutes => self
                .routes
                .iter()
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect(),
            Kind::Ssls => self
                .ssls
                .iter()
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect(),
        }
    }

    /// Deletes an object; false if there was none.
    pub fn delete(&mut self, kind: Kind, id: &str) -> Result<bool, StoreError> {
        match kind {
            Kind::StreamRoutes => {
                let Some(old) = self.routes.remove(id) else {
                    return Ok(false);
                };
                if let Err(e) = self.save() {
                    self.routes.insert(id.to_owned(), old);
                    return Err(e);
                }
            }
            Kind::Ssls => {
                let Some(old) = self.ssls.remove(id) else {
                    return Ok(false);
                };
                if let Err(e) = self.save() {
                    self.ssls.insert(id.to_owned(), old);
                    return Err(e);
                }
            }
        }
        self.publish();
        Ok(true)
    }
}

/// Writes `doc` to `p` atomically, readable by the owner only (it holds private keys).
pub fn write_atomic(p: &Path, doc: &Value) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = p
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, p)?;
        // The rename itself must reach the disk.
        std::fs::File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(state: Option<PathBuf>) -> Store {
        Store::open(
            Arc::new(ArcSwap::from_pointee(RouteTable::default())),
            Arc::new(HealthRegistry::default()),
            StoreSettings {
                state,
                upstream_ca: None,
                connect_timeout: Duration::from_secs(1),
                default_route: None,
                static_ssls: Vec::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn put_get_delete_persist() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        let mut s = store(Some(p.clone()));
        let body = json!({"upstream": {"nodes": {"127.0.0.1:1883": 1}, "type": "chash", "key": "mqtt_client_id"}});
        let (v, created) = s.put(Kind::StreamRoutes, "1", body.clone()).unwrap();
        assert!(created);
        assert_eq!(v["id"], "1");
        assert_eq!(v["upstream"], body["upstream"]);
        let (_, created) = s.put(Kind::StreamRoutes, "1", body.clone()).unwrap();
        assert!(!created);
        assert!(matches!(
            s.put(Kind::StreamRoutes, "1", json!({"id": "2", "upstream": body["upstream"]})),
            Err(StoreError::Invalid(e)) if e.field == "id"
        ));
        assert!(matches!(
            s.put(Kind::StreamRoutes, "a/b", body.clone()),
            Err(StoreError::Invalid(_))
        ));
        s.put(Kind::StreamRoutes, "2", body.clone()).unwrap();
        assert!(s.delete(Kind::StreamRoutes, "2").unwrap());
        assert!(!s.delete(Kind::StreamRoutes, "2").unwrap());
        // A new store on the same file sees route 1 only.
        let s2 = store(Some(p.clone()));
        assert_eq!(s2.list(Kind::StreamRoutes).len(), 1);
        assert_eq!(
            s2.get(Kind::StreamRoutes, "1").unwrap()["upstream"],
            body["upstream"]
        );
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn unwritable_state_refuses_the_change() {
        let mut s = store(Some(PathBuf::from("/nonexistent-dir/state.json")));
        let body = json!({"upstream": {"nodes": {"127.0.0.1:1883": 1}}});
        assert!(matches!(
            s.put(Kind::StreamRoutes, "1", body),
            Err(StoreError::Io(_))
        ));
        assert!(s.get(Kind::StreamRoutes, "1").is_none());
    }
}
