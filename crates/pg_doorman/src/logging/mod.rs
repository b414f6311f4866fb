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

/// A duration as PgDoorman prints it: `4m30s`, `2h5m`, `1d3h`, `850ms` (units are added while
/// the text is shorter than 6 characters). Written straight into the log line (no String per
/// disconnection).
pub fn human(d: std::time::Duration) -> Human {
    Human(d)
}

/// See [`human`].
#[derive(Debug, Clone, Copy)]
pub struct Human(std::time::Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0.as_secs();
        if s == 0 {
            return write!(f, "{}ms", self.0.as_millis());
        }
        let (days, hours, mins, secs) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let mut len = 0;
        for (v, unit) in [(days, "d"), (hours, "h"), (mins, "m"), (secs, "s")] {
            if v > 0 && len < 6 {
                write!(f, "{v}{unit}")?;
                len += v.checked_ilog10().unwrap_or(0) as usize + 2;
            }
        }
        Ok(())
    }
}

/// A client's address in a log line: IPv4 written in one piece (the std formatter pads each
/// octet through the general integer path; this is in every connection's log line).
#[derive(Debug, Clone, Copy)]
pub struct Addr(pub std::net::SocketAddr);

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let std::net::SocketAddr::V4(a) = self.0 else {
            return std::fmt::Display::fmt(&self.0, f);
        };
        // "255.255.255.255:65535" is 21 bytes.
        let mut out = [0u8; 21];
        let mut n = 0;
        let mut put = |s: &str| {
            out[n..n + s.len()].copy_from_slice(s.as_bytes());
            n += s.len();
        };
        for (i, octet) in a.ip().octets().into_iter().enumerate() {
            if i > 0 {
                put(".");
            }
            put(itoa::Buffer::new().format(octet));
        }
        put(":");
        put(itoa::Buffer::new().format(a.port()));
        f.write_str(std::str::from_utf8(&out[..n]).unwrap_or("?"))
    }
}

pub mod syslog;
pub mod text;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn human_s(d: Duration) -> String {
        human(d).to_string()
    }

    #[test]
    fn addresses_print_as_std_does() {
        for a in [
            "127.0.0.1:5432",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:6432",
        ] {
            let addr: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(Addr(addr).to_string(), a);
            assert_eq!(Addr(addr).to_string(), addr.to_string());
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_s(Duration::from_secs(270)), "4m30s");
        assert_eq!(human_s(Duration::from_secs(7500)), "2h5m");
        assert_eq!(human_s(Duration::from_secs(86_400 + 3 * 3600)), "1d3h");
        assert_eq!(human_s(Duration::from_millis(850)), "850ms");
        assert_eq!(human_s(Duration::from_secs(5)), "5s");
        assert_eq!(human_s(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(
            human_s(Duration::from_secs(86_400 + 3 * 3600 + 12)),
            "1d3h12s"
        );
        assert_eq!(
            human_s(Duration::from_secs(12 * 86_400 + 3 * 3600 + 600)),
            "12d3h10m"
        );
    }
}
