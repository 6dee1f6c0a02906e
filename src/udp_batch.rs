//! Many UDP datagrams per system call (`recvmmsg`/`sendmmsg`, Linux).
//!
//! Under load queries arrive in bursts; reading the whole burst in one call and sending all the answers that
//! are ready in another saves about two system calls per query, a large part of a resolver's CPU on the
//! loopback benchmark (docs/performance.md). With one datagram waiting it costs what `recv_from` does.
//!
//! The system calls are made through `libc` here, in this one module: nix's wrappers read uninitialised
//! address slots when counting what `sendmmsg` sent. Every pointer handed to the kernel points into buffers
//! owned by the caller's stack frame or by `self` for the length of the call.

use socket2::SockAddr;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams handled per system call.
pub const BATCH: usize = 32;

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
    pub async fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
        loop {
            sock.readable().await?;
            let mut got = 0;
            // A short batch means the queue was empty when the kernel stopped: the socket is marked not
            // ready now (by answering "would block"), which saves the call that would only find it empty.
            // A datagram arriving after this read raises a new readiness event, so none waits unseen.
            let r = sock.try_io(Interest::READABLE, || {
                got = self.try_recv(sock)?;
                if got < BATCH {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            });
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got == 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                r => return r,
            }
        }
    }

    fn try_recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
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
                libc::MSG_DONTWAIT as _,
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
    pub async fn flush(&mut self, sock: &UdpSocket) {
        let mut done = 0;
        while done < self.queued.len() {
            let rest = &self.queued[done..];
            match sock
                .async_io(Interest::WRITABLE, || try_send(sock, rest))
                .await
            {
                Ok(n) => done += n.max(1),
                Err(e) => {
                    tracing::debug!(error = %e, "udp send error");
                    done += 1;
                }
            }
        }
        self.queued.clear();
    }
}

/// Sends up to [`BATCH`] of `msgs` in one call; returns how many the kernel took.
fn try_send(sock: &UdpSocket, msgs: &[(SockAddr, Vec<u8>)]) -> io::Result<usize> {
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
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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

    #[tokio::test]
    async fn ipv6_senders_are_answered() {
        let Ok(server) = UdpSocket::bind("[::1]:0").await else {
            return; // no IPv6 loopback on this machine
        };
        let client = UdpSocket::bind("[::1]:0").await.unwrap();
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
