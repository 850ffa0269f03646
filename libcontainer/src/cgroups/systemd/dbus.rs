//! A minimal, blocking D-Bus client: just enough to call systemd's manager
//! methods as root. It speaks to systemd's private socket
//! (/run/systemd/private, as systemctl does as root: no bus daemon, no
//! Hello), or to the system bus when that is missing.
//!
//! A D-Bus crate (zbus) would pull an async runtime and dozens of crates
//! into a binary that starts in a millisecond; the wire format for method
//! calls with a handful of argument types is small.

use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const PRIVATE: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";

/// A value in a message body, for the types systemd's methods take.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Str(String),
    Bool(bool),
    U64(u64),
    /// `au`
    U32s(Vec<u32>),
    /// `a(sv)`: properties
    Props(Vec<(String, Value)>),
    /// `a(sa(sv))`: auxiliary units (always empty here)
    Aux,
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Str(_) => "s",
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::U32s(_) => "au",
            Value::Props(_) => "a(sv)",
            Value::Aux => "a(sa(sv))",
        }
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
            Value::Str(s) => self.str(s),
            Value::Bool(b) => self.u32(u32::from(*b)),
            Value::U64(n) => self.u64(*n),
            Value::U32s(list) => self.array(4, |b| list.iter().for_each(|&n| b.u32(n))),
            Value::Props(props) => self.array(8, |b| {
                for (name, v) in props {
                    b.pad(8);
                    b.str(name);
                    b.sig(v.signature());
                    b.value(v);
                }
            }),
            Value::Aux => self.array(8, |_| {}),
        }
    }
}

/// Reading a reply: only what is needed to match it and read an error
/// message or an object path.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn align(&mut self, n: usize) {
        self.at = self.at.div_ceil(n) * n;
    }
    fn u32(&mut self) -> Option<u32> {
        self.align(4);
        let v = u32::from_le_bytes(self.b.get(self.at..self.at + 4)?.try_into().ok()?);
        self.at += 4;
        Some(v)
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let s = String::from_utf8_lossy(self.b.get(self.at..self.at + n)?).into_owned();
        self.at += n + 1;
        Some(s)
    }
    fn sig(&mut self) -> Option<String> {
        let n = *self.b.get(self.at)? as usize;
        let s = String::from_utf8_lossy(self.b.get(self.at + 1..self.at + 1 + n)?).into_owned();
        self.at += n + 2;
        Some(s)
    }
}

/// A message received: its type, the serial it replies to, its error
/// name, and its first string-like body argument.
#[derive(Debug)]
struct Incoming {
    typ: u8,
    reply_serial: Option<u32>,
    error: Option<String>,
    first_arg: Option<String>,
}

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

pub(crate) struct Conn {
    sock: BufReader<UnixStream>,
    serial: u32,
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::invalid("systemd", format!("D-Bus: {what}"))
}

impl Conn {
    /// Connects and authenticates as our uid (SASL EXTERNAL).
    pub(crate) fn system() -> Result<Conn> {
        let (sock, bus) = match UnixStream::connect(PRIVATE) {
            Ok(s) => (s, false),
            Err(_) => (
                UnixStream::connect(SYSTEM_BUS).map_err(|e| {
                    err(format!(
                        "connect to {PRIVATE} or {SYSTEM_BUS}: {e} (is systemd running as init?)"
                    ))
                })?,
                true,
            ),
        };
        let timeout = Some(Duration::from_secs(30));
        sock.set_read_timeout(timeout)
            .and_then(|()| sock.set_write_timeout(timeout))
            .map_err(|e| err(format!("socket timeouts: {e}")))?;
        let mut c = Conn {
            sock: BufReader::new(sock),
            serial: 0,
        };
        let uid: String = nix::unistd::getuid()
            .as_raw()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        // BEGIN goes with AUTH, as sd-bus sends it, and the first message
        // only after the server's OK: systemd 252 can leave a message that
        // arrives in the same read as BEGIN unprocessed until more data
        // comes (seen as calls that never get a reply).
        c.write(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes())?;
        let mut line = String::new();
        c.sock
            .read_line(&mut line)
            .map_err(|e| err(format!("authentication: {e}")))?;
        if !line.starts_with("OK ") {
            return Err(err(format!("authentication refused: {}", line.trim())));
        }
        if bus {
            c.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
            )?;
        }
        Ok(c)
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.sock
            .get_mut()
            .write_all(b)
            .map_err(|e| err(format!("write: {e}")))
    }

    /// Calls a method and waits for its reply; returns the reply's first
    /// argument when it is a string or object path. A D-Bus error becomes
    /// an Error carrying its name and message.
    pub(crate) fn call(
        &mut self,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[Value],
    ) -> Result<Option<String>> {
        self.serial += 1;
        let serial = self.serial;
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
        self.write(&m.0)?;
        loop {
            let msg = read_message(&mut self.sock)?;
            if msg.reply_serial != Some(serial) {
                continue; // a signal or something else not ours
            }
            return match msg.typ {
                METHOD_RETURN => Ok(msg.first_arg),
                ERROR => Err(Error::invalid(
                    "systemd",
                    format!(
                        "{member}: {}: {}",
                        msg.error.unwrap_or_default(),
                        msg.first_arg.unwrap_or_default()
                    ),
                )),
                _ => continue,
            };
        }
    }
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
    let (mut reply_serial, mut error, mut body_sig) = (None, None, String::new());
    while r.at < 16 + fields_len {
        r.align(8);
        let Some(&code) = all.get(r.at) else { break };
        r.at += 1;
        let sig = r.sig().ok_or_else(|| err("bad header"))?;
        match (code, sig.as_str()) {
            (5, "u") => reply_serial = r.u32(),
            (4, "s") => error = r.str(),
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
    let first_arg = match body_sig.chars().next() {
        Some('s' | 'o') => body.str(),
        _ => None,
    };
    Ok(Incoming {
        typ: fixed[1],
        reply_serial,
        error,
        first_arg,
    })
}

/// For the fuzz target: one message read from `bytes`, described.
#[cfg(feature = "fuzzing")]
pub fn read_reply_for_fuzzing(mut bytes: &[u8]) -> Result<String> {
    read_message(&mut bytes).map(|m| format!("{m:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply to serial 1 of type `typ` with the error name `error` (if
    /// any) and a string-like first argument of signature `sig`.
    fn reply(typ: u8, error: Option<&str>, sig: &str, arg: &str) -> Vec<u8> {
        let mut body = Buf::default();
        body.str(arg);
        let mut m = Buf::default();
        m.u8(b'l');
        m.u8(typ);
        m.u8(0);
        m.u8(1);
        m.u32(body.0.len() as u32);
        m.u32(9);
        m.array(8, |h| {
            h.pad(8);
            h.u8(5);
            h.sig("u");
            h.u32(1);
            if let Some(e) = error {
                h.pad(8);
                h.u8(4);
                h.sig("s");
                h.str(e);
            }
            h.pad(8);
            h.u8(8);
            h.sig("g");
            h.sig(sig);
        });
        m.pad(8);
        m.0.extend_from_slice(&body.0);
        m.0
    }

    #[test]
    fn replies_are_read() {
        let job = "/org/freedesktop/systemd1/job/42";
        let m = read_message(&mut &reply(METHOD_RETURN, None, "o", job)[..]).unwrap();
        assert_eq!(
            (m.typ, m.reply_serial, m.error, m.first_arg.as_deref()),
            (METHOD_RETURN, Some(1), None, Some(job))
        );
        let no = "org.freedesktop.systemd1.NoSuchUnit";
        let m = read_message(&mut &reply(ERROR, Some(no), "s", "gone")[..]).unwrap();
        assert_eq!(
            (m.typ, m.error.as_deref(), m.first_arg.as_deref()),
            (ERROR, Some(no), Some("gone"))
        );
    }

    /// A header that claims a large body is not believed before the bytes
    /// come: a peer that closes early gets an error, not 100 MiB of zeros.
    #[test]
    fn a_short_reply_is_an_error() {
        let mut m = reply(METHOD_RETURN, None, "o", "/x");
        m[4..8].copy_from_slice(&(100u32 << 20).to_le_bytes());
        let e = read_message(&mut &m[..]).unwrap_err();
        assert!(e.to_string().contains("closed mid-message"), "{e}");
    }

    #[test]
    fn properties_are_marshalled_with_alignment() {
        let mut b = Buf::default();
        b.u8(1); // misalign, as inside a message
        b.value(&Value::Props(vec![
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
}
