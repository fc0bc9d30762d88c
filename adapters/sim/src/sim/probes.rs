//! Probes: a probe travels to its backend over the client's link, the backend answers with its
//! requests in flight and latency estimate (the core's [`ServerLoad`](croupier::ServerLoad), as
//! a real server's layer would), and the answer travels back. A probe costs a round trip and no
//! slot.

use croupier::{ProbeResult, SubchannelId};

use super::{Event, Sim};

impl Sim<'_> {
    /// The balancer asked to probe `subchannel`: over its connection, if it has one up.
    pub(super) fn send_probe(&mut self, client: usize, subchannel: SubchannelId) {
        let Some(conn) = self.clients[client].conns.get(&subchannel) else {
            return; // no connection: nothing to probe over, as in a real adapter
        };
        if !conn.established {
            return;
        }
        let backend = conn.backend;
        self.after(
            self.link(client, backend),
            Event::ProbeArrives {
                client,
                subchannel,
                backend,
            },
        );
    }

    pub(super) fn probe_arrives(
        &mut self,
        client: usize,
        subchannel: SubchannelId,
        backend: usize,
    ) {
        let now = self.at(self.now);
        let Some(b) = self.backends.get(backend) else {
            return;
        };
        if !b.up {
            return; // a dead backend answers nothing
        }
        let result = b.probed.answer(now);
        self.after(
            self.link(client, backend),
            Event::ProbeAnswered {
                client,
                subchannel,
                result,
            },
        );
    }

    pub(super) fn probe_answered(
        &mut self,
        client: usize,
        subchannel: SubchannelId,
        result: ProbeResult,
    ) {
        let now = self.at(self.now);
        if let Some(lb) = self.clients[client].lb.as_mut() {
            lb.handle_probe_result(subchannel, result, now);
        }
        self.settle(client);
    }
}
