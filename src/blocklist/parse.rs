//! Reading list files line by line, and normalizing the names in them.
//!
//! Lines are read as a stream, so a huge or hostile file costs memory only for what it lists.

use std::io::BufRead;
use std::path::Path;

/// Longest line read; longer ones are reported and skipped (a domain name is at most 253 characters).
pub const MAX_LINE: usize = 4096;

/// One line that could not be used, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: u32,
    pub message: String,
}

/// Turns a list entry into the form the matcher holds: lower case, ASCII (IDN as punycode), no trailing dot.
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    normalize_into(raw, &mut out)?;
    Ok(out)
}

/// [`normalize_domain`] into a reused buffer, so that loading a big list does not allocate per line.
pub fn normalize_into(raw: &str, out: &mut String) -> Result<(), String> {
    out.clear();
    let s = raw.trim().trim_end_matches('.');
    if s.is_empty() {
        return Err("empty domain name".into());
    }
    if s.is_ascii() {
        out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        let ascii = idna::domain_to_ascii(s)
            .map_err(|_| format!("\"{}\" is not a valid IDN name", short(raw)))?;
        out.push_str(&ascii);
    }
    if out.len() > 253 {
        return Err(format!(
            "name is {} characters long (at most 253)",
            out.len()
        ));
    }
    for label in out.split('.') {
        if label.is_empty() {
            return Err(format!("\"{}\" has an empty label", short(raw)));
        }
        if label.len() > 63 {
            return Err(format!("\"{}\" has a label over 63 characters", short(raw)));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "\"{}\" contains '{}'",
                short(raw),
                c.escape_default()
            ));
        }
    }
    if out.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!("\"{}\" is an IP address, not a name", short(raw)));
    }
    // No top-level domain is all digits (RFC 3696 2): such a line is an address cut short or mistyped, and
    // as a rule it would match nothing.
    if out
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "\"{}\" ends in a number: no top-level domain is all digits (an IP address?)",
            short(raw)
        ));
    }
    Ok(())
}

/// Shortens a hostile line for an error message.
pub fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        let head: String = s.chars().take(57).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

/// Calls `each` with (line number, text) for every line of a file: BOM and CR stripped; over-long and non-UTF-8
/// lines come as `Err(message)`.
pub fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u32, Result<&str, String>),
) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let file = std::fs::File::open(path)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::with_capacity(256);
    let mut lineno: u32 = 0;
    loop {
        buf.clear();
        let n = read_line_capped(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        lineno = lineno.saturating_add(1);
        if buf.len() > MAX_LINE {
            each(lineno, Err(format!("line longer than {MAX_LINE} bytes")));
            continue;
        }
        let mut bytes = &buf[..];
        if lineno == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
            bytes = &bytes[3..];
        }
        while let [rest @ .., b'\n' | b'\r'] = bytes {
            bytes = rest;
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => each(lineno, Ok(s)),
            Err(_) => each(lineno, Err("not valid UTF-8".into())),
        }
    }
    Ok(())
}

/// Reads one line but keeps at most MAX_LINE + 1 bytes of it, so a file with no newlines cannot exhaust memory.
pub(super) fn read_line_capped(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Ok(total);
        }
        let (take, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = (MAX_LINE + 1).saturating_sub(out.len());
        out.extend_from_slice(&available[..take.min(room)]);
        r.consume(take);
        total += take;
        if found {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_dot_and_idn() {
        assert_eq!(
            normalize_domain("MsStorageAzure.COM.").as_deref(),
            Ok("msstorageazure.com")
        );
        assert_eq!(
            normalize_domain("bücher.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").as_deref(),
            Ok("xn--bcher-kva.example")
        );
    }

    #[test]
    fn rejects_what_is_not_a_domain() {
        for bad in [
            "",
            ".",
            "a..b",
            "exa mple.com",
            "http://x.com",
            "a/b",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
            "192.0.2.1",
            "1.2.3",
            "999.999.999.999",
            "c2.example.123",
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} should be rejected");
        }
        // digits elsewhere are fine: a reverse name, a numeric label, a TLD with digits and letters
        for good in ["4.3.2.1.in-addr.arpa", "123.example", "x.c2a"] {
            assert!(normalize_domain(good).is_ok(), "{good:?} should be taken");
        }
    }

    #[test]
    fn lines_strip_bom_and_crlf_and_cap_length() {
        let dir = std::env::temp_dir().join(format!("c2sink-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let p = dir.join("l.txt");
        let mut data = b"\xef\xbb\xbfa.com\r\nb.com\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend_from_slice(b"\nc.com");
        std::fs::write(&p, data).expect("write");
        let mut lines = Vec::new();
        let mut problems = Vec::new();
        for_each_line(&p, |n, s| match s {
            Ok(s) => lines.push((n, s.to_string())),
            Err(e) => problems.push((n, e)),
        })
        .expect("read");
        assert_eq!(
            lines,
            vec![
                (1, "a.com".into()),
                (2, "b.com".into()),
                (4, "c.com".into())
            ]
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, 3);
        assert!(for_each_line(&dir, |_, _| {}).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
