#!/usr/bin/env python3
"""Checks that the declared MSRV is honest without a second toolchain.

Every published crate of the workspace declares a `rust-version`. This walks each one's normal
and build dependencies (with every feature on, as some user will turn them on), at the versions
Cargo.lock resolves, and fails if any declares a newer `rust-version` than the crate that
depends on it. (The crate's own code is held to the same version by clippy's
`incompatible_msrv` lint, which the clippy step runs.)
"""

import json
import subprocess
import sys


def version_key(text):
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    metadata = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked", "--all-features"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    packages = {package["id"]: package for package in metadata["packages"]}
    nodes = {node["id"]: node for node in metadata["resolve"]["nodes"]}
    members = set(metadata["workspace_members"])
    failures = []
    checked = 0
    for member in sorted(members, key=lambda id: packages[id]["name"]):
        package = packages[member]
        if package.get("publish") == []:
            continue  # publish = false: examples, benches, test servers
        msrv = package.get("rust_version")
        if msrv is None:
            failures.append(f"{package['name']} declares no rust-version")
            continue
        checked += 1
        seen, stack = set(), [member]
        while stack:
            for dep in nodes[stack.pop()]["deps"]:
                kinds = {kind["kind"] for kind in dep["dep_kinds"]}
                if kinds == {"dev"} or dep["pkg"] in seen:
                    continue
                seen.add(dep["pkg"])
                stack.append(dep["pkg"])
        for dep in sorted(seen, key=lambda id: packages[id]["name"]):
            needed = packages[dep].get("rust_version")
            if needed and version_key(needed) > version_key(msrv):
                failures.append(
                    f"{package['name']} declares rust-version {msrv}, but its dependency "
                    f"{packages[dep]['name']} {packages[dep]['version']} needs {needed}"
                )
    for failure in failures:
        print(failure, file=sys.stderr)
    if failures:
        return 1
    print(f"rust-version holds for {checked} published crates and all their dependencies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
