//! `org.systemd.property.<Name>` annotations: extra unit properties, as
//! runc passes them (specconv's initSystemdProps). The value is GVariant
//! text as godbus's ParseVariant reads it without a type hint: `true`, a
//! number (int32, or double with `.`/`e`), a quoted string, an array
//! `[...]` of one type, each optionally typed (`uint64 600`, `@t 600`,
//! `@as []`). A name ending in a lowercase letter and `Sec` is the
//! property's `USec` form, its number times 10^6 as a uint64.

use super::dbus::Value;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

const PREFIX: &str = "org.systemd.property.";

/// The config's annotations that are unit properties, by name.
pub(crate) fn select<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The annotations' properties (in name order); runc's errors.
pub(crate) fn properties(annotations: &BTreeMap<String, String>) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (k, v) in annotations {
        if !k.starts_with(PREFIX) {
            continue;
        }
        let mut name = k[PREFIX.len()..].to_string();
        let why = if name.len() < 3 {
            Some("too short")
        } else if !name.bytes().all(|c| c.is_ascii_alphabetic()) {
            Some("contains non-alphabetic character")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::invalid(
                "annotations",
                format!("annotation {k} name incorrect: {why}"),
            ));
        }
        let bad = |e: String| {
            Error::invalid(
                "annotations",
                format!("annotation {k}={v} value parse error: {e}"),
            )
        };
        let mut value = parse(v).map_err(bad)?;
        if let Some(base) = name.strip_suffix("Sec") {
            if base.ends_with(|c: char| c.is_ascii_lowercase()) {
                name = format!("{base}USec");
                value = Value::U64(seconds_to_usec(&value).map_err(bad)?);
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

fn seconds_to_usec(v: &Value) -> std::result::Result<u64, String> {
    const M: u64 = 1_000_000;
    // As runc's convertSecToUSec: Go's conversions wrap a negative.
    Ok(match *v {
        Value::Byte(n) => u64::from(n) * M,
        Value::I16(n) => (n as u64).wrapping_mul(M),
        Value::U16(n) => u64::from(n) * M,
        Value::I32(n) => (n as u64).wrapping_mul(M),
        Value::U32(n) => u64::from(n) * M,
        Value::I64(n) => (n as u64).wrapping_mul(M),
        Value::U64(n) => n.wrapping_mul(M),
        Value::F64(n) => (n * M as f64) as u64,
        _ => return Err("not a number".into()),
    })
}

/// A GVariant text value (the subset above).
pub(crate) fn parse(text: &str) -> std::result::Result<Value, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        at: 0,
    };
    let v = p.value(None)?;
    p.ws();
    if p.at != p.s.len() {
        return Err(format!("unexpected {:?}", &text[p.at..]));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

/// godbus's type keywords.
const KEYWORDS: [(&str, &str); 12] = [
    ("boolean", "b"),
    ("byte", "y"),
    ("int16", "n"),
    ("uint16", "q"),
    ("int32", "i"),
    ("uint32", "u"),
    ("int64", "x"),
    ("uint64", "t"),
    ("double", "d"),
    ("string", "s"),
    ("objectpath", "o"),
    ("signature", "g"),
];

impl Parser<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    /// The word (letters, digits and `@`-signature characters) at the cursor.
    fn word(&mut self) -> &str {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"@()_{}+-.".contains(&c))
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at]).unwrap_or_default()
    }

    /// A value, of signature `want` when given.
    fn value(&mut self, want: Option<&str>) -> std::result::Result<Value, String> {
        self.ws();
        let start = self.at;
        let c = self.peek().ok_or("unexpected end")?;
        // A type annotation, then the value.
        if c == b'@' || c.is_ascii_alphabetic() {
            let w = self.word().to_string();
            if let Some(sig) = w.strip_prefix('@') {
                return self.typed(sig, want);
            }
            if let Some((_, sig)) = KEYWORDS.iter().find(|(k, _)| *k == w) {
                return self.typed(sig, want);
            }
            let b = match w.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(format!("unexpected {w:?}")),
            };
            return match want {
                None | Some("b") => Ok(Value::Bool(b)),
                Some(t) => Err(format!("can't parse {w:?} as type {t:?}")),
            };
        }
        match c {
            b'\'' | b'"' => {
                let s = self.string(c)?;
                match want {
                    None | Some("s") => Ok(Value::Str(s)),
                    Some("o") => Ok(Value::Path(s)),
                    Some("g") => Ok(Value::Sig(s)),
                    Some(t) => Err(format!("invalid type {t:?} for string")),
                }
            }
            b'[' => {
                self.at += 1;
                self.array(want)
            }
            b'-' | b'+' | b'0'..=b'9' | b'.' => {
                let w = self.word().to_string();
                number(&w, want)
            }
            _ => Err(format!(
                "unexpected {:?}",
                String::from_utf8_lossy(&self.s[start..])
            )),
        }
    }

    fn typed(&mut self, sig: &str, want: Option<&str>) -> std::result::Result<Value, String> {
        if want.is_some_and(|w| w != sig) {
            return Err(format!("type {sig:?} where {want:?} is expected"));
        }
        self.value(Some(sig))
    }

    fn string(&mut self, quote: u8) -> std::result::Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let rest = std::str::from_utf8(&self.s[self.at..]).map_err(|_| "invalid UTF-8")?;
            let mut chars = rest.chars();
            let c = chars.next().ok_or("unterminated string")?;
            self.at += c.len_utf8();
            if c as u32 == u32::from(quote) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = chars.next().ok_or("unterminated string")?;
            self.at += e.len_utf8();
            match e {
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                '\n' => {}
                'u' | 'U' => {
                    let n = if e == 'u' { 4 } else { 8 };
                    let hex = self
                        .s
                        .get(self.at..self.at + n)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .ok_or("short unicode escape")?;
                    let c = u32::from_str_radix(hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or("invalid unicode escape")?;
                    out.push(c);
                    self.at += n;
                }
                e => out.push(e),
            }
        }
    }

    /// After `[`: elements of one type up to `]`.
    fn array(&mut self, want: Option<&str>) -> std::result::Result<Value, String> {
        let elem_want = match want {
            Some(w) => Some(
                w.strip_prefix('a')
                    .ok_or_else(|| format!("an array where {w:?} is expected"))?
                    .to_string(),
            ),
            None => None,
        };
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            let elem =
                elem_want.ok_or("can't infer the type of an empty array: use @as [] etc.")?;
            return Ok(Value::Array(elem, items));
        }
        loop {
            items.push(self.value(elem_want.as_deref())?);
            self.ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                _ => return Err("expected ',' or ']' in an array".into()),
            }
        }
        let elem = match elem_want {
            Some(e) => e,
            None => unify(&mut items)?,
        };
        Ok(Value::Array(elem, items))
    }
}

/// The one element type of an untyped array: numbers become doubles if
/// any is one (as godbus infers), else they stay int32.
fn unify(items: &mut [Value]) -> std::result::Result<String, String> {
    if items.iter().any(|v| matches!(v, Value::F64(_))) {
        for v in items.iter_mut() {
            if let Value::I32(n) = *v {
                *v = Value::F64(f64::from(n));
            }
        }
    }
    let sig = items[0].signature();
    if items.iter().any(|v| v.signature() != sig) {
        return Err("array elements of different types".into());
    }
    Ok(sig)
}

/// A number literal (decimal, 0x hex, 0 octal, as godbus reads it) as
/// type `want`, or as int32 (double with `.` or `e`) without one.
fn number(w: &str, want: Option<&str>) -> std::result::Result<Value, String> {
    let float = w.contains(['.', 'e']) && !w.starts_with("0x");
    let sig = want.unwrap_or(if float { "d" } else { "i" });
    if sig == "d" {
        return w
            .parse::<f64>()
            .map(Value::F64)
            .map_err(|e| format!("{w:?}: {e}"));
    }
    let (neg, digits) = match w.as_bytes().first() {
        Some(b'-') => (true, &w[1..]),
        Some(b'+') => (false, &w[1..]),
        _ => (false, w),
    };
    let (radix, digits) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    let mag = u64::from_str_radix(digits, radix).map_err(|e| format!("{w:?}: {e}"))?;
    let range = |ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("{w:?} is out of range for type {sig:?}"))
        }
    };
    let signed = |bits: u32| -> std::result::Result<i64, String> {
        let limit = 1u64 << (bits - 1);
        range(if neg { mag <= limit } else { mag < limit })?;
        Ok(if neg {
            (mag as i64).wrapping_neg()
        } else {
            mag as i64
        })
    };
    let unsigned = |bits: u32| -> std::result::Result<u64, String> {
        range(!neg && (bits == 64 || mag < 1u64 << bits))?;
        Ok(mag)
    };
    Ok(match sig {
        "y" => Value::Byte(unsigned(8)? as u8),
        "n" => Value::I16(signed(16)? as i16),
        "q" => Value::U16(unsigned(16)? as u16),
        "i" => Value::I32(signed(32)? as i32),
        "u" => Value::U32(unsigned(32)? as u32),
        "x" => Value::I64(signed(64)?),
        "t" => Value::U64(unsigned(64)?),
        t => return Err(format!("can't parse {w:?} as type {t:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_godbus_infers_them() {
        assert_eq!(parse("true"), Ok(Value::Bool(true)));
        assert_eq!(parse(" 42 "), Ok(Value::I32(42)));
        assert_eq!(parse("-7"), Ok(Value::I32(-7)));
        assert_eq!(parse("1.5"), Ok(Value::F64(1.5)));
        assert_eq!(parse("uint64 600"), Ok(Value::U64(600)));
        assert_eq!(parse("@t 0x10"), Ok(Value::U64(16)));
        assert_eq!(parse("uint32 010"), Ok(Value::U32(8)));
        assert_eq!(
            parse("'inactive-or-failed'"),
            Ok(Value::Str("inactive-or-failed".into()))
        );
        assert_eq!(parse(r#""a\"b\n""#), Ok(Value::Str("a\"b\n".into())));
        assert_eq!(
            parse("['a.service', \"b.service\"]"),
            Ok(Value::Array(
                "s".into(),
                vec![
                    Value::Str("a.service".into()),
                    Value::Str("b.service".into())
                ]
            ))
        );
        assert_eq!(
            parse("[1, 2.5]"),
            Ok(Value::Array(
                "d".into(),
                vec![Value::F64(1.0), Value::F64(2.5)]
            ))
        );
        assert_eq!(parse("@as []"), Ok(Value::Array("s".into(), vec![])));
        assert_eq!(
            parse("@au [1]"),
            Ok(Value::Array("u".into(), vec![Value::U32(1)]))
        );
        for bad in [
            "",
            "yes",
            "'open",
            "[]",
            "[1, 'a']",
            "byte 256",
            "uint64 -1",
            "1 2",
            "int32 2147483648",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("int32 -2147483648"), Ok(Value::I32(i32::MIN)));
    }

    #[test]
    fn annotations_become_properties_as_runc_passes_them() {
        let a = select(&std::collections::HashMap::<String, String>::from_iter(
            [
                ("org.systemd.property.TimeoutStopSec", "uint64 90"),
                ("org.systemd.property.RuntimeMaxSec", "1.5"),
                ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
                ("org.systemd.property.ABSec", "uint64 7"),
                ("org.systemd.property.After", "['x.service']"),
                ("io.kubernetes.other", "ignored"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        ));
        assert_eq!(a.len(), 5);
        let p = properties(&a).unwrap();
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        // Sorted by annotation; "USec" only after a lowercase letter.
        assert_eq!(
            names,
            [
                "ABSec",
                "After",
                "CollectMode",
                "RuntimeMaxUSec",
                "TimeoutStopUSec"
            ]
        );
        assert_eq!(p[0].1, Value::U64(7));
        assert_eq!(p[3].1, Value::U64(1_500_000));
        assert_eq!(p[4].1, Value::U64(90_000_000));

        let one = |k: &str, v: &str| {
            properties(&BTreeMap::from([(k.to_string(), v.to_string())]))
                .unwrap_err()
                .to_string()
        };
        let e = one("org.systemd.property.Ab", "1");
        assert!(
            e.contains("annotation org.systemd.property.Ab name incorrect: too short"),
            "{e}"
        );
        let e = one("org.systemd.property.Foo_Bar", "1");
        assert!(
            e.contains("name incorrect: contains non-alphabetic character"),
            "{e}"
        );
        let e = one("org.systemd.property.TimeoutSec", "'x'");
        assert!(
            e.contains(
                "annotation org.systemd.property.TimeoutSec='x' value parse error: not a number"
            ),
            "{e}"
        );
        let e = one("org.systemd.property.Foo", "[");
        assert!(e.contains("value parse error"), "{e}");
    }
}
