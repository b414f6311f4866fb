//! The text log line: `2026-12-04T18:52:58.554559Z  INFO message key=value`, the layout of
//! tracing-subscriber's default format, written with less work per line. Connection logging is
//! on by default and a churning client logs two lines per connection, so the line formatter is
//! on the login path: tracing-subscriber's default escapes every message character by
//! character and formats the date from scratch (about 7,000 instructions per line here); this
//! one copies clean text in runs and keeps the date part of the timestamp for the second.
//!
//! Terminal control characters in a message or field (ESC, BEL, BS, FF, DEL and the C1 range)
//! are escaped as tracing-subscriber does (`\x1b`, `\u{9b}`), so a user name in a startup
//! packet cannot drive the operator's terminal.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for `--log-format text` and syslog.
#[derive(Debug, Clone, Copy)]
pub struct TextFormat {
    /// Colours (level, dimmed timestamp, italic field names) for a terminal.
    pub ansi: bool,
    /// A timestamp first (syslog adds its own).
    pub time: bool,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.time {
            if self.ansi {
                w.write_str("\x1b[2m")?;
            }
            write_timestamp(&mut w, SystemTime::now())?;
            w.write_str(if self.ansi { "\x1b[0m " } else { " " })?;
        }
        let level = *event.metadata().level();
        let (name, colour) = match level {
            Level::ERROR => ("ERROR", "\x1b[31m"),
            Level::WARN => (" WARN", "\x1b[33m"),
            Level::INFO => (" INFO", "\x1b[32m"),
            Level::DEBUG => ("DEBUG", "\x1b[34m"),
            Level::TRACE => ("TRACE", "\x1b[35m"),
        };
        if self.ansi {
            write!(w, "{colour}{name}\x1b[0m ")?;
        } else {
            w.write_str(name)?;
            w.write_char(' ')?;
        }
        let mut fields = Fields {
            w: &mut w,
            ansi: self.ansi,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_char('\n')
    }
}

/// Writes an event's fields: the message bare, the others as ` name=value`.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    ansi: bool,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// Writes one field; `value`'s Debug is what is shown (for a message and for `%` values
    /// that is their Display; a `&str` field shows quoted, as in tracing-subscriber).
    fn field(&mut self, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
        if !self.first {
            self.w.write_char(' ')?;
        }
        self.first = false;
        if field.name() != "message" {
            let name = field.name().strip_prefix("r#").unwrap_or(field.name());
            if self.ansi {
                write!(self.w, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
            } else {
                self.w.write_str(name)?;
                self.w.write_char('=')?;
            }
        }
        write!(Escaping(&mut *self.w), "{value:?}")
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() {
            self.result = if field.name() == "message" {
                self.field(field, &format_args!("{value}"))
            } else {
                self.field(field, &value)
            };
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.result = self.field(field, value);
        }
    }
}

/// Passes text through, escaping terminal control characters. Clean text (the usual case)
/// goes out in one piece after a byte scan.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // 0xC2 leads the UTF-8 form of U+0080..U+009F (C1 controls).
        if !s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
            return self.0.write_str(s);
        }
        for ch in s.chars() {
            match ch {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    write!(self.0, "\\x{:02x}", ch as u32)?
                }
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, [u8; 19])> = const { RefCell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds), as tracing-subscriber's SystemTime.
fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let date = SECOND.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, date_time(secs));
        }
        c.1
    });
    // Built from ASCII digits and separators only.
    w.write_str(std::str::from_utf8(&date).unwrap_or("????-??-??T??:??:??"))?;
    let mut frac = *b".000000Z";
    let mut us = since.subsec_micros();
    for d in frac[1..7].iter_mut().rev() {
        *d = b'0' + (us % 10) as u8;
        us /= 10;
    }
    w.write_str(std::str::from_utf8(&frac).unwrap_or(".??????Z"))
}

/// `YYYY-MM-DDTHH:MM:SS` for seconds since the Unix epoch (UTC; proleptic Gregorian, the
/// days-to-civil algorithm of H. Hinnant's "chrono-Compatible Low-Level Date Algorithms").
fn date_time(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u64);
    put(5, 2, month as u64);
    put(8, 2, day as u64);
    put(11, 2, rem / 3600);
    put(14, 2, rem / 60 % 60);
    put(17, 2, rem % 60);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(secs: u64, micros: u64) -> String {
        let mut s = String::new();
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        write_timestamp(&mut s, t).unwrap();
        s
    }

    #[test]
    fn timestamps_match_the_calendar() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2000-02-29 (a leap day in a century leap year), 2100-03-01 (2100 is not leap).
        assert_eq!(stamp(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(stamp(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(stamp(1_796_410_378, 554_559), "2026-12-04T18:52:58.554559Z");
        // Same second twice on one thread (the cached date), then the next second.
        assert_eq!(stamp(1_796_410_378, 1), "2026-12-04T18:52:58.000001Z");
        assert_eq!(stamp(1_796_410_379, 999_999), "2026-12-04T18:52:59.999999Z");
        assert_eq!(stamp(1_798_761_599, 0), "2026-12-31T23:59:59.000000Z");
    }

    /// Runs `f` under a subscriber with this format and returns what it wrote.
    fn captured(ansi: bool, f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(TextFormat { ansi, time: false })
            .with_writer(move || buf.clone())
            .with_max_level(Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_have_level_message_and_fields() {
        let user = "bench";
        let out = captured(false, || {
            tracing::info!("[{user}@db #c1] client connected");
            tracing::warn!(pool = %"a/b", server = 3, "server connection failed");
            tracing::debug!(name = "quoted", "x");
            tracing::error!("e");
        });
        assert_eq!(
            out,
            " INFO [bench@db #c1] client connected\n \
             WARN server connection failed pool=a/b server=3\n\
             DEBUG x name=\"quoted\"\nERROR e\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        let user = "evil\x1b[2J\x07\u{9b}31m";
        let out = captured(false, || {
            tracing::warn!(user = %user, "client {user}: refused");
        });
        assert_eq!(
            out,
            " WARN client evil\\x1b[2J\\x07\\u{9b}31m: refused user=evil\\x1b[2J\\x07\\u{9b}31m\n"
        );
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn colours_only_when_asked() {
        let out = captured(true, || tracing::info!(pool = 1, "hi"));
        assert_eq!(
            out,
            "\x1b[32m INFO\x1b[0m hi \x1b[3mpool\x1b[0m\x1b[2m=\x1b[0m1\n"
        );
    }
}
