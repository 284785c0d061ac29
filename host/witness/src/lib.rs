//! duet-witness: the pair's third vote. A lease per pair in a NATS JetStream key-value bucket
//! replicated over a three-node cluster; ownership is decided only by compare-and-swap writes
//! (create, or update at the revision last seen), never by a read, and no server clock or TTL
//! is relied on.
//!
//! - [`config`]: the `[witness]` section (servers, credentials, bucket, key, lease, renewal).
//! - [`lease`]: the lease's logic, pure and clock-injected: what to write next, the holder's
//!   deadline (send time of its last acknowledged renewal + lease − margin), a waiter's own
//!   judgement of a lapse (the revision unchanged for a whole lease on its clock).
//! - [`client`]: the task that carries it out over its own NATS connection.
//!
//! ```no_run
//! # async fn f(config: duet_witness::config::WitnessConfig) {
//! let client = duet_witness::client::Client::new(config, "a".into());
//! client.want(true); // claiming or Online: take and keep the lease
//! let view = client.view(); // what the failover core sees (held, free, holder)
//! # }
//! ```

pub mod client;
pub mod config;
pub mod lease;
