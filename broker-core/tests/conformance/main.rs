//! Statement-by-statement conformance tests of the broker against MQTT 5.0 and 3.1.1
//! (and the MQTT 3.1 specifics), driven through the deterministic simulation harness.
//!
//! Each test is named after the normative statement it checks, or cites it next to the
//! assertion as `[MQTT-x.y.z-n]`. Modules `v5_*` cite MQTT 5.0 statements, `v311` and
//! `v31` cite MQTT 3.1.1 statements (the two specifications number differently). The
//! table of every server-side statement and the tests covering it is
//! `tests/SPEC_COVERAGE.md`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod multishard;
mod robustness;
mod v31;
mod v311;
mod v5_auth;
mod v5_connect;
mod v5_errors;
mod v5_flow;
mod v5_publish;
mod v5_session;
mod v5_subscribe;
