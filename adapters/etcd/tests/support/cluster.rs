//! A real etcd cluster on loopback: three `etcd` processes (Debian's `etcd-server`) on free
//! ports, each in a directory of its own under one temporary directory, killed when the
//! [`Cluster`] is dropped; keys written with `etcdctl` (Debian's `etcd-client`) or, in bulk,
//! with the Rust client.

use std::fs::File;
use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, TxnOp};

/// How long a member is given to become healthy (elected, or joined to a leader).
const READY_WITHIN: Duration = Duration::from_secs(20);

/// One member: its ports, its data directory, its process while it runs.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    process: Option<Child>,
    /// Stopped with SIGSTOP: it holds its connections open and answers nothing.
    frozen: bool,
}

/// A running cluster; dropping it kills every member.
pub struct Cluster {
    members: Vec<Member>,
    initial_cluster: String,
    /// `--user=root:<password>` once auth is on.
    root: Option<String>,
    /// The CA's certificate file, when the members serve clients over TLS.
    ca: Option<PathBuf>,
    /// Removed, with the members' data, on drop (after the members are killed).
    _dir: tempfile::TempDir,
}

/// Ports nothing listens on now, all different.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port on loopback"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().unwrap().port())
        .collect()
}

/// A temporary directory, in memory where the machine offers it (etcd fsyncs every write).
fn temporary_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("croupier-etcd-").clone();
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return dir;
        }
    }
    builder.tempdir().expect("a temporary directory")
}

impl Cluster {
    /// Starts `size` members and waits until each is healthy.
    pub async fn start(size: usize) -> Cluster {
        Cluster::start_with(size, None).await
    }

    /// Starts `size` members that serve clients over TLS, with a certificate for 127.0.0.1 and
    /// `localhost` from a certificate authority made here: the CA's certificate (PEM).
    pub async fn start_tls(size: usize) -> (Cluster, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let certificate = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let files = (ca.pem(), certificate.pem(), key.serialize_pem());
        (
            Cluster::start_with(size, Some(files.clone())).await,
            files.0,
        )
    }

    /// Starts `size` members, over TLS with `(ca, certificate, key)` (PEM) if given.
    async fn start_with(size: usize, tls: Option<(String, String, String)>) -> Cluster {
        let dir = temporary_dir();
        let ports = free_ports(size * 2);
        let members: Vec<Member> = (0..size)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                dir: dir.path().join(format!("m{i}")),
                process: None,
                frozen: false,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let ca = tls.map(|(ca, certificate, key)| {
            for (name, pem) in [
                ("ca.pem", ca),
                ("member.pem", certificate),
                ("member-key.pem", key),
            ] {
                std::fs::write(dir.path().join(name), pem).unwrap();
            }
            dir.path().join("ca.pem")
        });
        let mut cluster = Cluster {
            members,
            initial_cluster,
            root: None,
            ca,
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.until_healthy(i).await;
        }
        cluster
    }

    /// Starts member `i`'s process (again, on the same data, after [`Cluster::kill`]).
    fn spawn(&mut self, i: usize) {
        let member = &self.members[i];
        std::fs::create_dir_all(&member.dir).unwrap();
        let log = File::options()
            .create(true)
            .append(true)
            .open(member.dir.join("etcd.log"))
            .unwrap();
        let client_url = self.url(i);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let mut command = Command::new("etcd");
        if let Some(ca) = &self.ca {
            let dir = ca.parent().unwrap();
            command
                .arg("--cert-file")
                .arg(dir.join("member.pem"))
                .arg("--key-file")
                .arg(dir.join("member-key.pem"));
        }
        let process = command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(member.dir.join("data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "croupier-etcd-tests"])
            // One transaction writes 10,000 endpoints in a test.
            .args(["--max-txn-ops", "20000"])
            .args(["--max-request-bytes", "16777216"])
            .args(["--log-level", "warn"])
            // Clients may ping every 100 ms, to find a frozen member quickly.
            .args(["--grpc-keepalive-min-time", "100ms"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd runs (apt-get install etcd-server)");
        self.members[i].process = Some(process);
    }

    /// Kills member `i` (SIGKILL: no goodbye to its peers or its clients).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.members[i].process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        self.members[i].frozen = false;
    }

    /// Stops member `i` with SIGSTOP: its sockets stay open, it answers nothing, as a member
    /// on a machine that hangs or a network that drops everything.
    pub fn freeze(&mut self, i: usize) {
        self.signal(i, "-STOP");
        self.members[i].frozen = true;
    }

    /// Lets member `i` run again after [`Cluster::freeze`].
    pub fn thaw(&mut self, i: usize) {
        self.signal(i, "-CONT");
        self.members[i].frozen = false;
    }

    fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i]
            .process
            .as_ref()
            .expect("a running member")
            .id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Restarts member `i` on its data and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.until_healthy(i).await;
    }

    /// Starts member `i` again without waiting (when the others are down too, it cannot be
    /// healthy alone).
    pub fn start_again(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Waits until member `i` answers a linearizable read (it has a leader and is caught up),
    /// asking every 100 ms for at most [`READY_WITHIN`].
    pub async fn until_healthy(&self, i: usize) {
        let member = self.member(i);
        let deadline = Instant::now() + READY_WITHIN;
        let mut last = String::new();
        while Instant::now() < deadline {
            if self.ca.is_some() {
                match self.probe_tls(i).await {
                    Ok(()) => return,
                    Err(error) => last = error,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let probe = async {
                let mut client = Client::connect([member.as_str()], None).await?;
                client.get("health", None).await
            };
            match tokio::time::timeout(Duration::from_secs(1), probe).await {
                Ok(Ok(_)) => return,
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => last = "no answer within 1 s".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "etcd member {member} was not healthy within {READY_WITHIN:?}: {last}; its log: {}",
            std::fs::read_to_string(self.members[i].dir.join("etcd.log")).unwrap_or_default()
        );
    }

    /// `etcdctl endpoint health` on member `i`, over TLS (a linearizable read, as above).
    async fn probe_tls(&self, i: usize) -> Result<(), String> {
        let ca = self.ca.as_ref().unwrap();
        let run = tokio::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.url(i)))
            .arg(format!("--cacert={}", ca.display()))
            .args([
                "--dial-timeout=1s",
                "--command-timeout=1s",
                "endpoint",
                "health",
            ])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(Duration::from_secs(3), run).await {
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => Err(String::from_utf8_lossy(&output.stderr).into_owned()),
            Ok(Err(error)) => Err(format!("etcdctl does not run: {error}")),
            Err(_) => Err("etcdctl did not end within 3 s".into()),
        }
    }

    /// Member `i`'s client URL.
    fn url(&self, i: usize) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.member(i))
    }

    /// Member `i`'s client address, `127.0.0.1:port`.
    pub fn member(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Every member's client address, comma-separated, in `order`.
    pub fn members_in(&self, order: &[usize]) -> String {
        order
            .iter()
            .map(|&i| self.member(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `etcd://<every member>/<prefix>`.
    pub fn target(&self, prefix: &str) -> String {
        let all: Vec<usize> = (0..self.members.len()).collect();
        format!("etcd://{}/{prefix}", self.members_in(&all))
    }

    /// Runs `etcdctl <args>` against the members that run, bounded in time; panics if it fails.
    pub async fn etcdctl(&self, args: &[&str]) {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].process.is_some() && !self.members[i].frozen)
            .collect();
        self.etcdctl_on(&running, args).await;
    }

    /// Runs `etcdctl <args>` against the members `on` only; the future borrows nothing, so the
    /// cluster may change while it runs. A write that was in flight when the leader died can
    /// time out with its outcome unknown, so it is made again (as a service registering itself
    /// would), up to four times: the tests' writes are puts and deletes, the same twice as once.
    pub fn etcdctl_on(&self, on: &[usize], args: &[&str]) -> impl Future<Output = ()> + 'static {
        let urls: Vec<String> = on.iter().map(|&i| self.url(i)).collect();
        let endpoints = format!("--endpoints={}", urls.join(","));
        let mut args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        if let Some(ca) = &self.ca {
            args.insert(0, format!("--cacert={}", ca.display()));
        }
        if let Some(root) = &self.root {
            args.insert(0, root.clone());
        }
        let logs: Vec<PathBuf> = self
            .members
            .iter()
            .map(|m| m.dir.join("etcd.log"))
            .collect();
        async move {
            let mut errors = Vec::new();
            for _ in 0..4 {
                let run = tokio::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .arg(&endpoints)
                    .args(["--dial-timeout=2s", "--command-timeout=3s"])
                    .args(&args)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let output = tokio::time::timeout(Duration::from_secs(10), run)
                    .await
                    .expect("etcdctl ends in time")
                    .expect("etcdctl runs (apt-get install etcd-client)");
                if output.status.success() {
                    return;
                }
                errors.push(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            let logs: Vec<String> = logs
                .iter()
                .map(|log| std::fs::read_to_string(log).unwrap_or_default())
                .collect();
            panic!("etcdctl {args:?} failed: {errors:#?}; the members' logs: {logs:#?}");
        }
    }

    /// Turns etcd's authentication on: a `root` user, and `user` with `password` allowed to
    /// read (and watch) the keys under `prefix` and nothing else. etcdctl writes as root after.
    pub async fn enable_auth(&mut self, user: &str, password: &str, prefix: &str) {
        let root_password = "croupier-root";
        let root_user = format!("--new-user-password={root_password}");
        let new_user = format!("--new-user-password={password}");
        self.etcdctl(&["user", "add", "root", &root_user]).await;
        self.etcdctl(&["user", "add", user, &new_user]).await;
        self.etcdctl(&["role", "add", "reader"]).await;
        self.etcdctl(&[
            "role",
            "grant-permission",
            "reader",
            "--prefix=true",
            "read",
            prefix,
        ])
        .await;
        self.etcdctl(&["user", "grant-role", user, "reader"]).await;
        self.etcdctl(&["auth", "enable"]).await;
        self.root = Some(format!("--user=root:{root_password}"));
    }

    /// `etcdctl put key value`.
    pub async fn put(&self, key: &str, value: &str) {
        self.etcdctl(&["put", key, value]).await;
    }

    /// `etcdctl del key`.
    pub async fn del(&self, key: &str) {
        self.etcdctl(&["del", key]).await;
    }

    /// A Rust client of member `i`, for writes in bulk.
    pub async fn client(&self, i: usize) -> Client {
        Client::connect([self.member(i)], None)
            .await
            .expect("a client of a healthy member")
    }

    /// The index of the member that leads the cluster now.
    pub async fn leader(&self) -> usize {
        let mut ids = Vec::new();
        let mut leader = 0;
        for i in 0..self.members.len() {
            let status = self.client(i).await.status().await.expect("a status");
            ids.push(status.header().expect("a header").member_id());
            leader = status.leader();
        }
        ids.iter()
            .position(|&id| id == leader)
            .expect("a member leads")
    }

    /// Compacts the history up to the current revision, on member `i`: the revision compacted.
    pub async fn compact(&self, i: usize) -> i64 {
        let mut client = self.client(i).await;
        let revision = client
            .get("compaction", None)
            .await
            .expect("a read")
            .header()
            .expect("a header")
            .revision();
        client.compact(revision, None).await.expect("a compaction");
        revision
    }

    /// Puts every `(key, value)` in one transaction on member `i`.
    pub async fn put_all(&self, i: usize, entries: impl IntoIterator<Item = (String, String)>) {
        let ops: Vec<TxnOp> = entries
            .into_iter()
            .map(|(key, value)| TxnOp::put(key, value, None))
            .collect();
        let mut client = self.client(i).await;
        tokio::time::timeout(
            Duration::from_secs(30),
            client.txn(etcd_client::Txn::new().and_then(ops)),
        )
        .await
        .expect("the transaction ends in time")
        .expect("the transaction commits");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
