//! Alerts: tell the admin about a new infected machine within minutes, not at the next log review.
//!
//! The event writer thread shows every block event to [`Alerter::on_block`], which keeps the first block of
//! each (client, list) pair per window, applies a per-minute budget and hands the alert to a bounded queue.
//! One sender thread delivers it (webhook POST with retries and doubling backoff, and/or syslog). The query
//! path never sees any of this: a dead webhook costs alerts (counted, logged once), never answers.
//!
//! The webhook client is ureq with rustls (already used for list feeds), so `https://` incoming webhooks of
//! Slack, Teams and the like work directly; `[alerts] ca_file` trusts a private CA for an in-house relay.

use crate::config::Config;
use crate::events::{BlockEvent, Syslog, SyslogTarget, Tap};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

/// Alerts waiting for delivery before new ones are dropped.
const QUEUE: usize = 256;
/// First retry delay; doubles each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a webhook lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// The URL as configured, for the HTTP client.
    pub url: String,
    /// Host and port, for log lines.
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl WebhookUrl {
    /// Reads `http[s]://HOST[:PORT][/PATH]`.
    pub fn parse(s: &str) -> Result<WebhookUrl, String> {
        let (rest, default_port) = if let Some(r) = s.strip_prefix("https://") {
            (r, 443)
        } else if let Some(r) = s.strip_prefix("http://") {
            (r, 80)
        } else {
            return Err(format!("\"{s}\": expected http(s)://HOST[:PORT]/PATH"));
        };
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or_else(|| format!("\"{s}\": unclosed ["))?;
            (h, p.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("\"{s}\": bad port"))?,
            None => default_port,
        };
        if host.is_empty() || path.contains([' ', '\r', '\n']) {
            return Err(format!("\"{s}\": expected http(s)://HOST[:PORT]/PATH"));
        }
        Ok(WebhookUrl {
            url: s.to_string(),
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// The JSON body of an alert; `text` is what Slack/Teams-style webhooks display.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub text: String,
    pub kind: &'static str,
    pub ts: String,
    pub client_ip: String,
    pub client_mac: Option<String>,
    pub client_hostname: Option<String>,
    /// The query's EDNS Client Subnet, as in its block event: behind a router, a full-length one is the
    /// machine's address (`client_ip` is the router's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_subnet: Option<String>,
    pub qname: String,
    pub list: String,
}

/// Counters of alerting.
#[derive(Default, Debug)]
pub struct AlertStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Decides which block events become alerts (runs on the event writer thread).
pub struct Alerter {
    seen: HashMap<(String, Arc<str>), Instant>,
    window: Duration,
    tokens: f64,
    per_minute: f64,
    refilled: Instant,
    tx: SyncSender<Alert>,
    stats: Arc<AlertStats>,
}

impl Alerter {
    /// Turns the first block of a (client, list) pair per window into an alert, within the per-minute budget.
    pub fn on_block(&mut self, ev: &BlockEvent) {
        let ip = ev.client.ip().to_canonical().to_string();
        // Behind a router, the machine's address is the one of a full-length client subnet: keyed by the
        // router's, every machine behind it would be one, alerted about once.
        let behind = ev.who.behind().map(|a| a.to_string());
        let key = ev
            .who
            .mac
            .map(|m| m.to_string())
            .or_else(|| ev.who.hostname.as_deref().map(String::from))
            .or_else(|| behind.clone())
            .unwrap_or_else(|| ip.clone());
        let now = Instant::now();
        let pair = (key, ev.list.clone());
        if self
            .seen
            .get(&pair)
            .is_some_and(|t| now.duration_since(*t) < self.window)
        {
            return;
        }
        self.tokens = (self.tokens
            + now.duration_since(self.refilled).as_secs_f64() * self.per_minute / 60.0)
            .min(self.per_minute);
        self.refilled = now;
        if self.tokens < 1.0 {
            // Over budget: not marked as seen, so its next block (beacons repeat) tries again.
            return;
        }
        self.tokens -= 1.0;
        if self.seen.len() > 100_000 {
            let window = self.window;
            self.seen.retain(|_, t| now.duration_since(*t) < window);
        }
        self.seen.insert(pair, now);
        let addr = match &behind {
            Some(b) => format!("{b} via {ip}"),
            None => ip.clone(),
        };
        let host = ev.who.hostname.as_deref().map(markup_safe);
        let who = match (&host, ev.who.mac) {
            (Some(h), Some(m)) => format!("{h} ({m}, {addr})"),
            (Some(h), None) => format!("{h} ({addr})"),
            (None, Some(m)) => format!("{m} ({addr})"),
            (None, None) => addr,
        };
        let ts = humantime::format_rfc3339_seconds(ev.time).to_string();
        let alert = Alert {
            text: format!(
                "c2sink: {who} asked for {} (list {}) at {ts}: likely infected",
                markup_safe(&ev.qname),
                markup_safe(&ev.list)
            ),
            kind: "alert",
            ts,
            client_ip: ip,
            client_mac: ev.who.mac.map(|m| m.to_string()),
            client_hostname: ev.who.hostname.as_deref().map(String::from),
            client_subnet: ev.who.subnet.map(|(a, p)| format!("{a}/{p}")),
            qname: ev.qname.clone(),
            list: ev.list.to_string(),
        };
        if self.tx.try_send(alert).is_err()
            && self.stats.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::error!("alert queue full: alerts are being dropped (counted)");
        }
    }
}

/// A name the client chose (the query name, a DHCP hostname) made plain text in `text`, which Slack and Teams
/// read as markup: `&`, `<`, `>` as the entities Slack requires (else `<!channel>` pings everyone and
/// `<https://x|label>` is a link), and `[`, `]` escaped for Teams' Markdown (else `[label](https://x)` is a
/// link). The alert's own fields (`qname`, `client_hostname`) keep the names as they were.
pub fn markup_safe(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            c => out.push(c),
        }
    }
    out
}

/// Starts the sender when the config asks for alerts; returns the hook for the event writer.
pub fn start(cfg: &Config) -> anyhow::Result<Option<(Tap<BlockEvent>, Arc<AlertStats>)>> {
    let a = &cfg.alerts;
    if a.webhook.is_none() && a.syslog.is_none() {
        return Ok(None);
    }
    let webhook = a
        .webhook
        .as_deref()
        .map(WebhookUrl::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let syslog = a
        .syslog
        .as_deref()
        .map(SyslogTarget::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(Syslog::new);
    let (tx, rx) = sync_channel(QUEUE);
    let stats = Arc::new(AlertStats::default());
    let mut sender = Sender {
        webhook,
        agent: client(Duration::from_millis(a.timeout_ms), &a.ca_certs),
        syslog,
        retries: a.retries,
        stats: stats.clone(),
        failing: false,
    };
    std::thread::Builder::new()
        .name("c2sink-alerts".into())
        .spawn(move || {
            crate::sched::background_thread();
            sender.run(rx)
        })?;
    let per_minute = f64::from(a.max_per_minute);
    let mut alerter = Alerter {
        seen: HashMap::new(),
        window: humantime::parse_duration(&a.window)?,
        tokens: per_minute,
        per_minute,
        refilled: Instant::now(),
        tx,
        stats: stats.clone(),
    };
    Ok(Some((Box::new(move |ev| alerter.on_block(ev)), stats)))
}

struct Sender {
    webhook: Option<WebhookUrl>,
    agent: ureq::Agent,
    syslog: Option<Syslog>,
    retries: u32,
    stats: Arc<AlertStats>,
    failing: bool,
}

impl Sender {
    fn run(&mut self, rx: Receiver<Alert>) {
        while let Ok(alert) = rx.recv() {
            let body = serde_json::to_vec(&alert).unwrap_or_default();
            if let Some(s) = self.syslog.as_mut()
                && let Err(e) = s.send(&alert.ts, "alert", &body)
            {
                tracing::warn!(syslog = %s.target(), error = %e, "cannot send alert to syslog");
            }
            if let Some(url) = self.webhook.clone() {
                self.deliver(&url, &body);
            }
        }
    }

    fn deliver(&mut self, url: &WebhookUrl, body: &[u8]) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            match post(&self.agent, url, body) {
                Ok(status) if (200..300).contains(&status) => {
                    self.stats.sent.fetch_add(1, Ordering::Relaxed);
                    if std::mem::take(&mut self.failing) {
                        tracing::info!("webhook delivers alerts again");
                    }
                    return;
                }
                // Client errors other than rate limiting will not get better by retrying.
                Ok(status) if (400..500).contains(&status) && status != 429 && status != 408 => {
                    tracing::error!(status, host = %url.host, "webhook rejected an alert");
                    break;
                }
                Ok(status) => tracing::debug!(status, attempt, "webhook delivery failed"),
                Err(e) => tracing::debug!(error = %e, attempt, "webhook delivery failed"),
            }
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        if !std::mem::replace(&mut self.failing, true) {
            tracing::error!(host = %url.host, port = url.port, "cannot deliver alerts to the webhook (counting failures)");
        }
    }
}

/// The HTTP client for webhooks (ureq, rustls): public roots, or only the CAs of `[alerts] ca_file`.
pub fn client(
    timeout: Duration,
    ca_certs: &[rustls::pki_types::CertificateDer<'static>],
) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if !ca_certs.is_empty() {
        let roots: Vec<ureq::tls::Certificate<'static>> = ca_certs
            .iter()
            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls.build())
        .build()
        .into()
}

/// One POST of a JSON body; returns the response status.
pub fn post(agent: &ureq::Agent, url: &WebhookUrl, body: &[u8]) -> Result<u16, ureq::Error> {
    let resp = agent
        .post(&url.url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("c2sink/", env!("CARGO_PKG_VERSION")))
        .send(body)?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Attribution;
    use crate::events::Protocol;

    fn event(ip: &str, list: &str) -> BlockEvent {
        BlockEvent {
            time: std::time::SystemTime::now(),
            client: format!("{ip}:5353").parse().unwrap(),
            protocol: Protocol::Udp,
            qname: "c2.example".into(),
            qtype: 1,
            list: Arc::from(list),
            rule: "c2.example".into(),
            action: "null",
            who: Attribution::default(),
            via: None,
            chain: Vec::new(),
        }
    }

    fn alerter(per_minute: f64, window: Duration) -> (Alerter, Receiver<Alert>) {
        let (tx, rx) = sync_channel(100);
        let a = Alerter {
            seen: HashMap::new(),
            window,
            tokens: per_minute,
            per_minute,
            refilled: Instant::now(),
            tx,
            stats: Arc::default(),
        };
        (a, rx)
    }

    #[test]
    fn first_block_of_each_client_and_list_pair_alerts_once_per_window() {
        let (mut a, rx) = alerter(100.0, Duration::from_secs(3600));
        for _ in 0..5 {
            a.on_block(&event("10.0.0.1", "3cx"));
            a.on_block(&event("10.0.0.2", "3cx"));
            a.on_block(&event("10.0.0.1", "other"));
        }
        let got: Vec<(String, String)> = rx.try_iter().map(|x| (x.client_ip, x.list)).collect();
        assert_eq!(got.len(), 3, "{got:?}");
        let (mut a, rx) = alerter(100.0, Duration::ZERO);
        a.on_block(&event("10.0.0.1", "3cx"));
        a.on_block(&event("10.0.0.1", "3cx"));
        assert_eq!(rx.try_iter().count(), 2, "a zero window alerts every time");
    }

    #[test]
    fn the_budget_holds_back_alerts_without_forgetting_them() {
        let (mut a, rx) = alerter(2.0, Duration::from_secs(3600));
        for i in 0..5 {
            a.on_block(&event(&format!("10.0.0.{i}"), "3cx"));
        }
        assert_eq!(rx.try_iter().count(), 2);
        // Held-back clients were not marked as alerted: once the budget refills, their next block alerts.
        a.tokens = 2.0;
        a.on_block(&event("10.0.0.0", "3cx"));
        a.on_block(&event("10.0.0.4", "3cx"));
        let got: Vec<String> = rx.try_iter().map(|x| x.client_ip).collect();
        assert_eq!(got, vec!["10.0.0.4"]);
    }

    #[test]
    fn alerts_go_to_syslog() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // The sender is a low-priority thread: a generous wait, spent only when the test fails.
        rx.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n[alerts]\nsyslog = \"udp://{}\"\n",
            rx.local_addr().unwrap()
        );
        let cfg = Config::parse(&text, std::path::Path::new("/tmp/c2sink.toml")).unwrap();
        let (mut tap, _stats) = start(&cfg).unwrap().expect("alerts on");
        tap(&event("10.0.0.9", "3cx"));
        tap(&event("10.0.0.9", "3cx"));
        let mut buf = [0u8; 1024];
        let n = rx.recv(&mut buf).unwrap();
        let m = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(m.contains(" c2sink ") && m.contains(" alert - {"), "{m}");
        assert!(m.contains("\"client_ip\":\"10.0.0.9\""), "{m}");
        rx.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(
            rx.recv(&mut buf).is_err(),
            "the second block of the pair is no new alert"
        );
    }

    #[test]
    fn parses_webhook_urls() {
        let u = WebhookUrl::parse("http://127.0.0.1:8080/hooks/abc").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/hooks/abc")
        );
        let u = WebhookUrl::parse("http://alerts.lan").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("alerts.lan", 80, "/")
        );
        let u = WebhookUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        let u = WebhookUrl::parse("https://hooks.slack.com/services/T0/B0/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("hooks.slack.com", 443, "/services/T0/B0/x")
        );
        assert_eq!(u.url, "https://hooks.slack.com/services/T0/B0/x");
        assert!(WebhookUrl::parse("ftp://x").is_err());
        assert!(WebhookUrl::parse("http://h:notaport/").is_err());
    }
}
