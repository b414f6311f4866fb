//! Runtime control of the log filter (admin `SET log_level`, `SHOW LOG_LEVEL`). The binary
//! installs a setter once at start; the library only calls it.

use parking_lot::Mutex;
use std::sync::OnceLock;

type Setter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Control {
    set: Setter,
    current: Mutex<String>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// Installs the filter setter (env-filter syntax, e.g. `warn,pg_doorman::pool=debug`) with the
/// filter in force at start.
pub fn install(initial: &str, set: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) {
    let _ = CONTROL.set(Control {
        set: Box::new(set),
        current: Mutex::new(initial.to_string()),
    });
}

/// The filter in force ("info" when logging was set up without control, as in tests).
pub fn current() -> String {
    CONTROL
        .get()
        .map(|c| c.current.lock().clone())
        .unwrap_or_else(|| "info".into())
}

/// Replaces the filter at once (not persisted). Errors: the filter does not parse, or no
/// control is installed.
pub fn set(filter: &str) -> Result<(), String> {
    let c = CONTROL
        .get()
        .ok_or_else(|| "log level control is not available".to_string())?;
    (c.set)(filter)?;
    *c.current.lock() = filter.to_string();
    Ok(())
}

/// A duration as PgDoorman prints it: `4m30s`, `2h5m`, `1d3h`, `850ms`.
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (v, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (secs, "s")] {
        if v > 0 && out.len() < 6 {
            out.push_str(&format!("{v}{unit}"));
        }
    }
    out
}

/// Logs to syslog (`/dev/log`, RFC 3164, facility daemon) when `syslog_prog_name` is set.
/// `PG_DOORMAN_SYSLOG_SOCKET` overrides the socket path (tests).
pub mod syslog {
    use std::io::Write;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Arc;
    use tracing::Level;

    /// Makes one writer per event; each sends one datagram when dropped.
    #[derive(Clone)]
    pub struct Syslog {
        sock: Arc<UnixDatagram>,
        prefix: Arc<str>,
    }

    impl Syslog {
        /// Connects to the syslog socket. Errors when it is not there.
        pub fn connect(prog: &str) -> std::io::Result<Self> {
            let path =
                std::env::var("PG_DOORMAN_SYSLOG_SOCKET").unwrap_or_else(|_| "/dev/log".into());
            let sock = UnixDatagram::unbound()?;
            sock.connect(path)?;
            Ok(Syslog {
                sock: Arc::new(sock),
                prefix: format!("{prog}[{}]: ", std::process::id()).into(),
            })
        }
    }

    /// One event being written.
    pub struct Event {
        sock: Arc<UnixDatagram>,
        buf: Vec<u8>,
    }

    impl Write for Event {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.buf.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Event {
        fn drop(&mut self) {
            while self.buf.last() == Some(&b'\n') {
                self.buf.pop();
            }
            let _ = self.sock.send(&self.buf);
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Syslog {
        type Writer = Event;

        fn make_writer(&'a self) -> Event {
            self.event(6)
        }

        fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Event {
            let severity = match *meta.level() {
                Level::ERROR => 3,
                Level::WARN => 4,
                Level::INFO => 6,
                _ => 7,
            };
            self.event(severity)
        }
    }

    impl Syslog {
        fn event(&self, severity: u8) -> Event {
            // Facility daemon (3).
            let mut buf = format!("<{}>", 3 * 8 + severity).into_bytes();
            buf.extend_from_slice(self.prefix.as_bytes());
            Event {
                sock: self.sock.clone(),
                buf,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(270)), "4m30s");
        assert_eq!(human(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human(Duration::from_secs(86_400 + 3 * 3600)), "1d3h");
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_secs(5)), "5s");
    }
}
