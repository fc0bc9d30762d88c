//! The `target_parse` fuzz target's check.

/// The check of the `target_parse` fuzz target: bytes as a target never panic, and a target that
/// parses prints back to an equal target, whose static endpoints and host/port split never
/// panic either.
pub fn check_target(bytes: &[u8]) {
    let Ok(input) = std::str::from_utf8(bytes) else {
        return;
    };
    let registered =
        |scheme: &str| croupier::target::BUILTIN_SCHEMES.contains(&scheme) || scheme == "example";
    if let Ok(target) = croupier::target::Target::parse(input, registered) {
        let printed = target.to_string();
        let again = croupier::target::Target::parse(&printed, registered).unwrap_or_else(|error| {
            panic!("{input:?} printed as {printed:?}, which fails: {error}")
        });
        assert_eq!(again, target, "{input:?} printed as {printed:?}");
        let _ = target.static_endpoints();
        let _ = target.host_port(croupier::target::DEFAULT_PORT);
    }
}
