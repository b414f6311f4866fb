//! Process limits: every client and backend connection is a file descriptor, so the soft
//! RLIMIT_NOFILE (often 1024) is raised to the hard limit at start, as PostgreSQL and
//! PgBouncer operators expect, with a warning when it cannot cover max_connections.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft open-files limit to the hard limit; returns the soft limit now in force.
/// Failures are logged, never fatal.
pub fn raise_nofile(max_connections: usize, backend_connections: usize) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot read the open-files limit: {e}");
            return None;
        }
    };
    let mut now = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => now = hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-files limit from {soft} to {hard}: {e}")
            }
        }
    }
    // Clients + backends + listener, log and spare descriptors.
    let needed = (max_connections + backend_connections + 64) as u64;
    if now < needed {
        tracing::warn!(
            "open-files limit {now} is below max_connections ({max_connections}) + pool sizes ({backend_connections}); \
             raise it (e.g. systemd LimitNOFILE=65536) or clients will be refused when it runs out"
        );
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_reaches_hard_limit() {
        let now = raise_nofile(1, 1).unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(now, soft);
        assert_eq!(soft, hard);
    }
}
