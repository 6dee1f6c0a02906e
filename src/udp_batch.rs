//! Many UDP datagrams per wake-up, and many answers per system call (`sendmmsg`, Linux).
//!
//! Under load queries arrive in bursts. Each wake-up takes the whole burst (up to [`BATCH`]) before any is
//! answered, and the answers ready at once leave in one `sendmmsg`, which saves a system call per answer
//! (docs/performance.md). How a burst is read depends on the socket: one bound to a single address reads
//! datagram by datagram with `recvfrom`, which measured cheaper per datagram than `recvmmsg` (each message of
//! a `recvmmsg` pays for copying in its header and iovec, more than a whole `recvfrom` call costs); one bound
//! to a wildcard address needs each datagram's ancillary data, so a message header either way, and reads the
//! burst in one `recvmmsg`. The listening [`Socket`] is watched for reads only, so an answer sent does not
//! wake the loop again.
//!
//! A socket bound to a wildcard address (`0.0.0.0`, `[::]`, the shipped default) also learns which of the
//! host's addresses each query was sent to, and answers from that address ([`Local`]).
//!
//! The system calls are made through `libc` here, in this one module: nix's wrappers read uninitialised
//! address slots when counting what `sendmmsg` sent. Every pointer handed to the kernel points into buffers
//! owned by the caller's stack frame or by `self` for the length of the call.

use socket2::SockAddr;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
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
    /// Bound to a wildcard address: every datagram comes with the address it was sent to ([`Local`]).
    wildcard: bool,
    /// The address bound, unless it is a wildcard.
    bound: Option<std::net::IpAddr>,
}

impl Socket {
    /// Registers `sock` with the current runtime, for reading; the descriptor is left in blocking mode. On a
    /// wildcard address it asks the kernel for each datagram's destination address too.
    pub fn new(sock: UdpSocket) -> io::Result<Socket> {
        sock.set_nonblocking(false)?;
        let local = sock.local_addr()?;
        let wildcard = local.ip().is_unspecified();
        if wildcard {
            report_destination(&sock, local)?;
        }
        Ok(Socket {
            fd: register(sock, Interest::READABLE)?,
            wildcard,
            bound: (!wildcard).then(|| local.ip()),
        })
    }

    /// The address a datagram read from this socket was sent to: the bound one, or on a wildcard socket the
    /// one its [`Local`] names (`None` only if the kernel did not say).
    pub fn destination(&self, local: Option<Local>) -> Option<std::net::IpAddr> {
        local.map(Local::ip).or(self.bound)
    }

    /// Whether a datagram from `src` read from this socket was sent by this host itself, which admission
    /// trusts whatever `allow` says ([`sent_by_host`]).
    pub fn sent_by_host(&self, src: SocketAddr, local: Option<Local>) -> bool {
        sent_by_host(src.ip(), self.destination(local))
    }

    /// Sends one datagram (from `local`, when the query named it), waiting for room if the send buffer is full.
    pub async fn send_to(
        &self,
        msg: &[u8],
        to: SocketAddr,
        local: Option<Local>,
    ) -> io::Result<usize> {
        let to = SockAddr::from(to);
        loop {
            let sent = match local {
                None => send_one(self.fd.get_ref(), msg, &to),
                Some(l) => send_from(self.fd.get_ref(), msg, &to, l),
            };
            match sent {
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

/// The host address a datagram was sent to, known on a socket bound to a wildcard address. Its answer must
/// leave from that address: a client drops an answer that comes from another of the host's addresses (the
/// one the kernel would pick by route), as BIND, nsd and Unbound's `interface-automatic` know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    V4(Ipv4Addr),
    /// With the interface it came in on, which a link-local address needs to mean anything.
    V6(Ipv6Addr, u32),
}

impl Local {
    /// The address itself.
    pub fn ip(self) -> std::net::IpAddr {
        match self {
            Local::V4(a) => a.into(),
            Local::V6(a, _) => a.into(),
        }
    }
}

/// Whether a datagram from `src` to `dest` can only have come from this host: its source is the address it
/// was sent to, and the kernel would have dropped such a datagram from outside. Linux drops an IPv4 packet
/// from the wire whose source is one of the host's addresses, and an IPv6 one from `::1`, but not an IPv6
/// one that claims another of the host's addresses: a LAN host could send that, and the kernel reports the
/// host's own such datagrams on the interface owning the address too, so nothing tells them apart. An IPv6
/// datagram counts only from `::1` (over TCP the handshake proves the source).
fn sent_by_host(src: std::net::IpAddr, dest: Option<std::net::IpAddr>) -> bool {
    let src = src.to_canonical();
    if dest.map(|d| d.to_canonical()) != Some(src) {
        return false;
    }
    match src {
        std::net::IpAddr::V4(_) => true,
        std::net::IpAddr::V6(a) => a.is_loopback(),
    }
}

/// Asks the kernel to report each datagram's destination address (`IP_PKTINFO` / `IPV6_RECVPKTINFO`) on a
/// socket for `local`'s family. Best set before the socket is bound: the kernel notes the address as a
/// datagram arrives, so one queued before the option was set comes without it.
pub fn report_destination(sock: &impl AsRawFd, local: SocketAddr) -> io::Result<()> {
    let (level, name) = match local {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_PKTINFO),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
    };
    let on: libc::c_int = 1;
    // SAFETY: the kernel reads an int option from `on`, which lives across the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bytes of ancillary data per datagram: room for one `in6_pktinfo` (the larger kind) and more.
const CONTROL_WORDS: usize = 8;
type Control = [u64; CONTROL_WORDS];

/// The destination address among a received datagram's ancillary data, if any.
fn local_of(h: &libc::msghdr) -> Option<Local> {
    // SAFETY: `h` is a header the kernel filled: its control pointer and length describe a buffer of ours
    // that holds what the kernel wrote. Each record's length is checked before its data is read, and the
    // data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            let len = (*c).cmsg_len as usize;
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) if len >= cmsg_len::<libc::in_pktinfo>() => {
                    let i: libc::in_pktinfo = std::ptr::read_unaligned(data.cast());
                    // `ipi_spec_dst` is the address that was asked, or the interface's own for a broadcast.
                    return Some(Local::V4(u32::from_be(i.ipi_spec_dst.s_addr).into()));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO)
                    if len >= cmsg_len::<libc::in6_pktinfo>() =>
                {
                    let i: libc::in6_pktinfo = std::ptr::read_unaligned(data.cast());
                    return Some(Local::V6(i.ipi6_addr.s6_addr.into(), i.ipi6_ifindex));
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// `CMSG_LEN` of a record holding one `T`.
fn cmsg_len<T>() -> usize {
    // SAFETY: CMSG_LEN only computes a size.
    unsafe { libc::CMSG_LEN(std::mem::size_of::<T>() as u32) as usize }
}

/// Points `h`'s ancillary data at `buf`, holding one record that makes the kernel send from `local`.
fn set_source(h: &mut libc::msghdr, buf: &mut Control, local: Local) {
    *buf = [0; CONTROL_WORDS];
    h.msg_control = buf.as_mut_ptr().cast();
    h.msg_controllen = std::mem::size_of::<Control>() as _;
    // SAFETY: the control buffer is large enough for one record of either kind (CONTROL_WORDS), so
    // CMSG_FIRSTHDR is not null and its data has room for the value written (unaligned) into it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        match local {
            Local::V4(a) => {
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = cmsg_len::<libc::in_pktinfo>() as _;
                let info = libc::in_pktinfo {
                    // No interface: the reply is routed as any other, only its source is fixed.
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(a).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                h.msg_controllen =
                    libc::CMSG_SPACE(std::mem::size_of::<libc::in_pktinfo>() as u32) as _;
            }
            Local::V6(a, ifindex) => {
                (*c).cmsg_level = libc::IPPROTO_IPV6;
                (*c).cmsg_type = libc::IPV6_PKTINFO;
                (*c).cmsg_len = cmsg_len::<libc::in6_pktinfo>() as _;
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    // A link-local source is only meaningful on its interface; others route freely.
                    ipi6_ifindex: if a.is_unicast_link_local() {
                        ifindex
                    } else {
                        0
                    },
                };
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
                h.msg_controllen =
                    libc::CMSG_SPACE(std::mem::size_of::<libc::in6_pktinfo>() as u32) as _;
            }
        }
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
    /// Ancillary data of each datagram (only read on a wildcard socket).
    control: Vec<Control>,
    /// Buffer index, length, sender and destination of each answerable datagram of the last batch.
    got: Vec<(usize, usize, SocketAddr, Option<Local>)>,
}

impl Receiver {
    /// Buffers for datagrams of up to `size` bytes (longer ones are cut to `size`).
    pub fn new(size: usize) -> Receiver {
        Receiver {
            storage: vec![0; size * BATCH],
            size,
            control: vec![[0; CONTROL_WORDS]; BATCH],
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until datagrams are waiting, then reads as many as are there (up to [`BATCH`]).
    pub async fn recv(&mut self, sock: &Socket) -> io::Result<usize> {
        loop {
            let mut ready = sock.fd.readable().await?;
            match self.try_recv(sock, libc::MSG_DONTWAIT) {
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
        self.try_recv(sock, libc::MSG_WAITFORONE)
    }

    /// Reads what is waiting, up to [`BATCH`]; with `MSG_WAITFORONE` the first read waits (for up to the
    /// socket's wait limit), with `MSG_DONTWAIT` none does.
    fn try_recv(&mut self, sock: &Socket, flags: libc::c_int) -> io::Result<usize> {
        self.got.clear();
        if sock.wildcard {
            self.recv_with_destinations(sock, flags)
        } else {
            self.recv_each(sock, flags)
        }
    }

    /// One `recvfrom` per datagram until none is waiting (that last call, as a `recvmmsg` would, finds the
    /// queue empty) or [`BATCH`] are read: on a socket bound to one address, where no ancillary data is
    /// needed. Side by side on one core this costs 0.96-0.97x the CPU per query of one `recvmmsg` per burst
    /// (docs/performance.md), although it makes more system calls.
    fn recv_each(&mut self, sock: &Socket, flags: libc::c_int) -> io::Result<usize> {
        let fd = sock.fd.get_ref().as_raw_fd();
        // The descriptor blocks: without MSG_DONTWAIT the first read waits, as MSG_WAITFORONE makes it.
        let mut now = if flags == libc::MSG_WAITFORONE {
            0
        } else {
            flags
        };
        let mut n = 0;
        for (i, buf) in self.storage.chunks_exact_mut(self.size).enumerate() {
            // SAFETY: sockaddr_in6 is plain old data: all-zero is a valid value.
            let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            let mut addr_len = ADDR_LEN;
            // SAFETY: the kernel writes at most `buf.len()` bytes into `buf` and at most `addr_len` into
            // `addr`, both alive for the call.
            let got = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    now,
                    std::ptr::from_mut(&mut addr).cast(),
                    &mut addr_len,
                )
            };
            let Ok(len) = usize::try_from(got) else {
                // Nothing more waiting (or an error): what was read is the batch; an error with nothing
                // read is the caller's.
                if n == 0 {
                    return Err(io::Error::last_os_error());
                }
                break;
            };
            // A datagram without a usable sender address cannot be answered: skip it.
            if let Some(from) = sender(&addr, addr_len) {
                self.got.push((i, len.min(buf.len()), from, None));
            }
            n += 1;
            now = libc::MSG_DONTWAIT;
        }
        Ok(n)
    }

    /// The burst in one `recvmmsg`, each datagram with the address it was sent to (a wildcard socket).
    fn recv_with_destinations(&mut self, sock: &Socket, flags: libc::c_int) -> io::Result<usize> {
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
        for (h, c) in hdrs.iter_mut().zip(self.control.iter_mut()) {
            h.msg_hdr.msg_control = c.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = std::mem::size_of::<Control>() as _;
        }
        // SAFETY: `hdrs` holds BATCH valid headers whose buffers, address slots and control buffers live
        // until the call returns.
        let n = unsafe {
            libc::recvmmsg(
                sock.fd.get_ref().as_raw_fd(),
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
                self.got
                    .push((i, h.msg_len as usize, from, local_of(&h.msg_hdr)));
            }
        }
        Ok(n)
    }

    /// The datagrams of the last [`recv`](Self::recv), with their senders and (on a wildcard socket) the
    /// address each was sent to.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr, Option<Local>)> {
        self.got.iter().filter_map(|&(i, n, from, local)| {
            let start = i * self.size;
            Some((
                self.storage.get(start..start + n.min(self.size))?,
                from,
                local,
            ))
        })
    }
}

/// Answers gathered while a batch is handled, sent together.
#[derive(Default)]
pub struct Sender {
    queued: Vec<(SockAddr, Option<Local>, Vec<u8>)>,
}

impl Sender {
    /// Queues one answer, to be sent from `local` when the query named it.
    pub fn push(&mut self, to: SocketAddr, local: Option<Local>, msg: Vec<u8>) {
        self.queued.push((SockAddr::from(to), local, msg));
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

/// Sends one datagram from `local` with `sendmsg` without waiting; returns the bytes sent.
fn send_from(sock: &UdpSocket, msg: &[u8], to: &SockAddr, local: Local) -> io::Result<usize> {
    let mut iov = libc::iovec {
        // The kernel only reads from it.
        iov_base: msg.as_ptr().cast_mut().cast(),
        iov_len: msg.len(),
    };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
    h.msg_name = to.as_ptr().cast_mut().cast();
    h.msg_namelen = to.len();
    h.msg_iov = &mut iov;
    h.msg_iovlen = 1;
    let mut control = [0; CONTROL_WORDS];
    set_source(&mut h, &mut control, local);
    // SAFETY: the header points at `msg`, `to` and `control`, all alive for the call.
    let sent = unsafe { libc::sendmsg(sock.as_raw_fd(), &h, libc::MSG_DONTWAIT) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// Sends up to [`BATCH`] of `msgs` in one call without waiting; returns how many the kernel took.
fn try_send(sock: &UdpSocket, msgs: &[(SockAddr, Option<Local>, Vec<u8>)]) -> io::Result<usize> {
    if let [(to, None, msg)] = msgs {
        // One answer: `sendto` skips copying and checking a message header, about 170 ns less than a
        // one-message `sendmmsg` on this machine; from two answers on, one `sendmmsg` costs less.
        return send_one(sock, msg, to).map(|_| 1);
    }
    let n = msgs.len().min(BATCH);
    let mut it = msgs.iter();
    let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| {
        let b = it.next().map_or(&[][..], |(_, _, m)| m.as_slice());
        libc::iovec {
            // The kernel only reads from it.
            iov_base: b.as_ptr().cast_mut().cast(),
            iov_len: b.len(),
        }
    });
    let mut hdrs = headers(
        &mut iovs,
        msgs.iter()
            .map(|(a, _, _)| (a.as_ptr().cast_mut().cast(), a.len())),
    );
    // Source addresses, on a wildcard socket only (the buffers are not even zeroed otherwise).
    let mut control: [Control; BATCH];
    if msgs[..n].iter().any(|(_, l, _)| l.is_some()) {
        control = [[0; CONTROL_WORDS]; BATCH];
        for ((h, c), (_, local, _)) in hdrs.iter_mut().zip(control.iter_mut()).zip(&msgs[..n]) {
            if let Some(l) = local {
                set_source(&mut h.msg_hdr, c, *l);
            }
        }
    }
    // SAFETY: the first `n` headers point at `n` queued messages, their addresses and (when set) their
    // control buffers, all alive for the call.
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
            for (d, from, local) in rx.iter() {
                assert_eq!(from, client.local_addr().unwrap());
                // A socket bound to one address needs no destination: answers leave from it.
                assert_eq!(local, None);
                // cut to the buffer size
                assert_eq!(d.len(), 2);
                seen.push(d[0]);
                tx.push(from, None, vec![d[0], 0xAA]);
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

    /// A LAN host can send an IPv6 datagram whose source is one of the host's own global addresses (Linux
    /// drops only the IPv4 kind): over IPv6 only `::1` is the host's own.
    #[test]
    fn only_the_host_itself_is_taken_for_the_host() {
        let global: std::net::IpAddr = "2001:db8::53".parse().unwrap();
        assert!(
            !sent_by_host(global, Some(global)),
            "may be spoofed from the LAN"
        );
        let lo6: std::net::IpAddr = "::1".parse().unwrap();
        assert!(sent_by_host(lo6, Some(lo6)));
        assert!(!sent_by_host(lo6, Some(global)));
        let v4: std::net::IpAddr = "192.0.2.53".parse().unwrap();
        assert!(sent_by_host(v4, Some(v4)));
        assert!(!sent_by_host(v4, Some("192.0.2.54".parse().unwrap())));
        assert!(!sent_by_host(v4, None));
    }

    /// Datagrams the host sends to a wildcard socket, from `::1` and from 127.0.0.1, are found to be its own.
    #[test]
    fn a_wildcard_socket_knows_the_hosts_own_datagrams() {
        for (bind, from) in [("[::]:0", "[::1]:0"), ("0.0.0.0:0", "127.0.0.1:0")] {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _runtime = rt.enter();
            let Ok(std) = UdpSocket::bind(bind) else {
                continue; // no IPv6 here
            };
            let server = Socket::new(std).unwrap();
            let client = UdpSocket::bind(from).unwrap();
            let to = SocketAddr::new(
                client.local_addr().unwrap().ip(),
                server.local_addr().unwrap().port(),
            );
            client.send_to(b"q", to).unwrap();
            let mut rx = Receiver::new(16);
            rx.recv_blocking(&server).unwrap();
            let (_, src, local) = rx.iter().next().unwrap();
            assert!(local.is_some(), "{bind}");
            assert!(server.sent_by_host(src, local), "{bind}");
        }
    }

    /// A thread with nothing else to do waits in the kernel for a first datagram, but not for a second:
    /// the datagrams already there are answered at once, on both kinds of socket.
    #[test]
    fn a_blocking_read_waits_for_the_first_datagram_only() {
        for bind in ["127.0.0.1:0", "0.0.0.0:0"] {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let _runtime = rt.enter();
            let server = Socket::new(UdpSocket::bind(bind).unwrap()).unwrap();
            let mut rx = Receiver::new(16);
            // Nothing comes: it gives up after the wait limit.
            server
                .set_wait_limit(std::time::Duration::from_millis(20))
                .unwrap();
            let e = rx.recv_blocking(&server).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{bind}");
            let to = SocketAddr::from(([127, 0, 0, 1], server.local_addr().unwrap().port()));
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            for q in [b"a", b"b", b"c"] {
                client.send_to(q, to).unwrap();
            }
            // A read that waited for a fourth datagram would take the whole minute.
            server
                .set_wait_limit(std::time::Duration::from_secs(60))
                .unwrap();
            let (done, read) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let n = rx.recv_blocking(&server).unwrap();
                let got: Vec<u8> = rx.iter().map(|(d, _, _)| d[0]).collect();
                done.send((n, got)).unwrap();
            });
            let r = read.recv_timeout(std::time::Duration::from_secs(20));
            assert_eq!(r, Ok((3, b"abc".to_vec())), "{bind}");
            reader.join().unwrap();
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
        tx.push(from, None, b"a1".to_vec());
        tx.flush(&server).await;
        // The rare wait for room goes through a second registration that is gone afterwards.
        server.writable().await.unwrap();
        assert_eq!(epoll_masks(fd).len(), 1);
        server.send_to(b"a2", from, None).await.unwrap();
        let mut buf = [0u8; 8];
        for want in [&b"a1"[..], b"a2"] {
            let (n, _) = client.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    /// A client socket on 127.0.0.1 that only hears from `server`: the reply of a wrong source address is not
    /// taken for the answer.
    async fn answers_from(
        server: &Socket,
        asked: SocketAddr,
        queries: &[&[u8]],
    ) -> Vec<SocketAddr> {
        let client = tokio::net::UdpSocket::bind(match asked {
            SocketAddr::V4(_) => "127.0.0.1:0",
            SocketAddr::V6(_) => "[::1]:0",
        })
        .await
        .unwrap();
        for q in queries {
            client.send_to(q, asked).await.unwrap();
        }
        let mut rx = Receiver::new(64);
        let mut got = 0;
        let mut tx = Sender::default();
        let mut forwarded = Vec::new();
        while got < queries.len() {
            got += rx.recv(server).await.unwrap();
            for (d, from, local) in rx.iter() {
                assert_eq!(local.map(|l| l.ip()), Some(asked.ip()), "{d:?}");
                // One query answered later on its own, as a forwarded one is; the others in one batch.
                if d == b"later" {
                    forwarded.push((from, local));
                } else {
                    tx.push(from, local, d.to_vec());
                }
            }
        }
        tx.flush(server).await;
        for (from, local) in forwarded {
            server.send_to(b"later", from, local).await.unwrap();
        }
        let mut sources = Vec::new();
        let mut buf = [0u8; 64];
        for _ in queries {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                client.recv_from(&mut buf),
            );
            sources.push(r.await.expect("an answer").unwrap().1);
        }
        sources
    }

    #[tokio::test]
    async fn a_wildcard_socket_answers_from_the_address_that_was_asked() {
        let server = Socket::new(UdpSocket::bind("0.0.0.0:0").unwrap()).unwrap();
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is the host's too, but the route back to 127.0.0.1 would pick 127.0.0.1 as the source.
        let asked = SocketAddr::from(([127, 0, 0, 2], port));
        for queries in [
            &[&b"one"[..]][..],
            &[b"one", b"two"],
            &[b"later"],
            &[b"one", b"later"],
        ] {
            let sources = answers_from(&server, asked, queries).await;
            assert!(
                sources.iter().all(|s| *s == asked),
                "{queries:?}: {sources:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_wildcard_ipv6_socket_answers_from_the_address_that_was_asked() {
        // A host can bind [::] with IPv6 switched off (Docker's default), but not ::1.
        if UdpSocket::bind("[::1]:0").is_err() {
            return; // no IPv6 loopback on this machine
        }
        let server = Socket::new(UdpSocket::bind("[::]:0").unwrap()).unwrap();
        let asked = SocketAddr::from((Ipv6Addr::LOCALHOST, server.local_addr().unwrap().port()));
        let sources = answers_from(&server, asked, &[b"one", b"two", b"later"]).await;
        assert!(sources.iter().all(|s| *s == asked), "{sources:?}");
    }

    /// The IPv6 send path, where it can be told apart on loopback: a dual-stack `[::]` socket (c2sink's own
    /// are IPv6-only) sees an IPv4 query to 127.0.0.2 as sent to ::ffff:127.0.0.2 and must answer from it.
    #[tokio::test]
    async fn an_ipv6_source_is_set_as_the_query_named_it() {
        let Ok(dual) = UdpSocket::bind("[::]:0") else {
            return; // no IPv6 on this machine
        };
        let server = Socket::new(dual).unwrap();
        let asked = SocketAddr::from(([127, 0, 0, 2], server.local_addr().unwrap().port()));
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for q in [&b"now"[..], b"later"] {
            client.send_to(q, asked).await.unwrap();
            let mut rx = Receiver::new(64);
            assert_eq!(rx.recv(&server).await.unwrap(), 1);
            let (d, from, local) = rx.iter().next().expect("one datagram");
            assert!(matches!(local, Some(Local::V6(..))), "{local:?}");
            let ip = local.map(|l| l.ip().to_canonical());
            assert_eq!(ip, Some(std::net::IpAddr::from([127, 0, 0, 2])));
            if d == b"now" {
                let mut tx = Sender::default();
                tx.push(from, local, d.to_vec());
                tx.flush(&server).await;
            } else {
                server.send_to(d, from, local).await.unwrap();
            }
            let mut buf = [0u8; 16];
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                client.recv_from(&mut buf),
            );
            let (_, source) = r.await.expect("an answer").unwrap();
            assert_eq!(source, asked, "{q:?}");
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
        for (d, from, local) in rx.iter() {
            assert_eq!(from, client.local_addr().unwrap());
            tx.push(from, local, d.to_vec());
        }
        tx.flush(&server).await;
        let mut buf = [0u8; 8];
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"q");
    }
}
