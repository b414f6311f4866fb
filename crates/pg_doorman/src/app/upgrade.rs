//! Binary upgrade (SIGUSR2, admin UPGRADE; seed 002, COMPAT.md §5): the executable on disk is
//! validated with `-t` on the running config file; a child is started with the listening
//! sockets (`--inherit-fd`, so no connection attempt is refused during the switch) and one end
//! of a SOCK_SEQPACKET pair; once it says it is ready, this process stops accepting and sends
//! it every client at its next idle point: the socket by SCM_RIGHTS and a [`Migrant`] record.
//! The child sends back cancels for keys it does not know (clients still in a transaction
//! here).
//!
//! Packets: `R` pid (child ready), `W` u32 count, u32 user length, user, database (open that
//! many backends: what the pool was using here), `C` u32 length + first chunk, with the socket
//! (a client), `+` chunk (the rest of a long record), `K` pid secret (a cancel to forward).

use super::context::AppContext;
use super::fds;
use super::handoff::{Departure, Migrant};
use super::lifecycle::Handoff;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

const READY: u8 = b'R';
const CLIENT: u8 = b'C';
const MORE: u8 = b'+';
const CANCEL: u8 = b'K';
const WARM: u8 = b'W';
/// Record bytes per packet: well inside the default unix socket send buffer (208 KiB).
const CHUNK: usize = 32 * 1024;
/// How long the child has to start serving (PgDoorman: 10 s).
const CHILD_READY_TIMEOUT: Duration = Duration::from_secs(10);

type Sock = Arc<AsyncFd<OwnedFd>>;

async fn send(sock: &Sock, data: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<()> {
    loop {
        let mut guard = sock.writable().await?;
        match guard.try_io(|s| fds::send_packet(s.get_ref(), data, fd)) {
            Ok(r) => return r.map(|_| ()),
            Err(_would_block) => continue,
        }
    }
}

async fn recv(sock: &Sock, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    loop {
        let mut guard = sock.readable().await?;
        match guard.try_io(|s| fds::recv_packet(s.get_ref(), buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

fn io_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Validates the executable, starts the child and waits until it serves. Errors: why nothing
/// changed (this process keeps serving).
pub async fn start(ctx: &Arc<AppContext>) -> Result<Handoff, String> {
    let l = &ctx.lifecycle;
    let exe = l
        .exe
        .clone()
        .ok_or("the path of the pg_doorman executable is unknown")?;
    let config = ctx
        .config
        .source
        .clone()
        .ok_or("pg_doorman was started without a config file")?;
    let (e2, c2) = (exe.clone(), config.clone());
    let checked = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&e2)
            .arg("-t")
            .arg(&c2)
            .stdin(std::process::Stdio::null())
            .output()
    })
    .await
    .map_err(io_err)?
    .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if !checked.status.success() {
        let why = String::from_utf8_lossy(&checked.stderr);
        return Err(format!(
            "{} -t {} failed: {}",
            exe.display(),
            config.display(),
            why.trim()
        ));
    }
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .map_err(io_err)?;
    // dup() clears close-on-exec: these copies are the ones the child inherits.
    let theirs = nix::unistd::dup(&theirs).map_err(io_err)?;
    let (main_fd, web_fd, unix_fd) = {
        let fds = l.listen_fds.lock();
        let dup = |f: &Option<OwnedFd>| f.as_ref().map(nix::unistd::dup).transpose();
        (
            dup(&fds.main).map_err(io_err)?,
            dup(&fds.web).map_err(io_err)?,
            dup(&fds.unix).map_err(io_err)?,
        )
    };
    let Some(main_fd) = main_fd else {
        return Err("no listening socket to hand over".into());
    };
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(&l.args)
        .arg("--inherit-fd")
        .arg(main_fd.as_raw_fd().to_string())
        .env("PG_DOORMAN_UPGRADE_FD", theirs.as_raw_fd().to_string())
        .env(
            "PG_DOORMAN_FIRST_ID",
            ctx.client_list
                .last_id()
                .saturating_add(1 << 20)
                .to_string(),
        )
        // DAEMON (the env form of --daemon, dropped from the arguments too) would fork the
        // child away from us.
        .env_remove("DAEMON")
        .env_remove("PG_DOORMAN_WEB_FD")
        .env_remove("PG_DOORMAN_UNIX_FD")
        .env_remove("PG_DOORMAN_PID_FILE")
        .stdin(std::process::Stdio::null());
    if let Some(web) = &web_fd {
        cmd.env("PG_DOORMAN_WEB_FD", web.as_raw_fd().to_string());
    }
    if let Some(unix) = &unix_fd {
        cmd.env("PG_DOORMAN_UNIX_FD", unix.as_raw_fd().to_string());
    }
    if let Some(p) = &l.pid_file {
        cmd.env("PG_DOORMAN_PID_FILE", p);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    drop(theirs);
    drop((main_fd, web_fd, unix_fd));
    let pid = child.id();
    tracing::info!("upgrade: started {} as process {pid}", exe.display());
    let sock: Sock = Arc::new(fds::async_fd(mine).map_err(io_err)?);
    let wait = async {
        let mut buf = [0u8; 16];
        loop {
            match recv(&sock, &mut buf).await {
                Ok((0, _)) => return Err("the new process exited before it was ready".to_string()),
                Ok((_, _)) if buf[0] == READY => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let ready = tokio::time::timeout(CHILD_READY_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| Err("the new process was not ready within 10 s".into()));
    if let Err(e) = ready {
        let _ = child.kill();
        let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        return Err(e);
    }
    // Reaped whenever it ends (after this process, usually).
    tokio::task::spawn_blocking(move || child.wait());
    super::notify::main_pid(pid);
    tracing::info!("upgrade: process {pid} serves; migrating idle clients to it");
    // Before the clients: the new pools open what ours use, so the clients do not queue
    // behind pools that grow one waiter deadline at a time.
    for p in &ctx.pools.all() {
        let n = p.counts().sv_total;
        if n == 0 {
            continue;
        }
        let (user, db) = (&p.settings.user, &p.settings.database);
        let mut w = vec![WARM];
        w.extend_from_slice(&(n as u32).to_le_bytes());
        w.extend_from_slice(&(user.len() as u32).to_le_bytes());
        w.extend_from_slice(user.as_bytes());
        w.extend_from_slice(db.as_bytes());
        if let Err(e) = send(&sock, &w, None).await {
            tracing::warn!("upgrade: {e}");
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(send_clients(sock.clone(), rx));
    tokio::spawn(forward_cancels(sock, ctx.clone()));
    Ok((tx, task))
}

/// Sends each departing client (socket and record) to the child, in order.
async fn send_clients(sock: Sock, mut rx: mpsc::UnboundedReceiver<Departure>) {
    let mut sent = 0u64;
    while let Some(d) = rx.recv().await {
        let rec = d.migrant.encode();
        let first = rec.len().min(CHUNK);
        let mut packet = Vec::with_capacity(5 + first);
        packet.push(CLIENT);
        packet.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        packet.extend_from_slice(&rec[..first]);
        let mut r = send(&sock, &packet, Some(&d.fd)).await;
        for chunk in rec[first..].chunks(CHUNK) {
            if r.is_err() {
                break;
            }
            packet.clear();
            packet.push(MORE);
            packet.extend_from_slice(chunk);
            r = send(&sock, &packet, None).await;
        }
        match r {
            Ok(()) => sent += 1,
            // The client's socket closes with our copy.
            Err(e) => tracing::warn!("upgrade: client {} lost: {e}", d.migrant.peer),
        }
    }
    tracing::info!("upgrade: {sent} clients handed to the new process");
}

/// Forwards the child's cancels for clients still served here.
async fn forward_cancels(sock: Sock, ctx: Arc<AppContext>) {
    let mut buf = [0u8; 16];
    loop {
        match recv(&sock, &mut buf).await {
            Ok((9, _)) if buf[0] == CANCEL => {
                let pid = i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]);
                let secret = i32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
                crate::client::cancel::forward(&ctx.client_list, pid, secret).await;
            }
            Ok((0, _)) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Opens, in the background, as many backends for a pool as the old process was using.
fn warm(ctx: &Arc<AppContext>, p: &[u8]) {
    let n = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize;
    let ulen = u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let Some(user) = p.get(8..8 + ulen) else {
        return;
    };
    let db = &p[8 + ulen..];
    let (Ok(user), Ok(db)) = (std::str::from_utf8(user), std::str::from_utf8(db)) else {
        return;
    };
    if let Ok(pool) = ctx.pools.get(db, user) {
        tokio::spawn(async move {
            let opened = pool.replenish_to(n).await;
            tracing::debug!(pool = %pool.name(), "upgrade: opened {opened} of the {n} backends the old process used");
        });
    }
}

/// In the child: tells the parent we serve, then receives its clients until it closes the
/// socket (it exited) and serves each with `arrive` (the client layer's; passed in so this
/// module needs nothing above it). Cancels for unknown keys go back to it meanwhile.
pub async fn serve_predecessor<F, Fut>(ctx: Arc<AppContext>, fd: OwnedFd, arrive: F)
where
    F: Fn(Arc<AppContext>, Box<Migrant>, OwnedFd) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sock: Sock = match fds::async_fd(fd) {
        Ok(s) => Arc::new(s),
        Err(e) => return tracing::error!("upgrade: the parent's socket: {e}"),
    };
    let mut hello = vec![READY];
    hello.extend_from_slice(&std::process::id().to_le_bytes());
    if let Err(e) = send(&sock, &hello, None).await {
        return tracing::error!("upgrade: cannot tell the old process we are ready: {e}");
    }
    let (ctx_tx, mut cancels) = mpsc::unbounded_channel::<(i32, i32)>();
    *ctx.lifecycle.predecessor.lock() = Some(ctx_tx);
    let s2 = sock.clone();
    let writer = tokio::spawn(async move {
        while let Some((pid, secret)) = cancels.recv().await {
            let mut p = vec![CANCEL];
            p.extend_from_slice(&pid.to_le_bytes());
            p.extend_from_slice(&secret.to_le_bytes());
            if send(&s2, &p, None).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; CHUNK + 16];
    let mut partial: Option<(OwnedFd, usize, Vec<u8>)> = None;
    let mut received = 0u64;
    loop {
        let (n, fd) = match recv(&sock, &mut buf).await {
            Ok((0, _)) | Err(_) => break,
            Ok(v) => v,
        };
        let p = &buf[..n];
        match (p[0], fd) {
            (CLIENT, Some(fd)) if n >= 5 => {
                let total = u32::from_le_bytes([p[1], p[2], p[3], p[4]]) as usize;
                let mut rec = Vec::with_capacity(total.min(16 << 20));
                rec.extend_from_slice(&p[5..]);
                partial = Some((fd, total, rec));
            }
            (WARM, None) if n >= 9 => {
                warm(&ctx, &p[1..]);
                continue;
            }
            (MORE, None) => match partial.as_mut() {
                Some((_, _, rec)) => rec.extend_from_slice(&p[1..]),
                None => tracing::warn!("upgrade: continuation without a client"),
            },
            _ => {
                tracing::warn!("upgrade: unexpected packet from the old process");
                continue;
            }
        }
        if partial
            .as_ref()
            .is_some_and(|(_, total, rec)| rec.len() >= *total)
            && let Some((fd, _, rec)) = partial.take()
        {
            match Migrant::decode(&rec) {
                Ok(m) => {
                    received += 1;
                    tokio::spawn(arrive(ctx.clone(), Box::new(m), fd));
                }
                Err(e) => tracing::warn!("upgrade: client record unreadable, closing it: {e}"),
            }
        }
    }
    *ctx.lifecycle.predecessor.lock() = None;
    writer.abort();
    tracing::info!("upgrade: the old process is gone; {received} clients arrived from it");
}
