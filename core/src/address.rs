//! Addresses and endpoints: what a resolver produces and a policy connects to.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use smallvec::{smallvec, SmallVec};

/// One place a connection can be made to.
///
/// The core never opens anything itself; an address is handed back to the adapter in
/// [`Action::Connect`](crate::Action::Connect) and the adapter's connector decides what it means.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Address {
    /// An IP socket address (`127.0.0.1:50051`, `[::1]:443`).
    Socket(SocketAddr),
    /// A unix-domain socket path (`unix:/run/app.sock`).
    Unix(PathBuf),
    /// A Linux abstract unix-domain socket name (`unix-abstract:name`), without the leading NUL.
    UnixAbstract(String),
    /// Anything else, passed through to the connector untouched: a `host:port` that
    /// `passthrough:///` did not resolve, or a custom connector's own notation.
    Opaque(Arc<str>),
}

impl Address {
    /// The IP family of a socket address: `Some(true)` for IPv6, `Some(false)` for IPv4, `None` for
    /// other kinds of address.
    pub fn is_ipv6(&self) -> Option<bool> {
        match self {
            Address::Socket(addr) => Some(addr.is_ipv6()),
            _ => None,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Self {
        Address::Socket(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Socket(addr) => write!(f, "{addr}"),
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::UnixAbstract(name) => write!(f, "unix-abstract:{name}"),
            Address::Opaque(text) => f.write_str(text),
        }
    }
}

/// Facts a resolver attaches to an endpoint, read by policies and connectors.
///
/// `weight` is used by weighted policies (1 when the resolver says nothing); `labels` are free-form
/// `key = value` pairs a custom policy may read (a zone, a canary flag, ...); `server_name` is the
/// name the endpoint's server answers to, for connectors (gRPC's `Address.ServerName`);
/// `hierarchy` is the endpoint's place in a tree of policies (gRPC's `hierarchy` attribute; see
/// [`Attributes::hierarchy`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attributes {
    weight: u32,
    /// How many names of the hierarchy path the tree levels above have consumed (it sits in
    /// the padding beside `weight`).
    level: u32,
    labels: Vec<(Arc<str>, Arc<str>)>,
    /// Behind a thin pointer: 8 bytes an endpoint (the balancer keeps the last list, and most
    /// endpoints have neither).
    rare: Option<Arc<Rare>>,
}

/// The attributes few endpoints carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Rare {
    server_name: Option<String>,
    hierarchy: Vec<Arc<str>>,
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            weight: 1,
            level: 0,
            labels: Vec::new(),
            rare: None,
        }
    }
}

impl Attributes {
    /// The endpoint's static weight, at least 1.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// Sets the static weight; a weight of 0 is stored as 1 (every endpoint gets some traffic).
    pub fn set_weight(&mut self, weight: u32) {
        self.weight = weight.max(1);
    }

    /// The value of label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| &**k == key)
            .map(|(_, v)| &**v)
    }

    /// Sets label `key` to `value`, replacing an earlier value.
    pub fn set_label(&mut self, key: &str, value: &str) {
        match self.labels.iter_mut().find(|(k, _)| &**k == key) {
            Some(slot) => slot.1 = value.into(),
            None => self.labels.push((key.into(), value.into())),
        }
    }

    /// All labels, in the order they were first set.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }

    fn rare_mut(&mut self) -> &mut Rare {
        Arc::make_mut(self.rare.get_or_insert_with(Default::default))
    }

    /// The name the endpoint's server answers to, if the resolver gave one: a connector verifies
    /// the server's TLS certificate against it and sends it as the calls' authority, in place of
    /// the target's (gRPC's `Address.ServerName`). The core itself never reads it, and does not
    /// tell endpoints apart by it: a name changed in a later update, for the same addresses,
    /// applies from the next connection attempt, not to a connection already made.
    pub fn server_name(&self) -> Option<&str> {
        self.rare.as_ref()?.server_name.as_deref()
    }

    /// Sets the server name (see [`Attributes::server_name`]).
    pub fn set_server_name(&mut self, name: &str) {
        self.rare_mut().server_name = Some(name.to_owned());
    }

    /// The endpoint's path in a tree of policies, from the level reading it down: the first name
    /// is the child of this level's policy that the endpoint belongs to, the next one the child
    /// of that child, and so on (gRPC's internal `hierarchy` attribute, which its xDS resolver
    /// sets to `[priority, locality]`).
    ///
    /// A resolver sets the whole path with [`Attributes::set_hierarchy`]; a tree policy
    /// (`priority`, `weighted_target`) hands each child its endpoints with the first name
    /// consumed ([`Attributes::descend_hierarchy`]), so the child reads its own level first. An
    /// endpoint whose path is empty at a tree level, or names no child of it, goes to no child
    /// there: a resolver that feeds a tree policy names every endpoint's place.
    pub fn hierarchy(&self) -> &[Arc<str>] {
        match &self.rare {
            Some(rare) => rare.hierarchy.get(self.level as usize..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Sets the endpoint's whole path (see [`Attributes::hierarchy`]), outermost level first.
    pub fn set_hierarchy<S: Into<Arc<str>>>(&mut self, path: impl IntoIterator<Item = S>) {
        self.level = 0;
        self.rare_mut().hierarchy = path.into_iter().map(Into::into).collect();
    }

    /// Consumes the first name of the path, as a tree policy does before it hands the endpoint
    /// to the child that name chose; returns whether there was one. Allocates nothing.
    pub fn descend_hierarchy(&mut self) -> bool {
        let deeper = !self.hierarchy().is_empty();
        if deeper {
            self.level += 1;
        }
        deeper
    }
}

/// One logical backend: one or more addresses that reach the same server (say its IPv4 and IPv6
/// addresses), plus attributes.
///
/// Policies that balance across backends (round_robin and its kin) treat an endpoint as one unit and
/// connect to the first of its addresses that answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// Inline for the usual endpoint of one address: a list of 100,000 endpoints is then one
    /// allocation, not 100,001 (freeing the last list's was a fifth of a 1% change's time).
    addresses: SmallVec<[Address; 1]>,
    attributes: Attributes,
}

impl Endpoint {
    /// An endpoint with one address and default attributes.
    pub fn new(address: impl Into<Address>) -> Self {
        Endpoint {
            addresses: smallvec![address.into()],
            attributes: Attributes::default(),
        }
    }

    /// An endpoint with several addresses, tried in order. An endpoint with no address is kept but
    /// can never connect; policies report it as failed.
    pub fn with_addresses(addresses: impl IntoIterator<Item = Address>) -> Self {
        Endpoint {
            addresses: addresses.into_iter().collect(),
            attributes: Attributes::default(),
        }
    }

    /// Sets the static weight (see [`Attributes::set_weight`]).
    pub fn weight(mut self, weight: u32) -> Self {
        self.attributes.set_weight(weight);
        self
    }

    /// Sets a label (see [`Attributes::set_label`]).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.attributes.set_label(key, value);
        self
    }

    /// Sets the name its server answers to (see [`Attributes::server_name`]): what a TLS
    /// connector verifies, and the `:authority` of the calls sent to it.
    pub fn server_name(mut self, name: &str) -> Self {
        self.attributes.set_server_name(name);
        self
    }

    /// Sets its path in a tree of policies (see [`Attributes::hierarchy`]), outermost first:
    /// `["p0", "zone-a"]` puts it under child `p0` of a `priority` policy and child `zone-a` of
    /// the `weighted_target` below it.
    pub fn hierarchy<S: Into<Arc<str>>>(mut self, path: impl IntoIterator<Item = S>) -> Self {
        self.attributes.set_hierarchy(path);
        self
    }

    /// The endpoint's addresses, in preference order.
    pub fn addresses(&self) -> &[Address] {
        &self.addresses
    }

    /// The endpoint's attributes.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// The endpoint's attributes, to change them.
    pub fn attributes_mut(&mut self) -> &mut Attributes {
        &mut self.attributes
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addresses.as_slice() {
            [] => f.write_str("(no address)"),
            [one] => write!(f, "{one}"),
            many => {
                f.write_str("[")?;
                for (i, address) in many.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{address}")?;
                }
                f.write_str("]")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_zero_becomes_one() {
        let e = Endpoint::new("10.0.0.1:80".parse::<SocketAddr>().unwrap()).weight(0);
        assert_eq!(e.attributes().weight(), 1);
    }

    #[test]
    fn labels_replace_earlier_values() {
        let e = Endpoint::new(Address::Opaque("a".into()))
            .label("zone", "a")
            .label("zone", "b");
        assert_eq!(e.attributes().label("zone"), Some("b"));
        assert_eq!(e.attributes().labels().count(), 1);
        assert_eq!(e.attributes().label("missing"), None);
    }

    #[test]
    fn server_name_is_unset_until_a_resolver_sets_it() {
        let plain = Endpoint::new(Address::Opaque("a".into()));
        assert_eq!(plain.attributes().server_name(), None);
        let named = plain.clone().server_name("a.example.com");
        assert_eq!(named.attributes().server_name(), Some("a.example.com"));
        assert_ne!(
            plain, named,
            "two endpoints that differ in name are different endpoints"
        );
    }

    #[test]
    fn a_hierarchy_path_is_consumed_level_by_level() {
        let plain = Endpoint::new(Address::Opaque("a".into()));
        assert!(plain.attributes().hierarchy().is_empty());
        let mut placed = plain
            .clone()
            .hierarchy(["p0", "zone-a"])
            .server_name("a.example");
        let names = |e: &Endpoint| {
            e.attributes()
                .hierarchy()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&placed), ["p0", "zone-a"]);
        assert!(placed.attributes_mut().descend_hierarchy());
        assert_eq!(names(&placed), ["zone-a"]);
        assert!(placed.attributes_mut().descend_hierarchy());
        assert!(names(&placed).is_empty());
        assert!(!placed.attributes_mut().descend_hierarchy());
        assert_eq!(placed.attributes().server_name(), Some("a.example"));
        placed.attributes_mut().set_hierarchy(["p1"]);
        assert_eq!(names(&placed), ["p1"]);
    }

    #[test]
    fn an_endpoint_of_one_address_takes_ten_words_and_no_allocation() {
        // The balancer keeps the last resolver update: at 100,000 endpoints each byte counts,
        // and so does each allocation (the address inline: 80 bytes, where a vector took 64
        // and an allocation of 48).
        assert_eq!(
            std::mem::size_of::<Endpoint>(),
            10 * std::mem::size_of::<usize>()
        );
        let endpoint = Endpoint::new(Address::Socket("10.0.0.1:8080".parse().unwrap()));
        assert!(!endpoint.addresses.spilled());
    }

    #[test]
    fn display_names_every_address() {
        let e = Endpoint::with_addresses([
            Address::Socket("127.0.0.1:1".parse().unwrap()),
            Address::Unix("/tmp/s".into()),
        ]);
        assert_eq!(e.to_string(), "[127.0.0.1:1, unix:/tmp/s]");
    }
}
