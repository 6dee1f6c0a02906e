//! Reading list files: one domain per line, `#` comments, blank lines ignored.
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
    let s = raw.trim().trim_end_matches('.');
    if s.is_empty() {
        return Err("empty domain name".into());
    }
    let ascii = if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(s)
            .map_err(|_| format!("\"{}\" is not a valid IDN name", short(raw)))?
    };
    if ascii.len() > 253 {
        return Err(format!(
            "name is {} characters long (at most 253)",
            ascii.len()
        ));
    }
    for label in ascii.split('.') {
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
    Ok(ascii)
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

/// Calls `each` with (line number, text) for every line of a file: BOM and CR stripped, over-long lines reported.
pub fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u32, &str),
    mut problem: impl FnMut(LineProblem),
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
            problem(LineProblem {
                line: lineno,
                message: format!("line longer than {MAX_LINE} bytes"),
            });
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
            Ok(s) => each(lineno, s),
            Err(_) => problem(LineProblem {
                line: lineno,
                message: "not valid UTF-8".into(),
            }),
        }
    }
    Ok(())
}

/// Reads one line but keeps at most MAX_LINE + 1 bytes of it, so a file with no newlines cannot exhaust memory.
fn read_line_capped(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<usize> {
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

/// The domain in a plain-list line, `None` for blank and comment lines.
pub fn domain_line(line: &str) -> Option<Result<String, String>> {
    let content = match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
    .trim();
    if content.is_empty() {
        return None;
    }
    if content.split_whitespace().count() > 1 {
        return Some(Err(format!(
            "\"{}\": more than one word on a domain-list line",
            short(content)
        )));
    }
    Some(normalize_domain(content))
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
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn comments_and_blanks_are_skipped() {
        assert_eq!(domain_line("# comment"), None);
        assert_eq!(domain_line("   "), None);
        assert_eq!(
            domain_line("a.com # trailing")
                .and_then(Result::ok)
                .as_deref(),
            Some("a.com")
        );
        assert!(domain_line("a.com b.com").is_some_and(|r| r.is_err()));
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
        for_each_line(
            &p,
            |n, s| lines.push((n, s.to_string())),
            |pr| problems.push(pr),
        )
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
        assert_eq!(problems[0].line, 3);
        assert!(for_each_line(&dir, |_, _| {}, |_| {}).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
