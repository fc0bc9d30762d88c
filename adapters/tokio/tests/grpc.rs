//! gRPC over croupier channels, against tonic servers.
