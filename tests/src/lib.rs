//! duet-tests: cross-crate tests, one test binary with a module per area.
//!
//! - `admission`: 20,000 idle API connections against a real pair (heartbeats, peer link and
//!   plugins untouched); strangers holding every open peer slot while the buddy restarts.
//! - `scenarios`: `tests/scenarios/<name>/` through native duet-core and core.wasm (identical
//!   outputs, compared with `expected.json`; `BLESS=1` rewrites it).
//! - `differential`: 10,000 generated inputs per interface, native vs core.wasm.
//! - `core_runtime`: refusing non-core components, deadlines, fallback.
//! - `handover`: planned handover on `duet switch` and SIGTERM, the remembered state file.
//! - `layout`: the host's crates depend only on what their place allows (`cargo metadata`).
//! - `icmp`: ICMP heartbeats with real packets, to loopback and to a silent namespace host.
//! - `pcap_detect`: libpcap missing, rejected or without its calls: what `/api/v1/pair` says.
//! - `hot_swap`: replacing core.wasm under a running agent's tick loop.
//! - `model`: a seeded randomized model check of two cores under faults (10,000 schedules).
//! - `sim`: the same plans and invariants run through two real host agents over an in-memory
//!   network on paused time (1,000 schedules).
//! - `api`: the JSON API, its OpenAPI document, tokens, the event stream, `/metrics` and
//!   `duet status`, against running agents.
//! - `netns`: two real agents in network namespaces (LAN through a bridge, gateway, sync
//!   cable): cuts, kill -9, heals, SIGTERM, twenty simultaneous starts.
//! - `service`: duet as a service: the `.deb` (unpacked; `systemd-analyze verify` and
//!   `security`; the template refused until filled in); a pair run from the packaged binary as
//!   an unprivileged user holding only CAP_NET_ADMIN and CAP_NET_RAW moves its VIP through
//!   kill -9, `release-vip` removes it; a missing capability named; systemd's notify socket
//!   (READY, watchdog pings stopping when the loop freezes, STOPPING during a handover); the
//!   API over TLS (status, web UI in Chromium, plain HTTP refused, certificate reloaded);
//!   promtool on the alert rules and the dashboard's metrics against `/metrics`.
//! - `vip`: virtual IP mode in the namespace topology: a client follows the VIP through kill -9,
//!   power-off and restart; stale VIP, conflict, libpcap hidden; the failover-time bench.
//! - `peer_link`: mismatched pair keys; forged, replayed and garbled frames against an agent.
//! - `plugins`: probe plugins in a running agent: hostile plugins contained beside a canary,
//!   grants, hot drop-in and removal, `duet plugin check`.
//! - `rows`: Status rows from real probes: NATS through a real nats-server (stop/start, buddy
//!   killed, endpoints files edited, garbled, a directory), RTE Count over a hanging probe, NIC
//!   rows from `ip link set down/up` in a namespace, Configuration Invalid naming the key.
//! - `reload`: configuration reload in a running pair (SIGHUP, `duet reload`): heartbeat
//!   timings taken live, a broken file refused, a one-sided shared change shown on both
//!   without a move, the pair key rotated in three reloads while the pair keeps talking.
//! - `cli`: the `duet` binary: `check-config`, `--version`, a two-agent pair and `duet status`.
//! - `dbsync`: the event log forwarded between two real agents through kills and a switch
//!   (100,000 events), the spool surviving kill -9, the DB Sync rows, the Database row
//!   against a real PostgreSQL (`pg`: a cluster of the test's own).
//! - `web_ui`: the web UI in headless Chromium against a real pair (LEDs, pcap icon, Status
//!   window, switch with a token, history); screenshots under `target/web-e2e/`.
//! - `web_view`: the operator's view in Chromium: a killed Online agent leaves the survivor's
//!   page at once (MutationObserver), state without colour, title and favicon, the Status
//!   window's keyboard and narrow layout.
//! - `witness`: the witness lease against a real three-node JetStream cluster (`cluster`):
//!   1,000 rounds of concurrent compare-and-swap, the stream leader killed, the whole cluster
//!   down, per-pair permissions, a too-old server; and a pair in namespaces whose link is cut
//!   while both reach the witness.

pub mod cluster;
pub mod model;
pub mod pg;
pub mod sim;
pub mod support;

#[cfg(test)]
mod admission;
#[cfg(test)]
mod api;
#[cfg(test)]
mod cli;
#[cfg(test)]
mod compartment;
#[cfg(test)]
mod containment;
#[cfg(test)]
mod core_runtime;
#[cfg(test)]
mod dbsync;
#[cfg(test)]
mod differential;
#[cfg(test)]
mod handover;
#[cfg(test)]
mod hot_swap;
#[cfg(test)]
mod icmp;
#[cfg(test)]
mod keepalived;
#[cfg(test)]
mod layout;
#[cfg(test)]
mod netns;
#[cfg(test)]
mod pcap_detect;
#[cfg(test)]
mod peer_link;
#[cfg(test)]
mod plugins;
#[cfg(test)]
mod reload;
#[cfg(test)]
mod rows;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod service;
#[cfg(test)]
mod vip;
#[cfg(test)]
mod web_ui;
#[cfg(test)]
mod web_view;
#[cfg(test)]
mod witness;
