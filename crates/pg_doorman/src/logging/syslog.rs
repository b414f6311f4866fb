//! Logs to syslog (`/dev/log`, RFC 3164, facility daemon) when `syslog_prog_name` is set.

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
        let path = std::env::var("PG_DOORMAN_SYSLOG_SOCKET").unwrap_or_else(|_| "/dev/log".into());
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
