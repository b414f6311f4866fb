//! Typed config units: [`Millis`] durations and [`ByteSize`] sizes, as PgDoorman spells them.
//!
//! Durations: a bare number is milliseconds; strings take a unit `us`, `ms`, `s`, `m`, `h`, `d`
//! (`"100us"`, `"0.1ms"`, `"3s"`, `"5m"`). Sizes: a bare number is bytes; strings take `B`, `KB`,
//! `MB`, `GB` (1024-based, also spelled `KiB`...).

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A duration from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub Duration);

/// A byte count from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl Millis {
    /// From whole milliseconds.
    pub const fn ms(ms: u64) -> Self {
        Millis(Duration::from_millis(ms))
    }
    /// From whole seconds.
    pub const fn secs(s: u64) -> Self {
        Millis(Duration::from_secs(s))
    }
    /// True for a zero duration ("disabled" for timeouts that allow it).
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (s[..at].trim(), s[at..].trim())
}

/// Parses a duration string; errors name the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_unit(s);
    let value: f64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?}: expected e.g. 500, \"100us\", \"3s\", \"5m\"")
    })?;
    let scale_us = match unit {
        "us" => 1.0,
        "" | "ms" => 1e3,
        "s" => 1e6,
        "m" | "min" => 60e6,
        "h" => 3_600e6,
        "d" => 86_400e6,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use us, ms, s, m, h or d"
            ));
        }
    };
    let us = value * scale_us;
    if !us.is_finite() || !(0.0..=1e15).contains(&us) {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_micros(us.round() as u64))
}

/// Parses a size string; errors name the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 1048576, \"256KB\", \"1MB\""))?;
    let scale = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1u64,
        "KB" | "KIB" | "K" => 1 << 10,
        "MB" | "MIB" | "M" => 1 << 20,
        "GB" | "GIB" | "G" => 1 << 30,
        _ => return Err(format!("invalid size unit in {s:?}: use B, KB, MB or GB")),
    };
    let bytes = value * scale as f64;
    if !bytes.is_finite() || !(0.0..=1e18).contains(&bytes) {
        return Err(format!("size {s:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

struct UnitVisitor<T>(fn(&str) -> Result<T, String>, fn(u64) -> T, &'static str);

impl<T> Visitor<'_> for UnitVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.2)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok((self.1)(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        u64::try_from(v)
            .map(self.1)
            .map_err(|_| E::custom(format!("negative value {v} is not allowed")))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.0)(&v.to_string()).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
}

impl<'de> serde::Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            |s| parse_duration(s).map(Millis),
            Millis::ms,
            "a duration: milliseconds or a string like \"3s\"",
        ))
    }
}

/// `deserialize_with` for the durations PgDoorman counts in seconds (`tcp_user_timeout`): a
/// bare number, or a string without a unit, is seconds; strings with a unit read as for
/// [`Millis`] ("500ms", "2m").
pub fn seconds_default<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
    d.deserialize_any(UnitVisitor(
        |s| {
            let (num, unit) = split_unit(s);
            if unit.is_empty() {
                parse_duration(&format!("{num}s")).map(Millis)
            } else {
                parse_duration(s).map(Millis)
            }
        },
        Millis::secs,
        "a duration: seconds or a string like \"30s\"",
    ))
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UnitVisitor(
            |s| parse_size(s).map(ByteSize),
            ByteSize,
            "a size: bytes or a string like \"1MB\"",
        ))
    }
}

impl Millis {
    /// The duration in the largest unit that spells it exactly (`"3s"`, `"5m"`, `"500ms"`,
    /// `"0"`): how docs and generated configs write it.
    pub fn human(&self) -> String {
        let us = self.0.as_micros();
        if us == 0 {
            return "0".into();
        }
        for (unit, size) in [
            ("d", 86_400_000_000u128),
            ("h", 3_600_000_000),
            ("m", 60_000_000),
            ("s", 1_000_000),
            ("ms", 1_000),
        ] {
            if us.is_multiple_of(size) {
                return format!("{}{unit}", us / size);
            }
        }
        format!("{us}us")
    }
}

impl ByteSize {
    /// The size in the largest unit that spells it exactly (`"256MB"`, `"16KB"`, `"100"`).
    pub fn human(&self) -> String {
        for (unit, size) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] {
            if self.0 > 0 && self.0.is_multiple_of(size) {
                return format!("{}{unit}", self.0 / size);
            }
        }
        self.0.to_string()
    }
}

/// Written as [`Millis::human`] (reads back the same).
impl serde::Serialize for Millis {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.human())
    }
}

/// Written as [`ByteSize::human`] (reads back the same).
impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.human())
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0.as_micros();
        if !us.is_multiple_of(1000) {
            write!(f, "{us}us")
        } else {
            write!(f, "{}ms", us / 1000)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("0.1ms").unwrap(), Duration::from_micros(100));
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("250").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256KB").unwrap(), 262_144);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("123").unwrap(), 123);
        assert!(parse_size("1XB").is_err());
    }
}
