//! Many UDP datagrams per system call (`recvmmsg`/`sendmmsg`, Linux).
//!
//! Under load queries arrive in bursts; reading the whole burst in one call and sending all the answers that
//! are ready in another saves about two system calls per query, a large part of a resolver's CPU on the
//! loopback benchmark (docs/performance.md). With one datagram waiting it costs what `recv_from` does.
//! The listening [`Socket`] is watched for reads only, so an answer sent does not wake the loop again.
//!
//! The system calls are made through `libc` here, in this one module: nix's wrappers read uninitialised
//! address slots when counting what `sendmmsg` sent. Every pointer handed to the kernel points into buffers
//! owned by the caller's stack frame or by `self` for the length of the call.

use socket2::SockAddr;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Most datagrams handled per system call.
pub const BATCH: usize = 32;

/// A listening UDP socket that the runtime watches for queries only, and that a thread with nothing else to
/// do can also wait on inside the kernel ([`Receiver::recv_blocking`]).
///
/// The kernel signals room to send after every datagram sent (on loopback at once, on a NIC when the
/// transmit completes). A socket registered for both directions, as `tokio::net::UdpSocket` is, wakes the
/// loop once more per answer for that signal: one extra `epoll_wait` per query, which Unbound (watching for
/// reads only) does not pay. A full send buffer, which is rare, is waited out through a second descriptor
/// registered for writing only while it lasts.
///
/// The descriptor itself stays blocking: every call made for the event loop passes `MSG_DONTWAIT`, and a
/// blocking receive waits at most the socket's receive timeout.
pub struct Socket {
    fd: AsyncFd<UdpSocket>,
}

impl Socket {
    /// Registers `sock` with the current runtime, for reading; the descriptor is left in blocking mode.
    pub fn new(sock: UdpSocket) -> io::Result<Socket> {
        sock.set_nonblocking(false)?;
        Ok(Socket {
            fd: register(sock, Interest::READABLE)?,
        })
    }

    /// Sends one datagram, waiting for room if the send buffer is full.
    pub async fn send_to(&self, msg: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = SockAddr::from(to);
        loop {
            match send_one(self.fd.get_ref(), msg, &to) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                r => return r,
            }
        }
    }

    /// Waits until the send buffer has room, through a duplicate descriptor registered for this wait only
    /// (the same descriptor cannot be registered twice; registering reports room that is already there).
    async fn writable(&self) -> io::Result<()> {
        let dup = register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
        dup.writable().await.map(drop)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Bounds how long [`Receiver::recv_blocking`] waits when no datagram comes.
    pub fn set_wait_limit(&self, limit: std::time::Duration) -> io::Result<()> {
        self.fd.get_ref().set_read_timeout(Some(limit))
    }
}

/// Watches `sock` for `interest` on the current runtime.
fn register(sock: UdpSocket, interest: Interest) -> io::Result<AsyncFd<UdpSocket>> {
    // SAFETY: the socket owns its descriptor, which stays open and the same until the AsyncFd drops it.
    Ok(unsafe { AsyncFd::register_with_interest(sock, interest) }?)
}

/// Buffers for receiving up to [`BATCH`] datagrams at once.
pub struct Receiver {
    /// `BATCH` buffers of `size` bytes, one after another.
    storage: Vec<u8>,
    size: usize,
    /// Buffer index, length and sender of each answerable datagram of the last batch.
    got: Vec<(usize, usize, SocketAddr)>,
}

impl Receiver {
    /// Buffers for datagrams of up to `size` bytes (longer ones are cut to `size`).
    pub fn new(size: usize) -> Receiver {
        Receiver {
            storage: vec![0; size * BATCH],
            size,
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until datagrams are waiting, then reads as many as are there (up to [`BATCH`]).
    pub async fn recv(&mut self, sock: &Socket) -> io::Result<usize> {
        loop {
            let mut ready = sock.fd.readable().await?;
            match self.try_recv(sock.fd.get_ref(), libc::MSG_DONTWAIT) {
                // A short batch means the queue was empty when the kernel stopped: the socket is marked not
                // ready now, which saves the call that would only find it empty. A datagram arriving after
                // this read raises a new readiness event, so none waits unseen.
                Ok(n) => {
                    if n < BATCH {
                        ready.clear_ready();
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits in the kernel (no event loop) for a first datagram, then takes all that are waiting (up to
    /// [`BATCH`]): for a thread whose runtime has nothing else to run. Gives up after the socket's wait limit
    /// with `WouldBlock`.
    pub fn recv_blocking(&mut self, sock: &Socket) -> io::Result<usize> {
        self.try_recv(sock.fd.get_ref(), libc::MSG_WAITFORONE)
    }

    fn try_recv(&mut self, sock: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
        self.got.clear();
        // Room for either family's address (an IPv4 sockaddr is shorter); a quarter of sockaddr_storage.
        // SAFETY: sockaddr_in6 is plain old data: all-zero is a valid value.
        let mut addrs: [libc::sockaddr_in6; BATCH] = unsafe { std::mem::zeroed() };
        let mut bufs = self.storage.chunks_exact_mut(self.size);
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| {
            let b = bufs.next().unwrap_or_default();
            libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            }
        });
        let mut hdrs = headers(
            &mut iovs,
            addrs
                .iter_mut()
                .map(|a| (std::ptr::from_mut(a).cast(), ADDR_LEN)),
        );
        // SAFETY: `hdrs` holds BATCH valid headers whose buffers and address slots live until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags as _,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for (i, (h, a)) in hdrs.iter().zip(&addrs).take(n).enumerate() {
            // A datagram without a usable sender address cannot be answered: skip it.
            if let Some(from) = sender(a, h.msg_hdr.msg_namelen) {
                self.got.push((i, h.msg_len as usize, from));
            }
        }
        Ok(n)
    }

    /// The datagrams of the last [`recv`](Self::recv), with their senders.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
        self.got.iter().filter_map(|&(i, n, from)| {
            let start = i * self.size;
            Some((self.storage.get(start..start + n.min(self.size))?, from))
        })
    }
}

/// Answers gathered while a batch is handled, sent together.
#[derive(Default)]
pub struct Sender {
    queued: Vec<(SockAddr, Vec<u8>)>,
}

impl Sender {
    /// Queues one answer.
    pub fn push(&mut self, to: SocketAddr, msg: Vec<u8>) {
        self.queued.push((SockAddr::from(to), msg));
    }

    /// Sends everything queued; a datagram the kernel refuses (say, no route back) is dropped, as a lone
    /// `send_to` would drop it.
    pub async fn flush(&mut self, sock: &Socket) {
        let mut done = 0;
        while done < self.queued.len() {
            let rest = &self.queued[done..];
            let e = match try_send(sock.fd.get_ref(), rest) {
                Ok(n) => {
                    done += n.max(1);
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match sock.writable().await {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            tracing::debug!(error = %e, "udp send error");
            done += 1;
        }
        self.queued.clear();
    }
}

/// Sends one datagram with `sendto` without waiting (the descriptor is blocking); returns the bytes sent.
fn send_one(sock: &UdpSocket, msg: &[u8], to: &SockAddr) -> io::Result<usize> {
    // SAFETY: `msg` and `to` are alive for the call; the kernel reads `msg.len()` and `to.len()` bytes.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_DONTWAIT,
            to.as_ptr().cast(),
            to.len(),
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Sends up to [`BATCH`] of `msgs` in one call without waiting; returns how many the kernel took.
fn try_send(sock: &UdpSocket, msgs: &[(SockAddr, Vec<u8>)]) -> io::Result<usize> {
    if let [(to, msg)] = msgs {
        // One answer: `sendto` skips copying and checking a message header, about 170 ns less than a
        // one-message `sendmmsg` on this machine; from two answers on, one `sendmmsg` costs less.
        return send_one(sock, msg, to).map(|_| 1);
    }
    let n = msgs.len().min(BATCH);
    let mut it = msgs.iter();
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| {
        let b = it.next().map_or(&[][..], |(_, m)| m.as_slice());
        libc::iovec {
            // The kernel only reads from it.
            iov_base: b.as_ptr().cast_mut().cast(),
            iov_len: b.len(),
        }
    });
    let mut hdrs = headers(
        &mut iovs,
        msgs.iter()
            .map(|(a, _)| (a.as_ptr().cast_mut().cast(), a.len())),
    );
    // SAFETY: the first `n` headers point at `n` queued messages and their addresses, all alive for the call.
    let sent = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            libc::MSG_DONTWAIT as _,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Bytes of an address slot for receiving.
const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;

/// The sender the kernel wrote into an address slot (`len` bytes of it).
fn sender(a: &libc::sockaddr_in6, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(a.sin6_family) {
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the slot holds a sockaddr_in (family AF_INET), which is smaller than the slot and needs no
            // more alignment than sockaddr_in6.
            let v4 = unsafe { &*std::ptr::from_ref(a).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(std::net::SocketAddrV4::new(
                u32::from_be(v4.sin_addr.s_addr).into(),
                u16::from_be(v4.sin_port),
            )))
        }
        _ => None,
    }
}

/// One header per iovec; each names its address slot and the slot's length.
fn headers(
    iovs: &mut [libc::iovec; BATCH],
    addrs: impl Iterator<Item = (*mut libc::c_void, libc::socklen_t)>,
) -> [libc::mmsghdr; BATCH] {
    let mut addrs = addrs;
    let mut iovs = iovs.iter_mut();
    std::array::from_fn(|_| {
        // SAFETY: mmsghdr is plain old data; all-zero is a valid empty header.
        let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
        if let Some(iov) = iovs.next() {
            h.msg_hdr.msg_iov = std::ptr::from_mut(iov);
            h.msg_hdr.msg_iovlen = 1;
        }
        if let Some((slot, len)) = addrs.next() {
            h.msg_hdr.msg_name = slot;
            h.msg_hdr.msg_namelen = len;
        }
        h
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_read_in_one_call_and_answered_in_one_call() {
        let server = Socket::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..40u8 {
            client.send_to(&[i; 3], to).await.unwrap();
        }
        let mut rx = Receiver::new(2);
        let mut seen = Vec::new();
        let mut calls = Vec::new();
        while seen.len() < 40 {
            let n = rx.recv(&server).await.unwrap();
            calls.push(n);
            let mut tx = Sender::default();
            for (d, from) in rx.iter() {
                assert_eq!(from, client.local_addr().unwrap());
                // cut to the buffer size
                assert_eq!(d.len(), 2);
                seen.push(d[0]);
                tx.push(from, vec![d[0], 0xAA]);
            }
            tx.flush(&server).await;
        }
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        // loopback delivers at once: the 40 waiting datagrams take two calls
        assert_eq!(calls, [BATCH, 40 - BATCH]);
        let mut buf = [0u8; 8];
        for i in 0..40u8 {
            let (n, from) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&[i, 0xAA][..], to));
        }
    }

    /// The registrations (event mask, token) this process's epoll instances hold for descriptor `fd`, from
    /// /proc/self/fdinfo. Tests running alongside may hold other sockets under the same number, so the inode
    /// must match too; a runtime holds its epoll instance under two descriptors, hence the set.
    fn epoll_masks(fd: i32) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino();
        let mut seen = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let is_epoll = std::fs::read_link(entry.path())
                .is_ok_and(|l| l.to_string_lossy().contains("eventpoll"));
            if !is_epoll {
                continue;
            }
            let info = std::fs::read_to_string(
                std::path::Path::new("/proc/self/fdinfo").join(entry.file_name()),
            )
            .unwrap_or_default();
            for line in info.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                let Some(i) = f.iter().find_map(|w| w.strip_prefix("ino:")) else {
                    continue;
                };
                if let ["tfd:", t, "events:", ev, "data:", data, ..] = f[..]
                    && t.parse() == Ok(fd)
                    && u64::from_str_radix(i, 16) == Ok(ino)
                {
                    seen.insert((u32::from_str_radix(ev, 16).unwrap(), data.to_string()));
                }
            }
        }
        seen.into_iter().map(|(mask, _)| mask).collect()
    }

    #[tokio::test]
    async fn the_socket_is_watched_for_queries_only_and_still_answers() {
        let server = Socket::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let fd = server.fd.as_raw_fd();
        let masks = epoll_masks(fd);
        assert_eq!(masks.len(), 1, "registered once: {masks:x?}");
        assert_ne!(masks[0] & libc::EPOLLIN as u32, 0);
        // Room to send is signalled after every answer: watching for it would wake the loop per query.
        assert_eq!(masks[0] & libc::EPOLLOUT as u32, 0, "{:x}", masks[0]);

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"q", server.local_addr().unwrap())
            .await
            .unwrap();
        let mut rx = Receiver::new(16);
        assert_eq!(rx.recv(&server).await.unwrap(), 1);
        let from = client.local_addr().unwrap();
        // A lone answer leaves through `sendto`, a lone forwarded one through `send_to`.
        let mut tx = Sender::default();
        tx.push(from, b"a1".to_vec());
        tx.flush(&server).await;
        // The rare wait for room goes through a second registration that is gone afterwards.
        server.writable().await.unwrap();
        assert_eq!(epoll_masks(fd).len(), 1);
        server.send_to(b"a2", from).await.unwrap();
        let mut buf = [0u8; 8];
        for want in [&b"a1"[..], b"a2"] {
            let (n, _) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[tokio::test]
    async fn ipv6_senders_are_answered() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 loopback on this machine
        };
        let server = Socket::new(server).unwrap();
        let client = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
        client
            .send_to(b"q", server.local_addr().unwrap())
            .await
            .unwrap();
        let mut rx = Receiver::new(512);
        assert_eq!(rx.recv(&server).await.unwrap(), 1);
        let mut tx = Sender::default();
        for (d, from) in rx.iter() {
            assert_eq!(from, client.local_addr().unwrap());
            tx.push(from, d.to_vec());
        }
        tx.flush(&server).await;
        let mut buf = [0u8; 8];
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"q");
    }
}
