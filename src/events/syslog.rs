//! Block events to syslog (RFC 5424), for admins who ship logs to a SIEM: the local socket (`/dev/log`) or
//! UDP to a collector. One datagram per event; a missing or slow collector costs events, never DNS.

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// PRI of an event: facility local0 (16), severity warning (4).
const PRI: u8 = 16 * 8 + 4;

/// Where syslog messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    Unix(PathBuf),
    Udp(SocketAddr),
}

impl SyslogTarget {
    /// Reads `unix:///dev/log`, a bare socket path, or `udp://HOST:PORT`.
    pub fn parse(s: &str) -> Result<SyslogTarget, String> {
        if let Some(a) = s.strip_prefix("udp://") {
            a.parse()
                .map(SyslogTarget::Udp)
                .map_err(|_| format!("\"{s}\": expected udp://IP:PORT"))
        } else if let Some(p) = s.strip_prefix("unix://") {
            Ok(SyslogTarget::Unix(PathBuf::from(p)))
        } else if s.starts_with('/') {
            Ok(SyslogTarget::Unix(PathBuf::from(s)))
        } else {
            Err(format!(
                "\"{s}\": expected \"unix:///dev/log\" or \"udp://IP:PORT\""
            ))
        }
    }
}

impl std::fmt::Display for SyslogTarget {
    /// As the config writes it, so that a failure names the target the admin configured.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyslogTarget::Unix(p) => write!(f, "unix://{}", p.display()),
            SyslogTarget::Udp(a) => write!(f, "udp://{a}"),
        }
    }
}

enum Sock {
    Unix(UnixDatagram),
    Udp(UdpSocket),
}

/// A connected syslog sender.
pub struct Syslog {
    target: SyslogTarget,
    sock: Option<Sock>,
    hostname: String,
    pid: u32,
}

impl Syslog {
    /// Prepares the sender; the socket is (re)connected on first use and after errors.
    pub fn new(target: SyslogTarget) -> Syslog {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty() && h.is_ascii() && !h.contains(' '))
            .unwrap_or_else(|| "-".into());
        Syslog {
            target,
            sock: None,
            hostname,
            pid: std::process::id(),
        }
    }

    /// Where messages go, for log lines about failures.
    pub fn target(&self) -> &SyslogTarget {
        &self.target
    }

    /// Sends one message: `<PRI>1 TIMESTAMP HOST c2sink PID MSGID - MSG`.
    pub fn send(&mut self, ts: &str, msgid: &str, msg: &[u8]) -> std::io::Result<()> {
        let mut d = format!(
            "<{PRI}>1 {ts} {} c2sink {} {msgid} - ",
            self.hostname, self.pid
        )
        .into_bytes();
        d.extend_from_slice(msg);
        let r = match self.connect()? {
            Sock::Unix(s) => s.send(&d),
            Sock::Udp(s) => s.send(&d),
        };
        if r.is_err() {
            self.sock = None;
        }
        r.map(|_| ())
    }

    fn connect(&mut self) -> std::io::Result<&Sock> {
        if self.sock.is_none() {
            let s = match &self.target {
                SyslogTarget::Unix(p) => {
                    let s = UnixDatagram::unbound()?;
                    s.connect(p)?;
                    s.set_nonblocking(true)?;
                    Sock::Unix(s)
                }
                SyslogTarget::Udp(a) => {
                    let local: SocketAddr = if a.is_ipv4() {
                        "0.0.0.0:0".parse().map_err(std::io::Error::other)?
                    } else {
                        "[::]:0".parse().map_err(std::io::Error::other)?
                    };
                    let s = UdpSocket::bind(local)?;
                    s.connect(a)?;
                    s.set_nonblocking(true)?;
                    Sock::Udp(s)
                }
            };
            self.sock = Some(s);
        }
        self.sock
            .as_ref()
            .ok_or_else(|| std::io::Error::other("syslog socket not connected"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            SyslogTarget::parse("udp://127.0.0.1:514"),
            Ok(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(
            SyslogTarget::parse("unix:///dev/log"),
            Ok(SyslogTarget::Unix("/dev/log".into()))
        );
        assert!(SyslogTarget::parse("tcp://1.2.3.4:5").is_err());
        assert!(SyslogTarget::parse("udp://localhost").is_err());
    }

    #[test]
    fn sends_to_a_local_unix_socket() {
        let path = std::env::temp_dir().join(format!("c2sink-devlog-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog::new(SyslogTarget::Unix(path.clone()));
        s.send("2026-01-01T00:00:00.000Z", "block", b"{}").unwrap();
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        assert!(
            std::str::from_utf8(&buf[..n])
                .unwrap()
                .ends_with(" block - {}")
        );
        drop(rx);
        let _ = std::fs::remove_file(&path);
        // The reader went away: an error, not a hang or a panic.
        assert!(s.send("2026-01-01T00:00:00.000Z", "block", b"{}").is_err());
    }

    #[test]
    fn sends_rfc5424_over_udp() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut s = Syslog::new(SyslogTarget::Udp(rx.local_addr().unwrap()));
        s.send("2026-01-01T00:00:00.000Z", "block", b"{\"a\":1}")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let m = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(m.starts_with("<132>1 2026-01-01T00:00:00.000Z "), "{m}");
        assert!(
            m.ends_with(" c2sink ".to_string().as_str()) || m.contains(" c2sink "),
            "{m}"
        );
        assert!(m.ends_with(" block - {\"a\":1}"), "{m}");
    }
}
