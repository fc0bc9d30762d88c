//! Reading JSON values with their path: every accessor that refuses a value says where it was.
//!
//! gRPC reads its service config as protobuf's JSON form, so the readers here follow that
//! mapping: `null` is the same as an absent field, integers may also be written as strings
//! (`"5"`, as protobuf prints 64-bit ones), floating-point numbers likewise (`"0.5"`), and fields
//! nobody reads are ignored.

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde_json::{Map, Value};

use super::duration::parse_duration;
use super::error::{ServiceConfigError, ServiceConfigErrorKind};

/// One step into a JSON document: an object's key or an array's index.
#[derive(Clone, Copy, Debug)]
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where a value sits in the document, as a chain of steps kept on the stack; it is written out
/// only when an error needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Option<Segment<'a>>,
}

impl Path<'_> {
    fn write(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.write(out);
        }
        match self.segment {
            None => {}
            Some(Segment::Key(key)) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Some(Segment::Index(index)) => {
                let _ = write!(out, "[{index}]");
            }
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// A JSON value and where it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: Path<'a>,
}

/// A JSON object and where it is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: &'a Path<'a>,
}

type Result<T> = std::result::Result<T, ServiceConfigError>;

impl<'a> Node<'a> {
    /// The whole document.
    pub(crate) fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: Path {
                parent: None,
                segment: None,
            },
        }
    }

    /// The value itself.
    pub(crate) fn value(&self) -> &'a Value {
        self.value
    }

    /// An error about this value.
    pub(crate) fn error(&self, kind: ServiceConfigErrorKind) -> ServiceConfigError {
        ServiceConfigError::new(self.path.to_string(), kind)
    }

    /// This value is allowed in form but not in substance.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> ServiceConfigError {
        self.error(ServiceConfigErrorKind::Invalid(message.into()))
    }

    /// This value has the wrong form: the field takes `expected`.
    pub(crate) fn type_error(&self, expected: &'static str) -> ServiceConfigError {
        self.error(ServiceConfigErrorKind::Type {
            expected,
            got: ServiceConfigError::quote(self.value),
        })
    }

    /// The value as an object.
    pub(crate) fn object(&self) -> Result<Object<'_>> {
        match self.value {
            Value::Object(map) => Ok(Object {
                map,
                path: &self.path,
            }),
            _ => Err(self.type_error("an object")),
        }
    }

    /// The elements of an array, each with its index in the path.
    pub(crate) fn items(&self) -> Result<impl ExactSizeIterator<Item = Node<'_>>> {
        match self.value {
            Value::Array(items) => Ok(items.iter().enumerate().map(|(index, value)| Node {
                value,
                path: Path {
                    parent: Some(&self.path),
                    segment: Some(Segment::Index(index)),
                },
            })),
            _ => Err(self.type_error("a list")),
        }
    }

    /// The value as a string.
    pub(crate) fn string(&self) -> Result<&'a str> {
        self.value
            .as_str()
            .ok_or_else(|| self.type_error("a string"))
    }

    /// The value as `true` or `false`.
    pub(crate) fn bool(&self) -> Result<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| self.type_error("true or false"))
    }

    /// A whole number from 0 to `u64::MAX`, written as a number or as a string of digits.
    pub(crate) fn u64(&self) -> Result<u64> {
        self.whole(u64::MAX)
    }

    /// A whole number from 0 to `u32::MAX`, written as a number or as a string of digits.
    pub(crate) fn u32(&self) -> Result<u32> {
        // `whole` never returns more than the bound it is given.
        self.whole(u64::from(u32::MAX))
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn whole(&self, max: u64) -> Result<u64> {
        let out_of_range = || {
            self.invalid(format!(
                "must be a whole number from 0 to {max}, got {}",
                ServiceConfigError::quote(self.value)
            ))
        };
        let number = match self.value {
            Value::Number(number) => number.clone(),
            Value::String(text) => match serde_json::from_str::<serde_json::Number>(text) {
                Ok(number) => number,
                Err(_) => return Err(self.type_error("a number")),
            },
            _ => return Err(self.type_error("a number")),
        };
        if let Some(n) = number.as_u64() {
            return if n <= max { Ok(n) } else { Err(out_of_range()) };
        }
        // 5.0 and 1e3 are whole numbers too, as protobuf's JSON parsers read them.
        match number.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= 0.0 && f <= max as f64 => Ok(f as u64),
            _ => Err(out_of_range()),
        }
    }

    /// A finite number, written as a number or as a string holding one.
    pub(crate) fn f64(&self) -> Result<f64> {
        let parsed = match self.value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(f) if f.is_finite() => Ok(f),
            Some(_) => Err(self.invalid(format!(
                "must be a finite number, got {}",
                ServiceConfigError::quote(self.value)
            ))),
            None => Err(self.type_error("a number")),
        }
    }

    /// A protobuf JSON duration: a string of seconds with up to 9 fractional digits, `"1.5s"`.
    pub(crate) fn duration(&self) -> Result<Duration> {
        let text = self
            .value
            .as_str()
            .ok_or_else(|| self.type_error("a duration such as \"1.5s\""))?;
        parse_duration(text).map_err(|problem| self.invalid(problem.to_string()))
    }
}

impl<'a> Object<'a> {
    /// The field `key`, unless it is absent or `null`.
    pub(crate) fn get(&self, key: &'a str) -> Option<Node<'a>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some(Node {
                value,
                path: Path {
                    parent: Some(self.path),
                    segment: Some(Segment::Key(key)),
                },
            }),
        }
    }

    /// The names of the fields, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.map.keys().map(String::as_str)
    }

    /// The field `key` read by `read`, or `None` when absent.
    pub(crate) fn opt<T>(
        &self,
        key: &'a str,
        read: impl FnOnce(&Node<'a>) -> Result<T>,
    ) -> Result<Option<T>> {
        self.get(key).map(|node| read(&node)).transpose()
    }

    /// The only field of an object that must have exactly one (a `loadBalancingConfig` entry).
    pub(crate) fn single(&self, what: &str) -> Result<(&'a str, Node<'a>)> {
        let mut fields = self.map.iter();
        match (fields.next(), fields.next()) {
            (Some((key, value)), None) => Ok((
                key.as_str(),
                Node {
                    value,
                    path: Path {
                        parent: Some(self.path),
                        segment: Some(Segment::Key(key)),
                    },
                },
            )),
            _ => Err(ServiceConfigError::new(
                self.path.to_string(),
                ServiceConfigErrorKind::Invalid(format!(
                    "{what} must have exactly one field, the policy's name, got {}",
                    self.map.len()
                )),
            )),
        }
    }
}
