//! The default authority of a target: the name calls on a channel carry (`:authority`, the TLS
//! server name) unless the channel or a resolver says otherwise.

use std::fmt::Write;

use crate::target::Target;

impl Target {
    /// The authority that calls to this target carry by default, by gRPC's rule: the endpoint
    /// (`dns:///api.internal:50051` -> `api.internal:50051`, `ipv4:10.0.0.1:80,10.0.0.2:80` ->
    /// `10.0.0.1:80,10.0.0.2:80`), `localhost` for unix-domain targets, `localhost:50051` for an
    /// endpoint that is only a port (`:50051`). Characters an authority may not hold (RFC 3986,
    /// 3.2) are percent-encoded.
    ///
    /// ```
    /// use croupier::Target;
    ///
    /// let target: Target = "dns:///api.internal:50051".parse().unwrap();
    /// assert_eq!(target.default_authority(), "api.internal:50051");
    /// let unix: Target = "unix:///run/app.sock".parse().unwrap();
    /// assert_eq!(unix.default_authority(), "localhost");
    /// ```
    pub fn default_authority(&self) -> String {
        match self.scheme() {
            "unix" | "unix-abstract" => "localhost".to_owned(),
            _ if self.endpoint().starts_with(':') => format!("localhost{}", self.endpoint()),
            _ => encode_authority(self.endpoint()),
        }
    }
}

/// `text` with every byte that an authority may not hold percent-encoded.
fn encode_authority(text: &str) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]@".contains(&b);
    let mut encoded = String::with_capacity(text.len());
    for &byte in text.as_bytes() {
        if allowed(byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use crate::target::BUILTIN_SCHEMES;
    use crate::Target;

    fn authority(input: &str) -> String {
        Target::parse(input, |s| BUILTIN_SCHEMES.contains(&s) || s == "example")
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .default_authority()
    }

    #[test]
    fn the_default_authority_is_the_endpoint() {
        assert_eq!(authority("dns:///api.internal:50051"), "api.internal:50051");
        assert_eq!(authority("dns://8.8.8.8/api.internal"), "api.internal");
        assert_eq!(authority("api.internal:50051"), "api.internal:50051");
        assert_eq!(
            authority("example:///lb.example.grpc.io"),
            "lb.example.grpc.io"
        );
        assert_eq!(authority("passthrough:///10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(authority("ipv6:[::1]:80"), "[::1]:80");
    }

    #[test]
    fn a_list_of_addresses_is_the_authority_as_written() {
        assert_eq!(
            authority("ipv4:127.0.0.1:1,127.0.0.1:2"),
            "127.0.0.1:1,127.0.0.1:2"
        );
    }

    #[test]
    fn unix_targets_and_bare_ports_are_localhost() {
        assert_eq!(authority("unix:///run/app.sock"), "localhost");
        assert_eq!(authority("unix:relative.sock"), "localhost");
        assert_eq!(authority("unix-abstract:name"), "localhost");
        assert_eq!(authority("example:///:50051"), "localhost:50051");
    }

    #[test]
    fn characters_an_authority_cannot_hold_are_percent_encoded() {
        assert_eq!(authority("example:///a/b c"), "a%2Fb%20c");
        assert_eq!(authority("example:///caf\u{e9}"), "caf%C3%A9");
    }
}
