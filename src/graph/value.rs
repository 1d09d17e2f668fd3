//! Small value types of the graph format: modes, owners, file data.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Permission bits plus setuid, setgid and sticky (`0o7777` at most).
///
/// Written in JSON as a string of octal digits (`"0644"`, `"755"`); always
/// serialised with at least four digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mode(u32);

impl Mode {
    /// The default mode of a directory the graph creates.
    pub const DIR: Mode = Mode(0o755);
    /// The default mode of a file the graph creates.
    pub const FILE: Mode = Mode(0o644);

    /// A mode from its bits; `None` when bits outside `0o7777` are set.
    pub fn new(bits: u32) -> Option<Mode> {
        (bits <= 0o7777).then_some(Mode(bits))
    }

    /// The permission and special bits.
    pub fn bits(self) -> u32 {
        self.0
    }

    pub(crate) fn is_dir_default(&self) -> bool {
        *self == Mode::DIR
    }

    pub(crate) fn is_file_default(&self) -> bool {
        *self == Mode::FILE
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        if s.is_empty() {
            return Err("a mode is a string of octal digits, like \"0644\"; got \"\"".into());
        }
        if !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return Err(format!(
                "{s:?} is not a mode: octal digits only (0-7), like \"0644\""
            ));
        }
        let digits = s.trim_start_matches('0');
        if digits.len() > 4 {
            return Err(format!(
                "{s:?} is not a mode: permission and setuid/setgid/sticky bits only (at most \"7777\")"
            ));
        }
        let bits = u32::from_str_radix(if digits.is_empty() { "0" } else { digits }, 8)
            .map_err(|e| format!("{s:?} is not a mode: {e}"))?;
        Mode::new(bits).ok_or_else(|| {
            format!("{s:?} is not a mode: permission and setuid/setgid/sticky bits only (at most \"7777\")")
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string of octal digits, like \"0644\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mode, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(ModeVisitor)
    }
}

/// A numeric owner, `"UID:GID"` or `{"uid": N, "gid": N}` in JSON.
///
/// Serialised canonically as `"UID:GID"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

impl Owner {
    /// An owner from its ids.
    pub fn new(uid: u32, gid: u32) -> Owner {
        Owner { uid, gid }
    }
}

impl FromStr for Owner {
    type Err = String;

    fn from_str(s: &str) -> Result<Owner, String> {
        let bad = || {
            format!(
                "{s:?} is not an owner: expected \"UID:GID\" with numeric ids, like \"1000:1000\""
            )
        };
        let (u, g) = s.split_once(':').ok_or_else(bad)?;
        let id = |x: &str| {
            if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            x.parse::<u32>().map_err(|_| bad())
        };
        Ok(Owner {
            uid: id(u)?,
            gid: id(g)?,
        })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

impl Serialize for Owner {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Owner, D::Error> {
        struct OwnerVisitor;
        impl<'de> Visitor<'de> for OwnerVisitor {
            type Value = Owner;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an owner: \"UID:GID\" or {\"uid\": N, \"gid\": N}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Owner, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Owner, A::Error> {
                let (mut uid, mut gid) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    let slot = match key.as_str() {
                        "uid" => &mut uid,
                        "gid" => &mut gid,
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown owner field `{other}` (an owner has `uid` and `gid`)"
                            )))
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format!(
                            "owner field `{key}` given twice"
                        )));
                    }
                    *slot = Some(map.next_value::<u32>()?);
                }
                match (uid, gid) {
                    (Some(uid), Some(gid)) => Ok(Owner { uid, gid }),
                    (None, _) => Err(de::Error::custom("owner is missing `uid`")),
                    (_, None) => Err(de::Error::custom("owner is missing `gid`")),
                }
            }
        }
        d.deserialize_any(OwnerVisitor)
    }
}

/// The bytes of a `mkfile`, from `data` (UTF-8) or `data_base64`.
///
/// Serialised canonically as `data` when the bytes are UTF-8, else as
/// `data_base64`, so that the two spellings of one content are one op.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Data(pub Vec<u8>);

impl Data {
    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn decode_base64(s: &str) -> Result<Data, String> {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Data)
            .map_err(|e| format!("not valid base64: {e}"))
    }

    pub(crate) fn encode_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.0)
    }
}

/// `deserialize_with` for an optional `timestamp`: integer seconds, with a
/// message that says so.
pub(crate) fn timestamp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct TimestampVisitor;
    impl Visitor<'_> for TimestampVisitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("integer seconds since the Unix epoch")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<i64>, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("timestamp {v} is out of range")))
        }
    }
    d.deserialize_i64(TimestampVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_octal_strings_only() {
        assert_eq!("0644".parse::<Mode>().unwrap().bits(), 0o644);
        assert_eq!("755".parse::<Mode>().unwrap().bits(), 0o755);
        assert_eq!("4755".parse::<Mode>().unwrap().bits(), 0o4755);
        assert_eq!("0".parse::<Mode>().unwrap().bits(), 0);
        assert_eq!("00007777".parse::<Mode>().unwrap().bits(), 0o7777);
        for bad in ["", "0999", "12345", "-1", "0x1ff", "rwx", " 644"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(Mode::new(0o644).unwrap().to_string(), "0644");
        assert_eq!(Mode::new(0o4755).unwrap().to_string(), "4755");
        let err = serde_json::from_str::<Mode>("493").unwrap_err().to_string();
        assert!(err.contains("octal"), "{err}");
    }

    #[test]
    fn owners_parse_both_forms() {
        let a: Owner = serde_json::from_str("\"1000:100\"").unwrap();
        let b: Owner = serde_json::from_str(r#"{"gid": 100, "uid": 1000}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"1000:100\"");
        for bad in [
            "\"root:x\"",
            "\"1:2:3\"",
            "\":1\"",
            "\"1\"",
            r#"{"uid": 1}"#,
            r#"{"uid": 1, "gid": -1}"#,
            r#"{"uid": 1, "gid": 2, "x": 3}"#,
            "7",
        ] {
            assert!(
                serde_json::from_str::<Owner>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }
}
