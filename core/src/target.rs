//! Targets: the names clients dial, parsed by gRPC's naming rules (grpc/grpc `doc/naming.md`).
//!
//! | target                              | scheme        | authority | endpoint                 |
//! |-------------------------------------|---------------|-----------|--------------------------|
//! | `dns:///api.internal:50051`         | `dns`         | ``        | `api.internal:50051`     |
//! | `dns://8.8.8.8/api.internal`        | `dns`         | `8.8.8.8` | `api.internal`           |
//! | `api.internal:50051` (no scheme)    | `dns`         | ``        | `api.internal:50051`     |
//! | `ipv4:10.0.0.1:80,10.0.0.2:80`      | `ipv4`        | ``        | `10.0.0.1:80,10.0.0.2:80`|
//! | `ipv6:[::1]:80`                     | `ipv6`        | ``        | `[::1]:80`               |
//! | `unix:relative/path`, `unix:///abs` | `unix`        | ``        | the path                 |
//! | `passthrough:///10.0.0.1:80`        | `passthrough` | ``        | `10.0.0.1:80`            |
//! | `example:///lb.example.grpc.io`     | `example`     | ``        | `lb.example.grpc.io`     |
//!
//! A scheme counts only if it is registered (the caller says which are). An input whose leading
//! word is not a registered scheme is read as `dns:///<input>`, so `localhost:50051` works; but
//! `nosuch:///x`, which plainly names a scheme, is an error that says the scheme is unknown.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use crate::address::{Address, Endpoint};

/// The schemes the core itself understands.
pub const BUILTIN_SCHEMES: &[&str] = &[
    "dns",
    "ipv4",
    "ipv6",
    "unix",
    "unix-abstract",
    "passthrough",
];

/// The port used when a target names none (gRPC's default, for HTTPS).
pub const DEFAULT_PORT: u16 = 443;

/// A parsed target: `scheme://authority/endpoint`.
///
/// ```
/// use croupier::Target;
///
/// let target = Target::parse("example:///lb.example.grpc.io", |s| s == "example").unwrap();
/// assert_eq!((target.scheme(), target.endpoint()), ("example", "lb.example.grpc.io"));
///
/// let target = Target::parse_builtin("localhost:50051").unwrap();
/// assert_eq!(target.to_string(), "dns:///localhost:50051");
/// assert_eq!(target.host_port(443).unwrap(), ("localhost".to_owned(), 50051));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    scheme: String,
    authority: String,
    endpoint: String,
    /// Written `scheme:endpoint`, without `//`.
    opaque: bool,
}

/// Why a target could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetError {
    /// The target is empty.
    Empty,
    /// The target names a scheme that has no resolver.
    UnknownScheme {
        /// The target as given.
        target: String,
        /// The scheme it names.
        scheme: String,
    },
    /// The target is malformed.
    Invalid {
        /// The target as given.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// An address in the target is malformed.
    InvalidAddress {
        /// The target as given.
        target: String,
        /// The address.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Empty => f.write_str(
                "invalid target \"\": a target is empty (write dns:///host:port, ipv4:a.b.c.d:port, ...)",
            ),
            TargetError::UnknownScheme { target, scheme } => write!(
                f,
                "invalid target {target:?}: scheme {scheme:?} has no registered resolver \
                 (register one for it, or use dns:///host:port)"
            ),
            TargetError::Invalid { target, reason } => {
                write!(f, "invalid target {target:?}: {reason}")
            }
            TargetError::InvalidAddress {
                target,
                address,
                reason,
            } => write!(f, "invalid target {target:?}: address {address:?} {reason}"),
        }
    }
}

impl std::error::Error for TargetError {}

/// Splits `input` into a URI scheme and the rest, if it starts with one.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let colon = input.find(':')?;
    let scheme = &input[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme, &input[colon + 1..]))
}

impl Target {
    /// Parses `input`; `is_registered` says which (lowercase) schemes have a resolver.
    pub fn parse(input: &str, is_registered: impl Fn(&str) -> bool) -> Result<Target, TargetError> {
        if input.trim().is_empty() {
            return Err(TargetError::Empty);
        }
        let invalid = |reason: &str| TargetError::Invalid {
            target: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest, defaulted) = match split_scheme(input) {
            Some((scheme, rest)) if is_registered(&scheme.to_ascii_lowercase()) => {
                (scheme.to_ascii_lowercase(), rest, false)
            }
            Some((scheme, rest)) if rest.starts_with("//") => {
                return Err(TargetError::UnknownScheme {
                    target: input.to_owned(),
                    scheme: scheme.to_ascii_lowercase(),
                })
            }
            _ if is_registered("dns") => ("dns".to_owned(), input, true),
            _ => {
                return Err(TargetError::UnknownScheme {
                    target: input.to_owned(),
                    scheme: "dns".to_owned(),
                })
            }
        };
        let (authority, endpoint, opaque) = if defaulted {
            (String::new(), input.to_owned(), false)
        } else if let Some(hierarchical) = rest.strip_prefix("//") {
            match hierarchical.find('/') {
                Some(slash) => (
                    hierarchical[..slash].to_owned(),
                    hierarchical[slash + 1..].to_owned(),
                    false,
                ),
                None => (hierarchical.to_owned(), String::new(), false),
            }
        } else {
            (String::new(), rest.to_owned(), true)
        };
        if authority.contains(['?', '#']) || endpoint.contains(['?', '#']) {
            return Err(invalid("queries (?) and fragments (#) are not supported"));
        }
        if !percent_escapes_valid(&authority) || !percent_escapes_valid(&endpoint) {
            return Err(invalid("a % must start a two-digit hex escape"));
        }
        let mut target = Target {
            scheme,
            authority,
            endpoint,
            opaque,
        };
        target.validate(input)?;
        Ok(target)
    }

    /// Parses `input` with only the [built-in schemes](BUILTIN_SCHEMES) registered.
    pub fn parse_builtin(input: &str) -> Result<Target, TargetError> {
        Target::parse(input, |scheme| BUILTIN_SCHEMES.contains(&scheme))
    }

    /// Scheme-specific checks, so that a bad built-in target fails when it is parsed.
    fn validate(&mut self, input: &str) -> Result<(), TargetError> {
        let invalid = |reason: &str| TargetError::Invalid {
            target: input.to_owned(),
            reason: reason.to_owned(),
        };
        match self.scheme.as_str() {
            "unix" | "unix-abstract" => {
                if !self.authority.is_empty() {
                    return Err(invalid(
                        "unix targets take no authority; write unix:///abs/path or unix:relative/path",
                    ));
                }
                if self.scheme == "unix" && !self.opaque {
                    // `unix:///abs` names the absolute path `/abs`.
                    self.endpoint.insert(0, '/');
                }
                if self.endpoint.is_empty() || self.endpoint == "/" {
                    return Err(invalid("the socket path is empty"));
                }
                Ok(())
            }
            "passthrough" if self.endpoint.is_empty() => Err(invalid(
                "passthrough needs an address: passthrough:///host:port",
            )),
            "ipv4" | "ipv6" => self.static_endpoints_for(input).map(|_| ()),
            "dns" => self.host_port_for(input, DEFAULT_PORT).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The scheme, lowercase.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The authority (for `dns`, the DNS server to ask); often empty.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The endpoint: what the resolver resolves (for `unix`, the socket path).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Splits the endpoint into host and port (`default_port` when it names none). IPv6 hosts come
    /// without brackets.
    pub fn host_port(&self, default_port: u16) -> Result<(String, u16), TargetError> {
        self.host_port_for(&self.to_string(), default_port)
    }

    fn host_port_for(&self, input: &str, default_port: u16) -> Result<(String, u16), TargetError> {
        split_host_port(&self.endpoint, default_port).map_err(|reason| {
            TargetError::InvalidAddress {
                target: input.to_owned(),
                address: self.endpoint.clone(),
                reason,
            }
        })
    }

    /// The endpoints a target names by itself, without lookups: for `ipv4`, `ipv6`, `unix`,
    /// `unix-abstract` and `passthrough`. `None` for schemes that need a resolver.
    pub fn static_endpoints(&self) -> Option<Result<Vec<Endpoint>, TargetError>> {
        let input = self.to_string();
        match self.scheme.as_str() {
            "ipv4" | "ipv6" => Some(self.static_endpoints_for(&input)),
            "unix" => Some(Ok(vec![Endpoint::new(Address::Unix(PathBuf::from(
                &self.endpoint,
            )))])),
            "unix-abstract" => Some(Ok(vec![Endpoint::new(Address::UnixAbstract(
                self.endpoint.clone(),
            ))])),
            "passthrough" => Some(Ok(vec![Endpoint::new(
                match self.endpoint.parse::<SocketAddr>() {
                    Ok(socket) => Address::Socket(socket),
                    Err(_) => Address::Opaque(self.endpoint.as_str().into()),
                },
            )])),
            _ => None,
        }
    }

    fn static_endpoints_for(&self, input: &str) -> Result<Vec<Endpoint>, TargetError> {
        let v6 = self.scheme == "ipv6";
        let mut endpoints = Vec::new();
        for item in self.endpoint.split(',') {
            let bad = |reason: String| TargetError::InvalidAddress {
                target: input.to_owned(),
                address: item.to_owned(),
                reason,
            };
            let (host, port) = split_host_port(item, DEFAULT_PORT).map_err(&bad)?;
            let ip: IpAddr = if v6 {
                host.parse::<Ipv6Addr>()
                    .map_err(|_| bad("is not an IPv6 address".to_owned()))?
                    .into()
            } else {
                host.parse::<Ipv4Addr>()
                    .map_err(|_| bad("is not an IPv4 address".to_owned()))?
                    .into()
            };
            endpoints.push(Endpoint::new(SocketAddr::new(ip, port)));
        }
        Ok(endpoints)
    }
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 literal.
fn split_host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .map_err(|_| format!("has a bad port {port:?} (want 0-65535)"))
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| "has an unclosed [".to_owned())?;
        let host = &rest[..close];
        let after = &rest[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => parse_port(port)?,
            None if after.is_empty() => default_port,
            None => return Err(format!("has {after:?} after the ]")),
        };
        (host, port)
    } else if text.parse::<Ipv6Addr>().is_ok() {
        (text, default_port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, parse_port(port)?),
            None => (text, default_port),
        }
    };
    if host.is_empty() {
        return Err("has no host".to_owned());
    }
    if host.contains(['/', ' ', '[', ']']) {
        return Err("is not a valid host name".to_owned());
    }
    Ok((host.to_owned(), port))
}

fn percent_escapes_valid(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.is_some_and(u8::is_ascii_hexdigit);
            if !hex(bytes.get(i + 1)) || !hex(bytes.get(i + 2)) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.opaque {
            write!(f, "{}:{}", self.scheme, self.endpoint)
        } else if self.scheme == "unix" {
            // The endpoint is the absolute path; `unix://` + `/abs` reads back the same.
            write!(f, "unix://{}", self.endpoint)
        } else {
            write!(f, "{}://{}/{}", self.scheme, self.authority, self.endpoint)
        }
    }
}

impl std::str::FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Target::parse_builtin(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> Result<Target, TargetError> {
        Target::parse(input, |s| BUILTIN_SCHEMES.contains(&s) || s == "example")
    }

    fn parts(input: &str) -> (String, String, String) {
        let t = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        (t.scheme.clone(), t.authority.clone(), t.endpoint.clone())
    }

    fn owned(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.to_owned(), b.to_owned(), c.to_owned())
    }

    #[test]
    fn dns_targets_split_into_authority_and_endpoint() {
        assert_eq!(
            parts("dns:///api.internal:50051"),
            owned("dns", "", "api.internal:50051")
        );
        assert_eq!(
            parts("dns://8.8.8.8/api.internal"),
            owned("dns", "8.8.8.8", "api.internal")
        );
    }

    #[test]
    fn host_port_without_scheme_defaults_to_dns() {
        assert_eq!(
            parts("localhost:50051"),
            owned("dns", "", "localhost:50051")
        );
        assert_eq!(parts("127.0.0.1:80"), owned("dns", "", "127.0.0.1:80"));
        assert_eq!(parts("[::1]:80"), owned("dns", "", "[::1]:80"));
        assert_eq!(parts("api.internal"), owned("dns", "", "api.internal"));
    }

    #[test]
    fn unregistered_scheme_with_slashes_is_an_error_naming_it() {
        let err = parse("nosuch:///x").unwrap_err();
        assert_eq!(
            err,
            TargetError::UnknownScheme {
                target: "nosuch:///x".into(),
                scheme: "nosuch".into()
            }
        );
        assert!(err.to_string().contains("\"nosuch\""), "{err}");
    }

    #[test]
    fn custom_registered_scheme() {
        assert_eq!(
            parts("example:///lb.example.grpc.io"),
            owned("example", "", "lb.example.grpc.io")
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parts("DNS:///a:1").0, "dns");
    }

    #[test]
    fn unix_paths_absolute_and_relative() {
        assert_eq!(parts("unix:///run/app.sock").2, "/run/app.sock");
        assert_eq!(parts("unix:/run/app.sock").2, "/run/app.sock");
        assert_eq!(parts("unix:rel/app.sock").2, "rel/app.sock");
        assert!(parse("unix:").is_err());
    }

    #[test]
    fn unix_rejects_authority() {
        let err = parse("unix://host/run/app.sock").unwrap_err();
        assert!(err.to_string().contains("no authority"), "{err}");
    }

    #[test]
    fn ipv4_list_with_default_port() {
        let t = parse("ipv4:10.0.0.1:80,10.0.0.2").unwrap();
        let endpoints = t.static_endpoints().unwrap().unwrap();
        let addrs: Vec<String> = endpoints.iter().map(|e| e.to_string()).collect();
        assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.2:443"]);
        let err = parse("ipv4:1.2.3:80").unwrap_err();
        assert!(
            matches!(err, TargetError::InvalidAddress { ref address, .. } if address == "1.2.3:80")
        );
    }

    #[test]
    fn ipv6_bracketed_and_bare() {
        let t = parse("ipv6:[::1]:80,::2,[fe80::1]").unwrap();
        let addrs: Vec<String> = t
            .static_endpoints()
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(addrs, ["[::1]:80", "[::2]:443", "[fe80::1]:443"]);
        assert!(parse("ipv6:127.0.0.1:80").is_err());
    }

    #[test]
    fn passthrough_keeps_unresolved_names_opaque() {
        let ip = parse("passthrough:///127.0.0.1:5")
            .unwrap()
            .static_endpoints()
            .unwrap()
            .unwrap();
        assert_eq!(
            ip[0].addresses()[0],
            Address::Socket("127.0.0.1:5".parse().unwrap())
        );
        let name = parse("passthrough:///svc:5")
            .unwrap()
            .static_endpoints()
            .unwrap()
            .unwrap();
        assert_eq!(name[0].addresses()[0], Address::Opaque("svc:5".into()));
        assert!(parse("passthrough:///").is_err());
    }

    #[test]
    fn dns_needs_a_host_and_a_valid_port() {
        assert!(parse("dns:///:80").is_err());
        assert!(parse("dns:///host:99999").is_err());
        assert_eq!(
            parse("dns:///[::1]").unwrap().host_port(7).unwrap(),
            ("::1".into(), 7)
        );
    }

    #[test]
    fn query_and_bad_escapes_are_rejected() {
        assert!(parse("dns:///a:1?x=y").is_err());
        assert!(parse("dns:///a%zz:1").is_err());
        assert!(parse("").is_err());
        assert!(parse("   ").is_err());
    }

    #[test]
    fn display_round_trips() {
        let inputs = [
            "dns:///api.internal:50051",
            "dns://8.8.8.8/api.internal",
            "localhost:50051",
            "ipv4:10.0.0.1:80,10.0.0.2",
            "ipv6:[::1]:80",
            "unix:///run/a.sock",
            "unix:/run/a.sock",
            "unix:rel/a.sock",
            "unix-abstract:name",
            "passthrough:///svc:5",
            "example:///lb.example.grpc.io",
            "example:opaque",
            "example://auth",
            "example:///a//b",
        ];
        for input in inputs {
            let t = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parse(&t.to_string()).as_ref(), Ok(&t), "{input} -> {t}");
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_and_parsed_ones_round_trip() {
        let alphabet: Vec<char> = "dns:/[]:1.a%?#,unix-@ exampl6".chars().collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = (state >> 59) as usize;
            let mut input = String::new();
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                input.push(alphabet[(state >> 33) as usize % alphabet.len()]);
            }
            if let Ok(t) = parse(&input) {
                assert_eq!(parse(&t.to_string()).as_ref(), Ok(&t), "{input:?} -> {t}");
                let _ = t.static_endpoints();
                let _ = t.host_port(1);
            }
        }
    }
}
