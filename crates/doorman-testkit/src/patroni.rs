//! A real Patroni cluster for tests: one etcd (Debian's `etcd-server`) and N Patroni
//! processes (PyPI's `patroni[etcd3]`, installed by scripts/deps.sh into a virtualenv at
//! `/opt/doorman-patroni`, override with `PATRONI_BIN`), each managing a PostgreSQL 15 on a
//! free 127.0.0.1 port. As root, Patroni (and so PostgreSQL) runs as `postgres`.

use crate::{free_port, is_root, pg_bin};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `patroni` and `patronictl` are.
pub fn patroni_bin() -> PathBuf {
    std::env::var_os("PATRONI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/doorman-patroni/bin"))
}

/// One Patroni-managed PostgreSQL.
pub struct Node {
    /// Patroni member name (`node0`, `node1`, …).
    pub name: String,
    /// PostgreSQL port on 127.0.0.1.
    pub pg_port: u16,
    /// Patroni REST API port on 127.0.0.1.
    pub api_port: u16,
    config: PathBuf,
    data: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// `http://127.0.0.1:<api_port>`.
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }
}

/// A member as `/cluster` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Member name.
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, …
    pub role: String,
    /// `running`, `streaming`, `stopped`, …
    pub state: String,
    /// PostgreSQL port.
    pub port: u16,
}

/// etcd plus N Patroni nodes; all stopped on Drop.
pub struct PatroniCluster {
    dir: tempfile::TempDir,
    etcd: Child,
    /// The nodes, in start order (node0 bootstraps and leads first).
    pub nodes: Vec<Node>,
}

fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PatroniCluster {
    /// Starts etcd and `n` nodes and waits (up to 90 s) for a running leader and every
    /// replica streaming. Panics with the logs when that does not happen.
    pub fn start(n: usize) -> PatroniCluster {
        let patroni = patroni_bin().join("patroni");
        assert!(
            patroni.exists(),
            "{} missing: run scripts/deps.sh (it installs Patroni into /opt/doorman-patroni)",
            patroni.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("doorman-patroni-")
            .tempdir_in("/tmp")
            .unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path())
                .status();
        }
        let (client, peer) = (free_port(), free_port());
        let etcd = as_postgres(Path::new("etcd"))
            .args([
                "--name",
                "e0",
                "--data-dir",
                &dir.path().join("etcd").display().to_string(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("e0=http://127.0.0.1:{peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).unwrap())
            .spawn()
            .expect("etcd (Debian package etcd-server; scripts/deps.sh installs it)");
        let scope = format!(
            "doorman{}",
            dir.path().display().to_string().len() + client as usize
        );
        let mut cluster = PatroniCluster {
            dir,
            etcd,
            nodes: Vec::new(),
        };
        wait(Duration::from_secs(20), "etcd to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", client)).is_ok()
        });
        for i in 0..n {
            let name = format!("node{i}");
            let (pg_port, api_port) = (free_port(), free_port());
            let d = cluster.dir.path();
            let data = d.join(format!("data{i}"));
            let config = d.join(format!("{name}.yml"));
            std::fs::write(
                &config,
                format!(
                    r#"scope: {scope}
name: {name}
restapi:
  listen: 127.0.0.1:{api_port}
  connect_address: 127.0.0.1:{api_port}
etcd3:
  hosts: 127.0.0.1:{client}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: false
      parameters:
        fsync: "off"
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 5
        max_connections: 200
  initdb:
  - encoding: UTF8
  - locale: C
postgresql:
  listen: 127.0.0.1:{pg_port}
  connect_address: 127.0.0.1:{pg_port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {d}/pgpass{i}
  authentication:
    replication: {{username: replicator, password: rep}}
    superuser: {{username: postgres, password: postgres}}
  parameters:
    unix_socket_directories: '{d}'
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
"#,
                    data = data.display(),
                    bin = pg_bin().display(),
                    d = d.display()
                ),
            )
            .unwrap();
            if is_root() {
                let _ = Command::new("chown").arg("postgres").arg(&config).status();
            }
            let child = as_postgres(&patroni)
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join(format!("{name}.log"))).unwrap())
                .spawn()
                .unwrap();
            cluster.nodes.push(Node {
                name,
                pg_port,
                api_port,
                config,
                data,
                child: Some(child),
            });
            if i == 0 {
                // node0 bootstraps alone, so it is the first leader.
                cluster.wait_members(Duration::from_secs(60), "node0 to lead", |m| {
                    m.iter()
                        .any(|m| m.name == "node0" && m.role == "leader" && m.state == "running")
                });
            }
        }
        cluster.wait_members(Duration::from_secs(90), "every replica to stream", |m| {
            m.len() == n
                && m.iter()
                    .all(|m| m.state == "running" || m.state == "streaming")
        });
        cluster
    }

    /// Every node's REST URL.
    pub fn api_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::api_url).collect()
    }

    /// `/cluster` from the first node that answers (empty when none does).
    pub fn members(&self) -> Vec<MemberState> {
        for n in &self.nodes {
            if n.child.is_none() {
                continue;
            }
            if let Some(body) = http_get(n.api_port, "/cluster") {
                return parse_members(&body);
            }
        }
        Vec::new()
    }

    /// The running leader's name, if there is one.
    pub fn leader(&self) -> Option<String> {
        self.members()
            .into_iter()
            .find(|m| m.role == "leader" && m.state == "running")
            .map(|m| m.name)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// Waits until `ok(members)`; panics after `limit` with the logs.
    pub fn wait_members(
        &self,
        limit: Duration,
        what: &str,
        ok: impl Fn(&[MemberState]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        while started.elapsed() < limit {
            if ok(&self.members()) {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "waited {limit:?} for {what}; members {:?}\n{}",
            self.members(),
            self.logs()
        );
    }

    /// `patronictl switchover --candidate <to> --force`; returns its output.
    pub fn switchover(&self, to: &str) -> String {
        let leader = self.leader().expect("a leader to switch over from");
        let out = as_postgres(&patroni_bin().join("patronictl"))
            .arg("-c")
            .arg(&self.nodes[0].config)
            .args([
                "switchover",
                "--leader",
                &leader,
                "--candidate",
                to,
                "--force",
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "patronictl switchover failed: {text}");
        text
    }

    /// Stops node `name`'s Patroni (SIGTERM: it stops its PostgreSQL and releases the leader
    /// key) and waits for it to exit.
    pub fn stop_node(&mut self, name: &str) {
        let node = self.nodes.iter_mut().find(|n| n.name == name).unwrap();
        if let Some(mut c) = node.child.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        stop_pg(&node.data);
    }

    /// Patroni's and etcd's logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "--- {}.log\n{}\n",
                n.name,
                tail(&self.dir.path().join(format!("{}.log", n.name)))
            ));
        }
        out
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn stop_pg(data: &Path) {
    if data.join("postmaster.pid").exists() {
        let _ = as_postgres(&pg_bin().join("pg_ctl"))
            .args(["-m", "immediate", "-D"])
            .arg(data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn wait(limit: Duration, what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("waited {limit:?} for {what}");
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (Patroni closes after the reply); the body on 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

fn parse_members(body: &str) -> Vec<MemberState> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| MemberState {
                    name: m["name"].as_str().unwrap_or_default().to_string(),
                    role: m["role"].as_str().unwrap_or_default().to_string(),
                    state: m["state"].as_str().unwrap_or_default().to_string(),
                    port: m["port"].as_u64().unwrap_or_default() as u16,
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = &n.child {
                let _ = Command::new("kill").arg(c.id().to_string()).status();
            }
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let deadline = Instant::now() + Duration::from_secs(15);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
            stop_pg(&n.data);
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}
