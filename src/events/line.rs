//! JSON lines written by hand, straight into the writer's batch buffer.
//!
//! The field names and their order are part of c2sink's interface (admins grep and parse them). A generic
//! serializer plus `Display` for times and addresses cost more CPU than the whole rest of a blocked query
//! (docs/performance.md), so the hot records are formatted here; tests check the output against serde_json's.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats timestamps, remembering the date and time of the current second (it changes at most once a second).
#[derive(Default)]
pub struct LineFormat {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: [u8; 19],
}

impl LineFormat {
    /// Appends `t` as RFC 3339 UTC with `digits` (3 or 6) fractional digits, e.g. `2026-11-27T14:03:15.695Z`.
    pub fn time(&mut self, out: &mut Vec<u8>, t: SystemTime, digits: u32) {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.second != Some(since.as_secs()) {
            let whole = UNIX_EPOCH + Duration::from_secs(since.as_secs());
            let s = humantime::format_rfc3339_seconds(whole).to_string();
            if let Some(p) = s.as_bytes().get(..19) {
                self.prefix.copy_from_slice(p);
            }
            self.second = Some(since.as_secs());
        }
        out.extend_from_slice(&self.prefix);
        out.push(b'.');
        let (frac, width) = if digits >= 6 {
            (since.subsec_micros(), 6)
        } else {
            (since.subsec_millis(), 3)
        };
        push_padded(out, frac, width);
        out.push(b'Z');
    }
}

/// Appends `v` in decimal.
pub fn decimal(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Each octet's decimal digits, left-aligned, and how many there are: an address is four table reads.
static OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut o = 0;
    while o < 256 {
        let v = o as u8;
        t[o] = if v >= 100 {
            [b'0' + v / 100, b'0' + v / 10 % 10, b'0' + v % 10, 3]
        } else if v >= 10 {
            [b'0' + v / 10, b'0' + v % 10, 0, 2]
        } else {
            [b'0' + v, 0, 0, 1]
        };
        o += 1;
    }
    t
};

/// Appends `"IP","client_port":PORT`, the client fields of every line, in one copy: the address and the
/// port are written into a buffer on the stack (at most 37 bytes), not pushed onto `out` byte by byte.
pub fn client_ip_and_port(out: &mut Vec<u8>, a: SocketAddr) {
    const KEY: &[u8] = b",\"client_port\":";
    let IpAddr::V4(v4) = a.ip().to_canonical() else {
        ip(out, a.ip());
        out.extend_from_slice(KEY);
        decimal(out, u64::from(a.port()));
        return;
    };
    let mut buf = [0u8; 40];
    buf[0] = b'"';
    let mut n = 1;
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        let [d0, d1, d2, len] = OCTETS[usize::from(o)];
        buf[n..n + 3].copy_from_slice(&[d0, d1, d2]);
        n += usize::from(len);
    }
    buf[n] = b'"';
    n += 1;
    buf[n..n + KEY.len()].copy_from_slice(KEY);
    n += KEY.len();
    let port = a.port();
    let digits = match port {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    };
    let mut v = port;
    for d in buf[n..n + digits].iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    n += digits;
    out.extend_from_slice(&buf[..n]);
}

/// Appends `v` in decimal, zero-padded to `width` digits.
fn push_padded(out: &mut Vec<u8>, v: u32, width: u32) {
    let mut div = 10u32.pow(width.saturating_sub(1));
    while div > 0 {
        out.push(b'0' + ((v / div) % 10) as u8);
        div /= 10;
    }
}

/// Appends an address as a JSON string, IPv4-mapped IPv6 shown as IPv4 (as clients know themselves).
fn ip(out: &mut Vec<u8>, a: IpAddr) {
    let _ = write!(out, "\"{}\"", a.to_canonical());
}

/// Appends `s` as a JSON string, or `null`.
pub fn opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends any `Display` value as a JSON string (for the rare, short fields: MACs, subnets); out of line, as
/// the formatting machinery is large and most lines have neither.
#[inline(never)]
pub fn display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    let start = out.len();
    out.push(b'"');
    let _ = write!(out, "{v}");
    if needs_escape(&out[start + 1..]) {
        let s = String::from_utf8_lossy(&out[start + 1..]).into_owned();
        out.truncate(start);
        string(out, &s);
    } else {
        out.push(b'"');
    }
}

/// Whether any byte of `s` is a control character, `"` or `\`; eight bytes at a time (names are short ASCII,
/// and this runs for every string of every line).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is zero.
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let any = |x: u64| {
        // A byte below 0x20 (with its high bit clear) borrows; bytes >= 0x80 are excluded by `!x`.
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
    };
    let mut chunks = s.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        if any(u64::from_le_bytes(w)) {
            return true;
        }
    }
    // The tail, padded with a byte that never needs escaping.
    let tail = chunks.remainder();
    let mut w = [b'a'; 8];
    w[..tail.len()].copy_from_slice(tail);
    any(u64::from_le_bytes(w))
}

/// Appends `s` as a JSON string, escaped as RFC 8259 requires (the same escapes serde_json writes).
pub fn string(out: &mut Vec<u8>, s: &str) {
    prefixed_string(out, "", s);
}

/// Appends `prefix` followed by `s` as one JSON string; `prefix` is fixed text that needs no escaping
/// (`*.` of a wildcard rule), so the two need not be joined first.
pub fn prefixed_string(out: &mut Vec<u8>, prefix: &'static str, s: &str) {
    debug_assert!(!needs_escape(prefix.as_bytes()));
    out.push(b'"');
    out.extend_from_slice(prefix.as_bytes());
    let bytes = s.as_bytes();
    if needs_escape(bytes) {
        escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Appends `bytes` escaped; out of line, so that the common case (nothing to escape) stays a few
/// instructions in the hot code of every line.
#[cold]
#[inline(never)]
fn escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut plain_from = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        } else {
            out.extend_from_slice(short);
        }
        plain_from = i + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_exactly_like_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "c2.example.com".into(),
            "quote\"back\\slash".into(),
            "tab\tnl\ncr\r\u{8}\u{c}".into(),
            "\u{0}\u{1}\u{1f}\u{7f}".into(),
            "bücher.de ✓ 日本".into(),
        ];
        // Every byte that may need escaping, at every position of a 17-byte string (chunk edges included).
        for b in (0u8..0x80).filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\' || *b == 0x7f) {
            for pos in 0..17 {
                let mut s = vec![b'x'; 17];
                s[pos] = b;
                cases.push(String::from_utf8(s).unwrap());
            }
        }
        for s in &cases {
            assert_eq!(json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn times_match_humantime_to_the_digit() {
        let mut f = LineFormat::default();
        for nanos in [
            0u64,
            999_999_999,
            1_764_253_395_695_123_456,
            1_764_253_396_000_001_000,
        ] {
            let t = UNIX_EPOCH + Duration::from_nanos(nanos);
            let mut out = Vec::new();
            f.time(&mut out, t, 3);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                humantime::format_rfc3339_millis(t).to_string()
            );
            let mut out = Vec::new();
            f.time(&mut out, t, 6);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                humantime::format_rfc3339_micros(t).to_string()
            );
        }
    }

    #[test]
    fn addresses_and_numbers() {
        let mut out = Vec::new();
        ip(&mut out, "10.0.0.255".parse().unwrap());
        ip(&mut out, "::ffff:192.168.1.2".parse().unwrap());
        ip(&mut out, "2001:db8::1".parse().unwrap());
        decimal(&mut out, 0);
        decimal(&mut out, u64::MAX);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("\"10.0.0.255\"\"192.168.1.2\"\"2001:db8::1\"0{}", u64::MAX)
        );
    }

    #[test]
    fn client_fields_match_display_for_every_octet_and_port_width() {
        let ports = [0u16, 9, 10, 99, 100, 999, 1000, 9999, 10000, 65535];
        for o in 0..=255u8 {
            let v4 = std::net::Ipv4Addr::new(o, o / 3, 255 - o, o % 10);
            let port = ports[usize::from(o) % ports.len()];
            for a in [
                SocketAddr::new(v4.into(), port),
                SocketAddr::new(v4.to_ipv6_mapped().into(), port),
            ] {
                let mut out = b"x".to_vec();
                client_ip_and_port(&mut out, a);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    format!("x\"{v4}\",\"client_port\":{port}")
                );
            }
        }
        let v6: SocketAddr = "[2001:db8::1]:5353".parse().unwrap();
        let mut out = Vec::new();
        client_ip_and_port(&mut out, v6);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"2001:db8::1\",\"client_port\":5353"
        );
    }
}
