//! `linux.netDevices` (runtime-spec 1.3): host interfaces moved into the
//! container's network namespace, under a new name if one is given, as
//! runc 1.3+ does (`libcontainer/network_linux.go`, devChangeNetNamespace):
//! the link is set down, moved and renamed in one RTM_NEWLINK, its
//! permanent global addresses are added again on the other side (the
//! kernel drops them on the move) and it is set up there. Like runc, keel
//! does not move it back: the network namespace's owner decides its fate
//! (when a namespace dies, the kernel returns physical devices to the
//! initial namespace and destroys virtual ones).
//!
//! The rtnetlink messages are built by hand: four message kinds and four
//! attributes, where the rtnetlink crates would bring their whole model of
//! links, addresses, routes and traffic control into the binary.

use crate::error::{Error, Result, SysContext};
use nix::sys::socket::{self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol};
use oci_spec::runtime::Linux;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// One device to move: its host name and its name in the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetDevice {
    pub host: String,
    pub name: String,
}

/// The devices of a config, checked with runc's rules (its validator's
/// `netdevices`): a private network namespace that is not the runtime's
/// own, root, and names the kernel accepts. Sorted by host name, so a
/// create is repeatable.
pub fn from_spec(linux: &Linux, rootless: bool) -> Result<Vec<NetDevice>> {
    let Some(map) = linux.net_devices().as_ref().filter(|m| !m.is_empty()) else {
        return Ok(Vec::new());
    };
    let field = "linux.netDevices";
    let netns = linux
        .namespaces()
        .iter()
        .flatten()
        .find(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Network);
    let Some(netns) = netns else {
        return Err(Error::invalid(
            field,
            "unable to move network devices without a private NET namespace",
        ));
    };
    if let Some(path) = netns
        .path()
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty())
    {
        if same_file(path, Path::new("/proc/self/ns/net"))? {
            return Err(Error::invalid(
                field,
                "unable to move network devices to the host network namespace",
            ));
        }
    }
    if rootless {
        return Err(Error::invalid(
            field,
            "network devices are not supported for rootless containers",
        ));
    }
    let mut out = Vec::with_capacity(map.len());
    for (host, dev) in map {
        let name = dev.name().clone().filter(|n| !n.is_empty());
        for n in std::iter::once(host).chain(name.as_ref()) {
            if !valid_name(n) {
                return Err(Error::invalid(
                    format!("{field}.{host}"),
                    format!("invalid network device name {n:?}"),
                ));
            }
        }
        out.push(NetDevice {
            host: host.clone(),
            name: name.unwrap_or_else(|| host.clone()),
        });
    }
    out.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(out)
}

fn same_file(a: &Path, b: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|e| {
            Error::invalid(
                "linux.namespaces",
                format!("invalid netns path {}: {e}", p.display()),
            )
        })
    };
    let (x, y) = (stat(a)?, stat(b)?);
    Ok(x.dev() == y.dev() && x.ino() == y.ino())
}

/// The kernel's dev_valid_name: 1 to 15 bytes, not "." or "..", no '/',
/// ':' or white space.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < libc::IFNAMSIZ
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Moves every device into the network namespace at `netns` (an
/// nsfs file, e.g. /proc/PID/ns/net). Runs in the runtime's namespace.
pub fn move_all(devices: &[NetDevice], netns: &Path) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let target = nix::fcntl::open(
        netns,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .ctx(|| format!("linux.netDevices: open {}", netns.display()))?;
    let host = Rtnl::open("linux.netDevices")?;
    // A socket belongs to the namespace it was made in: one made in the
    // container's namespace configures the devices once they are there.
    let inside = Rtnl::open_in(&target)?;
    for d in devices {
        move_one(&host, &inside, &target, d)
            .map_err(|e| e.in_field(format!("linux.netDevices.{}", d.host)))?;
    }
    Ok(())
}

fn move_one(host: &Rtnl, inside: &Rtnl, target: &OwnedFd, d: &NetDevice) -> Result<()> {
    let index = host.index_of(&d.host).map_err(|e| {
        Error::sys(
            format!(
                "link not found for interface {} on runtime namespace",
                d.host
            ),
            e,
        )
    })?;
    // Down first, so nothing on the host uses it while it changes.
    host.request(&link_msg(index, 0, None, None))
        .map_err(|e| Error::sys("fail to set link down", e))?;
    let addresses: Vec<Address> = host
        .dump_addresses()
        .map_err(|e| Error::sys("fail to get ip addresses", e))?
        .into_iter()
        .filter(|a| a.index == index && a.movable())
        .collect();
    // Rename and move in one message, so the name never clashes on either side.
    let fd = target.as_raw_fd() as u32;
    host.request(&link_msg(index, 0, Some(&d.name), Some(fd)))
        .map_err(|e| {
            Error::sys(
                format!(
                    "fail to move network device {} to network namespace",
                    d.host
                ),
                e,
            )
        })?;
    let index = inside.index_of(&d.name).map_err(|e| {
        Error::sys(
            format!("link not found for interface {} in the container", d.name),
            e,
        )
    })?;
    for a in &addresses {
        inside
            .request(&addr_msg(index, a))
            .map_err(|e| Error::sys(format!("fail to set up address {}", a.display()), e))?;
    }
    inside
        .request(&link_msg(index, libc::IFF_UP as u32, None, None))
        .map_err(|e| Error::sys(format!("fail to set up interface {}", d.name), e))
}

/// Sets the loopback interface of the caller's network namespace up. runc
/// does so in every network namespace it makes (specconv's "loopback"
/// network; `lo` starts down in a new namespace), so a program there can
/// reach 127.0.0.1; Docker, podman and `runc spec` configs rely on it.
pub fn loopback_up() -> Result<()> {
    // `lo` is the first link of every network namespace: the kernel gives
    // it index 1 (LOOPBACK_IFINDEX), so no lookup by name is needed.
    const LOOPBACK_INDEX: u32 = 1;
    Rtnl::open("network namespace")?
        .request(&link_msg(LOOPBACK_INDEX, libc::IFF_UP as u32, None, None))
        .ctx(|| "network namespace: set the loopback interface up".into())
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_DUMP: u16 = 0x300;

/// An rtnetlink message under construction: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(typ: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut b = Vec::with_capacity(64);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by `done`
        b.extend_from_slice(&typ.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        b.extend_from_slice(fixed);
        Msg(b)
    }

    fn attr(mut self, typ: u16, data: &[u8]) -> Msg {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&typ.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    fn done(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// struct ifinfomsg: family, pad, type, index, flags, change.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// RTM_NEWLINK on an existing link: its IFF_UP flag set to `up`, and
/// optionally a new name and a new network namespace.
fn link_msg(index: u32, up: u32, name: Option<&str>, netns_fd: Option<u32>) -> Vec<u8> {
    let mut m = Msg::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        &ifinfomsg(index, up, libc::IFF_UP as u32),
    );
    if let Some(n) = name {
        m = m.attr(IFLA_IFNAME, &[n.as_bytes(), &[0]].concat());
    }
    if let Some(fd) = netns_fd {
        m = m.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
    }
    m.done()
}

/// An address of a link, as an RTM_NEWADDR carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Address {
    family: u8,
    prefix: u8,
    flags: u32,
    scope: u8,
    index: u32,
    addr: Vec<u8>,
}

impl Address {
    /// runc moves only what the user configured: permanent addresses of
    /// global scope (not dynamic, link- or host-scoped ones).
    fn movable(&self) -> bool {
        self.flags & IFA_F_PERMANENT != 0 && self.scope == 0 && !self.addr.is_empty()
    }

    fn display(&self) -> String {
        let ip: Option<std::net::IpAddr> = match self.addr.len() {
            4 => <[u8; 4]>::try_from(self.addr.as_slice())
                .ok()
                .map(Into::into),
            16 => <[u8; 16]>::try_from(self.addr.as_slice())
                .ok()
                .map(Into::into),
            _ => None,
        };
        ip.map_or_else(|| "?".into(), |ip| format!("{ip}/{}", self.prefix))
    }

    /// From the payload of an RTM_NEWADDR (ifaddrmsg and attributes).
    fn parse(p: &[u8]) -> Option<Address> {
        let fixed = p.get(..8)?;
        let mut a = Address {
            family: fixed[0],
            prefix: fixed[1],
            flags: u32::from(fixed[2]),
            scope: fixed[3],
            index: u32::from_ne_bytes(fixed[4..8].try_into().ok()?),
            addr: Vec::new(),
        };
        let mut local = None;
        for (typ, data) in attrs(&p[8..]) {
            match typ {
                IFA_ADDRESS => a.addr = data.to_vec(),
                IFA_LOCAL => local = Some(data.to_vec()),
                IFA_FLAGS => a.flags = u32::from_ne_bytes(data.get(..4)?.try_into().ok()?),
                _ => {}
            }
        }
        // For a point-to-point link IFA_ADDRESS is the peer.
        if let Some(l) = local {
            a.addr = l;
        }
        Some(a)
    }
}

/// RTM_NEWADDR of `a` on link `index`.
fn addr_msg(index: u32, a: &Address) -> Vec<u8> {
    let mut fixed = [0u8; 8];
    fixed[0] = a.family;
    fixed[1] = a.prefix;
    fixed[4..8].copy_from_slice(&index.to_ne_bytes());
    Msg::new(
        RTM_NEWADDR,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        &fixed,
    )
    .attr(IFA_LOCAL, &a.addr)
    .attr(IFA_ADDRESS, &a.addr)
    .done()
}

/// The (type, data) attributes of a message's tail.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(b.get(..2)?.try_into().ok()?));
        let typ = u16::from_ne_bytes(b.get(2..4)?.try_into().ok()?);
        if len < 4 || len > b.len() {
            return None;
        }
        let data = &b[4..len];
        b = b.get(align(len)..).unwrap_or(&[]);
        Some((typ & 0x3fff, data))
    })
}

/// The messages of a datagram: (type, payload).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let typ = u16::from_ne_bytes(b.get(4..6)?.try_into().ok()?);
        if len < 16 || len > b.len() {
            return None;
        }
        let payload = &b[16..len];
        b = b.get(align(len)..).unwrap_or(&[]);
        Some((typ, payload))
    })
}

/// The errno of an NLMSG_ERROR payload (0: an acknowledgement).
fn error_of(payload: &[u8]) -> nix::errno::Errno {
    let code = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map_or(-libc::EPROTO, i32::from_ne_bytes);
    nix::errno::Errno::from_raw(-code)
}

/// A NETLINK_ROUTE socket.
struct Rtnl(OwnedFd);

impl Rtnl {
    /// `what` names the config item the socket is for, in errors.
    fn open(what: &str) -> Result<Rtnl> {
        socket::socket(
            AddressFamily::Netlink,
            socket::SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map(Rtnl)
        .ctx(|| format!("{what}: netlink socket"))
    }

    /// A socket in the network namespace `netns`: made after a setns
    /// there, and the runtime goes back to its own namespace at once.
    fn open_in(netns: &OwnedFd) -> Result<Rtnl> {
        let own = nix::fcntl::open(
            "/proc/thread-self/ns/net",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ctx(|| "linux.netDevices: open /proc/thread-self/ns/net".into())?;
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .ctx(|| "linux.netDevices: setns into the container's network namespace".into())?;
        let sock = Rtnl::open("linux.netDevices");
        nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .ctx(|| "linux.netDevices: setns back to the runtime's network namespace".into())?;
        sock
    }

    fn send(&self, msg: &[u8]) -> nix::Result<()> {
        socket::sendto(
            self.0.as_raw_fd(),
            msg,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map(drop)
    }

    /// Calls `each` on every message of the reply until the answer ends:
    /// an NLMSG_ERROR (acknowledgement or error) or NLMSG_DONE.
    fn replies(&self, mut each: impl FnMut(u16, &[u8])) -> nix::Result<()> {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = socket::recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            for (typ, payload) in messages(&buf[..n]) {
                match typ {
                    NLMSG_ERROR => {
                        let e = error_of(payload);
                        return if e as i32 == 0 { Ok(()) } else { Err(e) };
                    }
                    NLMSG_DONE => return Ok(()),
                    _ => each(typ, payload),
                }
            }
        }
    }

    /// A request the kernel acknowledges.
    fn request(&self, msg: &[u8]) -> nix::Result<()> {
        self.send(msg)?;
        self.replies(|_, _| {})
    }

    fn dump_addresses(&self) -> nix::Result<Vec<Address>> {
        self.send(&Msg::new(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, &[0u8; 8]).done())?;
        let mut out = Vec::new();
        self.replies(|typ, p| {
            if typ == RTM_NEWADDR {
                out.extend(Address::parse(p));
            }
        })?;
        Ok(out)
    }

    /// The index of a link of this socket's namespace, by name.
    fn index_of(&self, name: &str) -> nix::Result<u32> {
        // With NLM_F_ACK the answer (an RTM_NEWLINK) is followed by an
        // acknowledgement, which ends `replies`.
        let msg = Msg::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, &ifinfomsg(0, 0, 0))
            .attr(IFLA_IFNAME, &[name.as_bytes(), &[0]].concat())
            .done();
        self.send(&msg)?;
        let mut index = None;
        self.replies(|typ, p| {
            if typ == RTM_NEWLINK {
                index = p
                    .get(4..8)
                    .and_then(|b| b.try_into().ok())
                    .map(i32::from_ne_bytes);
            }
        })?;
        index
            .and_then(|i| u32::try_from(i).ok())
            .ok_or(nix::errno::Errno::ENODEV)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn linux(v: serde_json::Value) -> Linux {
        serde_json::from_value(v).expect("typed linux")
    }

    #[test]
    fn the_move_is_one_message_with_name_and_namespace() {
        let m = link_msg(7, 0, Some("ctr0"), Some(9));
        // header 16 + ifinfomsg 16 + IFLA_IFNAME (4 + "ctr0\0" → 12) + IFLA_NET_NS_FD 8
        assert_eq!(m.len(), 52);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()), 52);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWLINK);
        assert_eq!(
            u16::from_ne_bytes(m[6..8].try_into().unwrap()),
            NLM_F_REQUEST | NLM_F_ACK
        );
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        // flags 0 with IFF_UP in the change mask: set down.
        assert_eq!(u32::from_ne_bytes(m[24..28].try_into().unwrap()), 0);
        assert_eq!(u32::from_ne_bytes(m[28..32].try_into().unwrap()), 1);
        let a: Vec<_> = attrs(&m[32..]).collect();
        assert_eq!(
            a,
            [
                (IFLA_IFNAME, &b"ctr0\0"[..]),
                (IFLA_NET_NS_FD, &9u32.to_ne_bytes()[..])
            ]
        );
    }

    #[test]
    fn addresses_round_trip_and_only_permanent_global_ones_move() {
        let a = Address {
            family: libc::AF_INET as u8,
            prefix: 24,
            flags: IFA_F_PERMANENT,
            scope: 0,
            index: 3,
            addr: vec![10, 1, 2, 3],
        };
        let m = addr_msg(3, &a);
        let (typ, payload) = messages(&m).next().expect("one message");
        assert_eq!(typ, RTM_NEWADDR);
        let mut back = Address::parse(payload).expect("parses");
        back.flags = IFA_F_PERMANENT;
        assert_eq!(back, a);
        assert_eq!(a.display(), "10.1.2.3/24");
        assert!(a.movable());
        assert!(!Address {
            scope: 253,
            ..a.clone()
        }
        .movable()); // link scope
        assert!(!Address { flags: 0, ..a }.movable()); // dynamic
    }

    #[test]
    fn kernel_errors_are_read() {
        let ack = Msg::new(NLMSG_ERROR, 0, &0i32.to_ne_bytes()).done();
        let (_, p) = messages(&ack).next().unwrap();
        assert_eq!(error_of(p) as i32, 0);
        let err = Msg::new(NLMSG_ERROR, 0, &(-libc::EEXIST).to_ne_bytes()).done();
        let (_, p) = messages(&err).next().unwrap();
        assert_eq!(error_of(p), nix::errno::Errno::EEXIST);
    }

    #[test]
    fn config_rules() {
        let ok = linux(json!({"namespaces": [{"type": "network"}],
            "netDevices": {"veth1": {"name": "eth0"}, "veth0": {}}}));
        let d = from_spec(&ok, false).expect("valid");
        assert_eq!(
            d,
            [
                NetDevice {
                    host: "veth0".into(),
                    name: "veth0".into()
                },
                NetDevice {
                    host: "veth1".into(),
                    name: "eth0".into()
                }
            ]
        );
        let err = |l: &Linux, rootless| from_spec(l, rootless).unwrap_err().to_string();
        assert!(err(&ok, true).contains("not supported for rootless containers"));
        let no_netns = linux(json!({"namespaces": [], "netDevices": {"veth0": {}}}));
        assert!(err(&no_netns, false).contains("without a private NET namespace"));
        let host = linux(
            json!({"namespaces": [{"type": "network", "path": "/proc/self/ns/net"}],
            "netDevices": {"veth0": {}}}),
        );
        assert!(err(&host, false).contains("to the host network namespace"));
        for bad in ["", "a/b", "a:b", "a b", ".", "..", "sixteen-chars-xx"] {
            let l = linux(json!({"namespaces": [{"type": "network"}],
                "netDevices": {"veth0": {"name": bad}}}));
            if bad.is_empty() {
                assert!(
                    from_spec(&l, false).is_ok(),
                    "an empty name keeps the host's"
                );
            } else {
                assert!(
                    err(&l, false).contains("invalid network device name"),
                    "{bad}"
                );
            }
        }
    }
}
