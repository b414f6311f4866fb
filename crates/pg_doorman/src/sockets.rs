//! The process's open sockets by kind, for `pg_doorman_sockets{type}` (PgDoorman's family,
//! Linux only): each `socket:[inode]` among /proc/self/fd is looked up in the kernel's tables
//! (/proc/self/net/tcp, tcp6, unix). Read at scrape time only.

use std::collections::HashSet;

/// The inodes listed in one /proc/net table (`inode` column; tcp/tcp6: 10th field, unix: 7th).
fn inodes(table: &str, column: usize) -> HashSet<u64> {
    std::fs::read_to_string(format!("/proc/self/net/{table}"))
        .map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(column)?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Counts as (type, n) for `tcp`, `tcp6`, `unix`, `unknown` (a socket in none of the tables:
/// UDP, netlink); all zero where /proc is not there.
pub fn counts() -> [(&'static str, i64); 4] {
    let mut out = [("tcp", 0), ("tcp6", 0), ("unix", 0), ("unknown", 0)];
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return out;
    };
    let mine: Vec<u64> = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    if mine.is_empty() {
        return out;
    }
    let tables = [inodes("tcp", 9), inodes("tcp6", 9), inodes("unix", 6)];
    for inode in mine {
        let i = tables.iter().position(|t| t.contains(&inode)).unwrap_or(3);
        out[i].1 += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_listening_tcp_socket_and_a_unix_pair_are_counted() {
        let before = super::counts();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let after = super::counts();
        assert!(after[0].1 > before[0].1, "{before:?} {after:?}");
        assert!(after[2].1 >= before[2].1 + 2, "{before:?} {after:?}");
        drop((l, a, b));
    }
}
