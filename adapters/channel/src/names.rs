//! The names a connection attempt is made under: the target's authority, and the server name a
//! resolver gave an endpoint (gRPC's `Address.ServerName`).

use std::collections::HashMap;
use std::sync::Arc;

use croupier::{Address, Endpoint};

use crate::connector::ConnectContext;

/// What the driver knows of names: the target's default authority, and the server names of the
/// latest resolver update's addresses, kept only for endpoints that carry one (a list without
/// names costs a pass over it and nothing kept).
#[derive(Debug, Default)]
pub(crate) struct Names {
    authority: Arc<str>,
    server_names: HashMap<Address, Arc<str>>,
}

impl Names {
    /// Names for a channel whose target's default authority is `authority`.
    pub(crate) fn new(authority: impl Into<Arc<str>>) -> Self {
        Names {
            authority: authority.into(),
            server_names: HashMap::new(),
        }
    }

    /// Takes the server names of `endpoints` (the list the balancer uses), in place of the
    /// last list's. An address listed twice keeps the first name it was given.
    pub(crate) fn learn(&mut self, endpoints: &[Endpoint]) {
        self.server_names.clear();
        for endpoint in endpoints {
            let Some(name) = endpoint.attributes().server_name() else {
                continue;
            };
            let name: Arc<str> = name.into();
            for address in endpoint.addresses() {
                self.server_names
                    .entry(address.clone())
                    .or_insert_with(|| Arc::clone(&name));
            }
        }
    }

    /// The context of an attempt to connect to `address`.
    pub(crate) fn context(&self, address: &Address) -> ConnectContext<'_> {
        ConnectContext::new(&self.authority)
            .with_server_name(self.server_names.get(address).map(|name| &**name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        Address::Socket(text.parse().unwrap())
    }

    #[test]
    fn an_address_gets_its_endpoints_server_name_and_the_targets_authority() {
        let mut names = Names::new("lb.example.grpc.io");
        names.learn(&[
            Endpoint::with_addresses([address("127.0.0.1:1"), address("[::1]:1")])
                .server_name("a.example.com"),
            Endpoint::new(address("127.0.0.1:2")),
        ]);
        for named in ["127.0.0.1:1", "[::1]:1"] {
            let context = names.context(&address(named));
            assert_eq!(context.server_name(), Some("a.example.com"));
            assert_eq!(context.authority(), "lb.example.grpc.io");
        }
        let unnamed = names.context(&address("127.0.0.1:2"));
        assert_eq!(unnamed.server_name(), None);
        assert_eq!(unnamed.name(), "lb.example.grpc.io");
        assert_eq!(
            names.context(&address("127.0.0.1:1")).name(),
            "a.example.com"
        );
    }

    #[test]
    fn a_new_update_replaces_the_names_of_the_last() {
        let mut names = Names::new("x");
        names.learn(&[Endpoint::new(address("127.0.0.1:1")).server_name("old.example.com")]);
        names.learn(&[Endpoint::new(address("127.0.0.1:1"))]);
        assert_eq!(names.context(&address("127.0.0.1:1")).server_name(), None);
        assert!(
            names.server_names.is_empty(),
            "nothing kept for unnamed endpoints"
        );
    }
}
