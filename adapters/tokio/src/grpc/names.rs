//! The names an HTTP/2 connection's requests carry: `:authority`, `:scheme` and `user-agent`,
//! chosen as gRPC chooses them.

use std::io;

use croupier::Address;
use croupier_channel::ConnectContext;
use http::header::USER_AGENT;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Uri};

/// The library's own part of every `user-agent`: `croupier/<version>`.
pub(super) const USER_AGENT_BASE: &str = concat!("croupier/", env!("CARGO_PKG_VERSION"));

/// The `user-agent` of a channel whose user named it `prefix` (`myapp/1.2` ->
/// `myapp/1.2 croupier/0.1.0`), as gRPC puts its own after the application's.
pub(super) fn user_agent(prefix: &HeaderValue) -> HeaderValue {
    if prefix.is_empty() {
        return HeaderValue::from_static(USER_AGENT_BASE);
    }
    let mut value = prefix.as_bytes().to_vec();
    value.push(b' ');
    value.extend_from_slice(USER_AGENT_BASE.as_bytes());
    // Two header values joined by a space are a header value.
    HeaderValue::from_bytes(&value).unwrap_or_else(|_| prefix.clone())
}

/// What every request on one connection is named with.
#[derive(Debug)]
pub(super) struct RequestNames {
    pub(super) authority: Authority,
    pub(super) scheme: Scheme,
    pub(super) user_agent: HeaderValue,
}

impl RequestNames {
    /// Names `request`: a request that names no authority (a tonic client's names only its
    /// path) gets the connection's authority and scheme; every request gets the channel's
    /// `user-agent`, in place of any it carried (as gRPC, which reserves the header).
    pub(super) fn apply<B>(&self, request: &mut Request<B>) {
        if request.uri().authority().is_none() {
            let mut parts = request.uri().clone().into_parts();
            parts.scheme = Some(parts.scheme.unwrap_or_else(|| self.scheme.clone()));
            parts.authority = Some(self.authority.clone());
            if parts.path_and_query.is_none() {
                parts.path_and_query = Some(PathAndQuery::from_static("/"));
            }
            if let Ok(uri) = Uri::from_parts(parts) {
                *request.uri_mut() = uri;
            }
        }
        request
            .headers_mut()
            .insert(USER_AGENT, self.user_agent.clone());
    }
}

/// The `:authority` of the calls on a connection to `address`, by gRPC's precedence: the
/// channel's own (`chosen`), else the server name the resolver gave the address, else the
/// target's default authority. A target authority that HTTP cannot carry (the list of an
/// `ipv4:` target holds several ports) gives way to the address connected to.
pub(super) fn authority(
    chosen: Option<&Authority>,
    context: &ConnectContext<'_>,
    address: &Address,
) -> io::Result<Authority> {
    if let Some(chosen) = chosen {
        return Ok(chosen.clone());
    }
    if let Some(name) = context.server_name() {
        return name.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the server name {name:?} given for {address} is not a valid authority"),
            )
        });
    }
    Ok(context
        .authority()
        .parse()
        .ok()
        .unwrap_or_else(|| of_address(address)))
}

/// The authority that names `address` itself (`127.0.0.1:50051`; `localhost` for unix sockets).
pub(super) fn of_address(address: &Address) -> Authority {
    match address {
        Address::Socket(addr) => addr.to_string().parse().ok(),
        Address::Opaque(name) => name.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| Authority::from_static("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(text: &str) -> Address {
        Address::Socket(text.parse().unwrap())
    }

    #[test]
    fn the_channels_authority_wins_then_the_server_name_then_the_targets() {
        let address = socket("127.0.0.1:1");
        let named = ConnectContext::new("lb.example.grpc.io").with_server_name(Some("a.example"));
        let chosen = Authority::from_static("override.example:443");
        assert_eq!(authority(Some(&chosen), &named, &address).unwrap(), chosen);
        assert_eq!(authority(None, &named, &address).unwrap(), "a.example");
        let unnamed = ConnectContext::new("lb.example.grpc.io");
        assert_eq!(
            authority(None, &unnamed, &address).unwrap(),
            "lb.example.grpc.io"
        );
    }

    #[test]
    fn a_list_of_addresses_gives_way_to_the_address_connected_to() {
        let context = ConnectContext::new("127.0.0.1:1,127.0.0.1:2");
        let address = socket("127.0.0.1:2");
        assert_eq!(authority(None, &context, &address).unwrap(), "127.0.0.1:2");
    }

    #[test]
    fn a_server_name_that_is_no_authority_fails_naming_it_and_the_address() {
        let context = ConnectContext::new("x").with_server_name(Some("a b"));
        let error = authority(None, &context, &socket("127.0.0.1:7")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("\"a b\""), "{message}");
        assert!(message.contains("127.0.0.1:7"), "{message}");
    }

    #[test]
    fn the_user_agent_puts_the_library_after_the_users_prefix() {
        assert_eq!(
            user_agent(&HeaderValue::from_static("myapp/1.2")),
            format!("myapp/1.2 croupier/{}", env!("CARGO_PKG_VERSION")).as_str()
        );
        assert_eq!(user_agent(&HeaderValue::from_static("")), USER_AGENT_BASE);
    }

    #[test]
    fn a_requests_own_user_agent_is_replaced_and_its_authority_kept() {
        let names = RequestNames {
            authority: Authority::from_static("a.example"),
            scheme: Scheme::HTTPS,
            user_agent: HeaderValue::from_static("app croupier/0"),
        };
        let mut bare = Request::builder()
            .uri("/pkg.Service/Method")
            .header(USER_AGENT, "per-call/9")
            .body(())
            .unwrap();
        names.apply(&mut bare);
        assert_eq!(bare.uri(), "https://a.example/pkg.Service/Method");
        assert_eq!(bare.headers()[USER_AGENT], "app croupier/0");
        let mut absolute = Request::builder()
            .uri("http://own.example/pkg.Service/Method")
            .body(())
            .unwrap();
        names.apply(&mut absolute);
        assert_eq!(absolute.uri(), "http://own.example/pkg.Service/Method");
    }
}
