//! A minimal, blocking D-Bus client: just enough to call systemd's manager
//! methods and wait for its `JobRemoved` signals. It speaks to systemd's
//! private socket (as systemctl does: no bus daemon, no Hello), or to a
//! bus (the system bus for root, the user's session bus for a rootless
//! caller) when that is missing.
//!
//! Every step has a deadline: connecting (a listener whose backlog is full
//! blocks connect(2)), each write and each read (a peer that keeps sending
//! signals but never the reply must not hold us either).
//!
//! A D-Bus crate (zbus) would pull an async runtime and dozens of crates
//! into a binary that starts in a millisecond; the wire format for method
//! calls with a handful of argument types is small.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long one operation (a call, or a job to finish) may take: runc's.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// A value in a message body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Byte(u8),
    Bool(bool),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Path(String),
    Sig(String),
    /// Element signature, elements.
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
}

impl Value {
    pub(crate) fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I16(_) => "n".into(),
            Value::U16(_) => "q".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::I64(_) => "x".into(),
            Value::U64(_) => "t".into(),
            Value::F64(_) => "d".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => {
                format!(
                    "({})",
                    fields.iter().map(Value::signature).collect::<String>()
                )
            }
            Value::Variant(_) => "v".into(),
        }
    }

    /// `a(sv)`: unit properties.
    pub(crate) fn props(props: Vec<(String, Value)>) -> Value {
        Value::Array(
            "(sv)".into(),
            props
                .into_iter()
                .map(|(k, v)| Value::Struct(vec![Value::Str(k), Value::Variant(Box::new(v))]))
                .collect(),
        )
    }
}

/// The alignment of the type a signature starts with.
fn alignment(sig: &str) -> usize {
    match sig.as_bytes().first() {
        Some(b'n' | b'q') => 2,
        Some(b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h') => 4,
        Some(b'x' | b't' | b'd' | b'(' | b'{') => 8,
        _ => 1,
    }
}

/// Little-endian marshalling with D-Bus alignment (relative to the start
/// of the message).
#[derive(Default)]
struct Buf(Vec<u8>);

impl Buf {
    fn pad(&mut self, align: usize) {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.pad(2);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.pad(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.pad(8);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.u8(s.len() as u8);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
    /// An array: length, padding to the element alignment, elements.
    fn array(&mut self, elem_align: usize, f: impl FnOnce(&mut Buf)) {
        self.pad(4);
        let at = self.0.len();
        self.0.extend_from_slice(&[0; 4]);
        self.pad(elem_align);
        let start = self.0.len();
        f(self);
        let len = (self.0.len() - start) as u32;
        self.0[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Byte(n) => self.u8(*n),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::I16(n) => self.u16(*n as u16),
            Value::U16(n) => self.u16(*n),
            Value::I32(n) => self.u32(*n as u32),
            Value::U32(n) => self.u32(*n),
            Value::I64(n) => self.u64(*n as u64),
            Value::U64(n) => self.u64(*n),
            Value::F64(n) => self.u64(n.to_bits()),
            Value::Str(s) | Value::Path(s) => self.str(s),
            Value::Sig(s) => self.sig(s),
            Value::Array(elem, items) => {
                self.array(alignment(elem), |b| items.iter().for_each(|v| b.value(v)))
            }
            Value::Struct(fields) => {
                self.pad(8);
                fields.iter().for_each(|v| self.value(v));
            }
            Value::Variant(v) => {
                self.sig(&v.signature());
                self.value(v);
            }
        }
    }
}

/// Reading a message: the header fields and the leading basic-typed body
/// arguments (what method replies and the signals waited for carry).
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn align(&mut self, n: usize) {
        self.at = self.at.div_ceil(n) * n;
    }
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at + n)?;
        self.at += n;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.align(4);
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        self.align(8);
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Some(s)
    }
    fn sig(&mut self) -> Option<String> {
        let n = *self.take(1)?.first()? as usize;
        let s = String::from_utf8_lossy(self.take(n)?).into_owned();
        self.take(1)?;
        Some(s)
    }
    /// One argument of a basic type (or a variant holding one); None at
    /// anything else.
    fn arg(&mut self, typ: u8) -> Option<Arg> {
        Some(match typ {
            b's' | b'o' => Arg::Str(self.str()?),
            b'g' => Arg::Str(self.sig()?),
            b'y' => Arg::Num(u64::from(*self.take(1)?.first()?)),
            b'b' | b'u' | b'i' => Arg::Num(u64::from(self.u32()?)),
            b't' | b'x' => Arg::Num(self.u64()?),
            b'v' => {
                let sig = self.sig()?;
                match sig.as_bytes() {
                    [t] => self.arg(*t)?,
                    _ => return None,
                }
            }
            _ => return None,
        })
    }
}

/// A body argument of a basic type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Str(String),
    Num(u64),
}

impl Arg {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Arg::Str(s) => Some(s),
            Arg::Num(_) => None,
        }
    }
}

/// A message received.
#[derive(Debug)]
struct Incoming {
    typ: u8,
    reply_serial: Option<u32>,
    error: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    /// The leading body arguments of basic types.
    args: Vec<Arg>,
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;
const SIGNAL: u8 = 4;

const MANAGER_IFACE: &str = "org.freedesktop.systemd1.Manager";

/// Which systemd to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bus {
    /// PID 1, as root.
    System,
    /// The calling user's `systemd --user` (rootless).
    User,
}

/// Where a bus is: a path or an abstract name.
#[derive(Debug, PartialEq, Eq)]
enum Address {
    Path(PathBuf),
    Abstract(String),
}

/// The socket addresses to try for `bus`, in order, each with whether it
/// is a bus daemon (which wants Hello): systemd's private socket first, as
/// systemctl; then the bus. For the user: `$DBUS_SESSION_BUS_ADDRESS`, else
/// `$XDG_RUNTIME_DIR/bus`, as runc finds it.
fn addresses(
    bus: Bus,
    runtime_dir: Option<&str>,
    session: Option<&str>,
) -> Result<Vec<(Address, bool)>> {
    match bus {
        Bus::System => Ok(vec![
            (Address::Path("/run/systemd/private".into()), false),
            (Address::Path("/run/dbus/system_bus_socket".into()), true),
        ]),
        Bus::User => {
            let mut out = Vec::new();
            let dir = runtime_dir.filter(|d| !d.is_empty());
            if let Some(dir) = dir {
                out.push((Address::Path(Path::new(dir).join("systemd/private")), false));
            }
            match session.and_then(parse_address) {
                Some(a) => out.push((a, true)),
                None => {
                    if let Some(dir) = dir {
                        out.push((Address::Path(Path::new(dir).join("bus")), true));
                    }
                }
            }
            if out.is_empty() {
                return Err(err(
                    "rootless: neither $XDG_RUNTIME_DIR nor $DBUS_SESSION_BUS_ADDRESS is set: \
                     cannot find the user's systemd (is there a user session? \
                     `loginctl enable-linger` makes one)",
                ));
            }
            Ok(out)
        }
    }
}

/// The first `unix:` address of a D-Bus address list
/// (`unix:path=/run/user/1000/bus,guid=...;...`).
fn parse_address(list: &str) -> Option<Address> {
    list.split(';').find_map(|a| {
        let params = a.strip_prefix("unix:")?;
        params.split(',').find_map(|kv| match kv.split_once('=')? {
            ("path", p) => Some(Address::Path(unescape(p).into())),
            ("abstract", n) => Some(Address::Abstract(unescape(n))),
            _ => None,
        })
    })
}

/// D-Bus address values escape bytes as `%xx`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Our uid as systemd sees it, outside our user namespace (rootless
/// podman runs the runtime as root of one): the id EXTERNAL authenticates
/// as, which systemd checks against the socket's peer credentials.
fn peer_uid() -> u32 {
    let uid = nix::unistd::getuid().as_raw();
    std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|map| crate::rootless::host_id(&map, uid))
        .unwrap_or(uid)
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::invalid("systemd", format!("D-Bus: {what}"))
}

/// The time left until `deadline`, or an error naming `what` timed out.
fn left(deadline: Instant, what: &str) -> Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| err(format!("{what}: timed out after {}s", TIMEOUT.as_secs())))
}

/// connect(2) without blocking past `deadline`: a unix socket's connect
/// blocks while the listener's backlog is full (a stuck systemd), and a
/// non-blocking one says EAGAIN then, to be retried.
fn connect(addr: &Address, deadline: Instant) -> std::io::Result<UnixStream> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let sa = match addr {
        Address::Path(p) => UnixAddr::new(p.as_path()),
        Address::Abstract(n) => UnixAddr::new_abstract(n.as_bytes()),
    }?;
    let fd: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    loop {
        match nix::sys::socket::connect(fd.as_raw_fd(), &sa) {
            Ok(()) => break,
            Err(nix::errno::Errno::EAGAIN) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let s = UnixStream::from(fd);
    s.set_nonblocking(false)?;
    Ok(s)
}

pub(crate) struct Conn {
    sock: BufReader<UnixStream>,
    serial: u32,
    /// Whether this is a bus daemon (signals need a match rule there).
    bus: bool,
    /// JobRemoved signals read while waiting for a reply.
    jobs_removed: VecDeque<Vec<Arg>>,
}

impl Conn {
    /// Connects to `bus` and authenticates as our uid (SASL EXTERNAL).
    pub(crate) fn open(bus: Bus) -> Result<Conn> {
        let deadline = Instant::now() + TIMEOUT;
        let runtime_dir = std::env::var("XDG_RUNTIME_DIR").ok();
        let session = std::env::var("DBUS_SESSION_BUS_ADDRESS").ok();
        let mut tried = Vec::new();
        for (addr, is_bus) in addresses(bus, runtime_dir.as_deref(), session.as_deref())? {
            match connect(&addr, deadline) {
                Ok(s) => return Conn::start(s, is_bus, deadline),
                Err(e) => tried.push(format!("{addr:?}: {e}")),
            }
        }
        let hint = match bus {
            Bus::System => "is systemd running as init?",
            Bus::User => "is the user's systemd running? (`loginctl enable-linger`)",
        };
        Err(err(format!("connect: {} ({hint})", tried.join(", "))))
    }

    fn start(sock: UnixStream, bus: bool, deadline: Instant) -> Result<Conn> {
        let mut c = Conn {
            sock: BufReader::new(sock),
            serial: 0,
            bus,
            jobs_removed: VecDeque::new(),
        };
        let uid: String = peer_uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        // BEGIN goes with AUTH, as sd-bus sends it, and the first message
        // only after the server's OK: systemd 252 can leave a message that
        // arrives in the same read as BEGIN unprocessed until more data
        // comes (seen as calls that never get a reply).
        c.write(
            format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes(),
            deadline,
        )?;
        c.set_read_deadline(deadline, "authentication")?;
        let mut line = String::new();
        c.sock
            .read_line(&mut line)
            .map_err(|e| err(format!("authentication: {e}")))?;
        if !line.starts_with("OK ") {
            return Err(err(format!("authentication refused: {}", line.trim())));
        }
        if bus {
            c.call_by(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
                deadline,
            )?;
        }
        Ok(c)
    }

    fn set_read_deadline(&mut self, deadline: Instant, what: &str) -> Result<()> {
        let t = left(deadline, what)?;
        self.sock
            .get_ref()
            .set_read_timeout(Some(t))
            .map_err(|e| err(format!("socket timeout: {e}")))
    }

    fn write(&mut self, b: &[u8], deadline: Instant) -> Result<()> {
        let t = left(deadline, "write")?;
        let s = self.sock.get_mut();
        s.set_write_timeout(Some(t))
            .and_then(|()| s.write_all(b))
            .map_err(|e| err(format!("write: {e}")))
    }

    /// Reads the next message, by `deadline`.
    fn recv(&mut self, deadline: Instant, what: &str) -> Result<Incoming> {
        self.set_read_deadline(deadline, what)?;
        read_message(&mut self.sock).map_err(|e| {
            // A read that timed out says EAGAIN: name what was waited for.
            if Instant::now() >= deadline {
                err(format!("{what}: timed out after {}s", TIMEOUT.as_secs()))
            } else {
                e
            }
        })
    }

    /// Asks for the JobRemoved signals: a bus daemon routes a broadcast
    /// only to who asked for it (on the private socket systemd sends its
    /// signals to every peer anyway). Done before the job is queued, so
    /// that its end cannot pass unseen.
    pub(crate) fn watch_jobs(&mut self) -> Result<()> {
        if !self.bus {
            return Ok(());
        }
        let rule = format!(
            "type='signal',sender='org.freedesktop.systemd1',interface='{MANAGER_IFACE}',member='JobRemoved',path='/org/freedesktop/systemd1'"
        );
        self.call_by(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            &[Value::Str(rule)],
            Instant::now() + TIMEOUT,
        )
        .map(|_| ())
    }

    /// Calls a method of systemd's manager object and waits for the reply;
    /// returns its leading basic-typed arguments. A D-Bus error becomes an
    /// Error carrying its name and message.
    pub(crate) fn call(&mut self, iface: &str, member: &str, args: &[Value]) -> Result<Vec<Arg>> {
        self.call_by(
            "org.freedesktop.systemd1",
            "/org/freedesktop/systemd1",
            iface,
            member,
            args,
            Instant::now() + TIMEOUT,
        )
    }

    fn call_by(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
        deadline: Instant,
    ) -> Result<Vec<Arg>> {
        self.serial += 1;
        let serial = self.serial;
        self.write(
            &method_call(serial, dest, path, iface, member, args),
            deadline,
        )?;
        loop {
            let msg = self.recv(deadline, member)?;
            if msg.typ == SIGNAL {
                self.keep_signal(msg);
                continue;
            }
            if msg.reply_serial != Some(serial) {
                continue;
            }
            return match msg.typ {
                METHOD_RETURN => Ok(msg.args),
                ERROR => Err(Error::invalid(
                    "systemd",
                    format!(
                        "{member}: {}: {}",
                        msg.error.unwrap_or_default(),
                        msg.args.first().and_then(Arg::as_str).unwrap_or_default()
                    ),
                )),
                _ => continue,
            };
        }
    }

    fn keep_signal(&mut self, msg: Incoming) {
        if msg.interface.as_deref() == Some(MANAGER_IFACE)
            && msg.member.as_deref() == Some("JobRemoved")
        {
            self.jobs_removed.push_back(msg.args);
        }
    }

    /// Waits, by `deadline`, for the JobRemoved signal of job `job` (an
    /// object path); returns its result ("done", "failed", "timeout"...).
    pub(crate) fn wait_job(&mut self, job: &str, deadline: Instant) -> Result<String> {
        loop {
            // JobRemoved(u id, o job, s unit, s result)
            if let Some(i) = self
                .jobs_removed
                .iter()
                .position(|a| a.get(1).and_then(Arg::as_str) == Some(job))
            {
                let args = self.jobs_removed.remove(i).unwrap_or_default();
                return Ok(args
                    .get(3)
                    .and_then(Arg::as_str)
                    .unwrap_or_default()
                    .to_string());
            }
            let msg = self.recv(deadline, "JobRemoved")?;
            if msg.typ == SIGNAL {
                self.keep_signal(msg);
            }
        }
    }
}

fn method_call(
    serial: u32,
    dest: &str,
    path: &str,
    iface: &str,
    member: &str,
    args: &[Value],
) -> Vec<u8> {
    let sig: String = args.iter().map(Value::signature).collect();
    let mut body = Buf::default();
    for a in args {
        body.value(a);
    }
    let mut m = Buf::default();
    m.u8(b'l');
    m.u8(METHOD_CALL);
    m.u8(0); // flags
    m.u8(1); // protocol version
    m.u32(body.0.len() as u32);
    m.u32(serial);
    m.array(8, |h| {
        let field = |h: &mut Buf, code: u8, sig: &str, f: &dyn Fn(&mut Buf)| {
            h.pad(8);
            h.u8(code);
            h.sig(sig);
            f(h);
        };
        field(h, 1, "o", &|h| h.str(path));
        field(h, 2, "s", &|h| h.str(iface));
        field(h, 3, "s", &|h| h.str(member));
        field(h, 6, "s", &|h| h.str(dest));
        if !sig.is_empty() {
            field(h, 8, "g", &|h| h.sig(&sig));
        }
    });
    m.pad(8);
    m.0.extend_from_slice(&body.0);
    m.0
}

/// Reads one message (systemd is a peer like any other: its bytes are
/// checked, and what a header claims is only allocated as it arrives).
fn read_message(src: &mut impl Read) -> Result<Incoming> {
    let mut fixed = [0u8; 16];
    src.read_exact(&mut fixed)
        .map_err(|e| err(format!("read reply: {e}")))?;
    if fixed[0] != b'l' {
        return Err(err("big-endian replies are not supported"));
    }
    let body_len = u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]) as usize;
    let fields_len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]) as usize;
    let header_end = (16 + fields_len).div_ceil(8) * 8;
    let total = header_end + body_len;
    if total > 128 << 20 {
        return Err(err("reply too large"));
    }
    let mut all = fixed.to_vec();
    src.take((total - 16) as u64)
        .read_to_end(&mut all)
        .map_err(|e| err(format!("read reply: {e}")))?;
    if all.len() < total {
        return Err(err("read reply: connection closed mid-message"));
    }
    let mut r = Reader { b: &all, at: 16 };
    let mut m = Incoming {
        typ: fixed[1],
        reply_serial: None,
        error: None,
        interface: None,
        member: None,
        args: Vec::new(),
    };
    let mut body_sig = String::new();
    while r.at < 16 + fields_len {
        r.align(8);
        let Some(&code) = all.get(r.at) else { break };
        r.at += 1;
        let sig = r.sig().ok_or_else(|| err("bad header"))?;
        match (code, sig.as_str()) {
            (5, "u") => m.reply_serial = r.u32(),
            (4, "s") => m.error = r.str(),
            (2, "s") => m.interface = r.str(),
            (3, "s") => m.member = r.str(),
            (8, "g") => body_sig = r.sig().unwrap_or_default(),
            (_, "s" | "o") => {
                r.str();
            }
            (_, "g") => {
                r.sig();
            }
            (_, "u") => {
                r.u32();
            }
            _ => return Err(err(format!("unexpected header field type {sig}"))),
        }
    }
    let mut body = Reader {
        b: &all,
        at: header_end,
    };
    for t in body_sig.bytes() {
        match body.arg(t) {
            Some(a) => m.args.push(a),
            None => break,
        }
    }
    Ok(m)
}

/// For the fuzz target: one message read from `bytes`, described.
#[cfg(feature = "fuzzing")]
pub fn read_reply_for_fuzzing(mut bytes: &[u8]) -> Result<String> {
    read_message(&mut bytes).map(|m| format!("{m:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of type `typ` replying to serial 1, with the error name
    /// `error` (if any), interface and member (for signals) and `body`.
    fn message(
        typ: u8,
        error: Option<&str>,
        signal: Option<(&str, &str)>,
        body: &[Value],
    ) -> Vec<u8> {
        let mut b = Buf::default();
        body.iter().for_each(|v| b.value(v));
        let sig: String = body.iter().map(Value::signature).collect();
        let mut m = Buf::default();
        m.u8(b'l');
        m.u8(typ);
        m.u8(0);
        m.u8(1);
        m.u32(b.0.len() as u32);
        m.u32(9);
        m.array(8, |h| {
            let field = |h: &mut Buf, code: u8, s: &str, v: &str| {
                h.pad(8);
                h.u8(code);
                h.sig(s);
                if s == "u" {
                    h.u32(v.parse().unwrap());
                } else {
                    h.str(v);
                }
            };
            if let Some((iface, member)) = signal {
                field(h, 1, "o", "/org/freedesktop/systemd1");
                field(h, 2, "s", iface);
                field(h, 3, "s", member);
            } else {
                field(h, 5, "u", "1");
            }
            if let Some(e) = error {
                field(h, 4, "s", e);
            }
            h.pad(8);
            h.u8(8);
            h.sig("g");
            h.sig(&sig);
        });
        m.pad(8);
        m.0.extend_from_slice(&b.0);
        m.0
    }

    #[test]
    fn replies_are_read() {
        let job = "/org/freedesktop/systemd1/job/42";
        let body = [Value::Path(job.into())];
        let m = read_message(&mut &message(METHOD_RETURN, None, None, &body)[..]).unwrap();
        assert_eq!(
            (m.typ, m.reply_serial, m.error, m.args),
            (METHOD_RETURN, Some(1), None, vec![Arg::Str(job.into())])
        );
        let no = "org.freedesktop.systemd1.NoSuchUnit";
        let m =
            read_message(&mut &message(ERROR, Some(no), None, &[Value::Str("gone".into())])[..])
                .unwrap();
        assert_eq!(
            (m.typ, m.error.as_deref(), m.args),
            (ERROR, Some(no), vec![Arg::Str("gone".into())])
        );
        // Properties.Get: a variant holding a string.
        let v = [Value::Variant(Box::new(Value::Str("252".into())))];
        let m = read_message(&mut &message(METHOD_RETURN, None, None, &v)[..]).unwrap();
        assert_eq!(m.args, [Arg::Str("252".into())]);
    }

    #[test]
    fn job_removed_signals_are_read_and_kept_for_their_job() {
        let signal = |id: u32, job: &str, result: &str| {
            message(
                SIGNAL,
                None,
                Some((MANAGER_IFACE, "JobRemoved")),
                &[
                    Value::U32(id),
                    Value::Path(job.into()),
                    Value::Str("keel-x.scope".into()),
                    Value::Str(result.into()),
                ],
            )
        };
        let m = read_message(&mut &signal(7, "/job/7", "failed")[..]).unwrap();
        assert_eq!((m.typ, m.member.as_deref()), (SIGNAL, Some("JobRemoved")));
        assert_eq!(
            m.args,
            [
                Arg::Num(7),
                Arg::Str("/job/7".into()),
                Arg::Str("keel-x.scope".into()),
                Arg::Str("failed".into())
            ]
        );
        // Two signals, the one waited for second, then nothing: found
        // without blocking, the other kept.
        let (a, b) = UnixStream::pair().unwrap();
        let mut peer = a;
        peer.write_all(&signal(6, "/job/6", "done")).unwrap();
        peer.write_all(&signal(7, "/job/7", "failed")).unwrap();
        let mut c = Conn {
            sock: BufReader::new(b),
            serial: 0,
            bus: false,
            jobs_removed: VecDeque::new(),
        };
        let soon = Instant::now() + Duration::from_secs(5);
        assert_eq!(c.wait_job("/job/7", soon).unwrap(), "failed");
        assert_eq!(c.wait_job("/job/6", soon).unwrap(), "done");
        // Nothing more comes: the deadline ends the wait with an error.
        let e = c
            .wait_job("/job/8", Instant::now() + Duration::from_millis(50))
            .unwrap_err()
            .to_string();
        assert!(e.contains("JobRemoved: timed out"), "{e}");
        drop(peer);
    }

    /// A header that claims a large body is not believed before the bytes
    /// come: a peer that closes early gets an error, not 100 MiB of zeros.
    #[test]
    fn a_short_reply_is_an_error() {
        let mut m = message(METHOD_RETURN, None, None, &[Value::Path("/x".into())]);
        m[4..8].copy_from_slice(&(100u32 << 20).to_le_bytes());
        let e = read_message(&mut &m[..]).unwrap_err();
        assert!(e.to_string().contains("closed mid-message"), "{e}");
    }

    #[test]
    fn properties_are_marshalled_with_alignment() {
        let mut b = Buf::default();
        b.u8(1); // misalign, as inside a message
        b.value(&Value::props(vec![
            ("Delegate".into(), Value::Bool(true)),
            ("MemoryMax".into(), Value::U64(1 << 20)),
        ]));
        let want: Vec<u8> = [
            &[1u8, 0, 0, 0][..],
            &56u32.to_le_bytes(), // array length, from the first struct
            // struct 1 at 8: "Delegate", sig "b", u32 1
            &8u32.to_le_bytes(),
            b"Delegate\0",
            &[1, b'b', 0],
            &1u32.to_le_bytes(),
            &[0, 0, 0, 0], // pad to 8 for struct 2
            // struct 2 at 32: "MemoryMax", sig "t", pad, u64
            &9u32.to_le_bytes(),
            b"MemoryMax\0",
            &[1, b't', 0],
            &[0, 0, 0, 0, 0, 0, 0],
            &(1u64 << 20).to_le_bytes(),
        ]
        .concat();
        assert_eq!(b.0, want);
    }

    #[test]
    fn byte_arrays_and_string_pairs_are_marshalled() {
        let mut b = Buf::default();
        b.value(&Value::Array(
            "y".into(),
            vec![Value::Byte(5), Value::Byte(1)],
        ));
        assert_eq!(b.0, [2, 0, 0, 0, 5, 1]);
        let mut b = Buf::default();
        let pair = Value::Struct(vec![
            Value::Str("char-pts".into()),
            Value::Str("rwm".into()),
        ]);
        b.value(&Value::Array("(ss)".into(), vec![pair]));
        let want: Vec<u8> = [
            &24u32.to_le_bytes()[..],
            &[0, 0, 0, 0], // structs align to 8
            &8u32.to_le_bytes(),
            b"char-pts\0",
            &[0, 0, 0],
            &3u32.to_le_bytes(),
            b"rwm\0",
        ]
        .concat();
        assert_eq!(b.0, want);
        assert_eq!(
            Value::Array("(ss)".into(), vec![]).signature(),
            "a(ss)".to_string()
        );
    }

    #[test]
    fn bus_addresses_in_order() {
        use Address::*;
        assert_eq!(
            addresses(Bus::User, Some("/run/user/1000"), None).unwrap(),
            [
                (Path("/run/user/1000/systemd/private".into()), false),
                (Path("/run/user/1000/bus".into()), true)
            ]
        );
        assert_eq!(
            addresses(
                Bus::User,
                Some("/run/user/1000"),
                Some("unix:abstract=/tmp/dbus-x%2dy,guid=1;unix:path=/z")
            )
            .unwrap()[1],
            (Abstract("/tmp/dbus-x-y".into()), true)
        );
        assert_eq!(
            addresses(Bus::User, None, Some("tcp:host=a;unix:path=/run/b")).unwrap(),
            [(Path("/run/b".into()), true)]
        );
        let e = addresses(Bus::User, None, None).unwrap_err().to_string();
        assert!(e.contains("XDG_RUNTIME_DIR"), "{e}");
        assert_eq!(addresses(Bus::System, None, None).unwrap().len(), 2);
    }
}
