//! The resolver's loop for one target: a full read of the prefix on one member, then a watch from
//! the revision after it. A member that fails is left for the next, where the watch resumes from
//! the revision after the last one applied, so no change is missed on the way; where that
//! revision is compacted, or the channel asks, the prefix is read in full again. Once every
//! member has failed in turn, the channel hears of it and the members are tried again after a
//! backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use croupier_channel::ResolverContext;
use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchResponse};

use crate::error::EtcdError;
use crate::event::EtcdEvent;
use crate::registry::Registry;
use crate::resolver::Settings;
use crate::target::EtcdTarget;

/// Keys asked for per read request: a registry of any size is read in bounded messages, all at
/// the revision of the first page.
const PAGE: i64 = 1000;

/// The resolver of one target.
pub(crate) struct Watch {
    settings: Arc<Settings>,
    target: EtcdTarget,
    context: ResolverContext,
    registry: Registry,
    /// The revision the registry is as of; `None` until a full read, and when one must be made.
    revision: Option<i64>,
    /// The skipped keys last reported, so that each is reported once.
    reported: Vec<EtcdError>,
}

/// Why a watch ended.
enum WatchEnd {
    /// Read again on the same member: the channel asked, or the watch's start was compacted.
    ReadAgain,
    /// The member failed: try the next.
    Failed(EtcdError),
}

impl Watch {
    pub(crate) fn new(
        settings: Arc<Settings>,
        target: EtcdTarget,
        context: ResolverContext,
    ) -> Self {
        Watch {
            settings,
            target,
            context,
            registry: Registry::default(),
            revision: None,
            reported: Vec::new(),
        }
    }

    /// Runs until the channel drops it.
    pub(crate) async fn run(mut self) {
        let members = self.target.members.clone();
        let mut failures = Vec::new();
        let mut retry = self.settings.retry_initial;
        for member in members.iter().cycle() {
            let (error, answered) = self.serve(member).await;
            self.settings.observe_error(&error);
            if answered {
                failures.clear();
                retry = self.settings.retry_initial;
            }
            failures.push(error);
            if failures.len() < members.len() {
                continue;
            }
            let all = EtcdError::AllMembersFailed {
                prefix: self.target.prefix.clone(),
                errors: std::mem::take(&mut failures),
            };
            self.settings.observe_error(&all);
            self.context.error((&all).into());
            // Try again after the backoff, or at once when the channel asks.
            let _ = tokio::time::timeout(retry, self.context.resolve_now()).await;
            retry = (retry * 2).min(self.settings.retry_max);
        }
    }

    /// Reads (if it must) and watches on `member` until it fails: the error, and whether the
    /// member answered first (a read, or a watch created; a member that only accepts
    /// connections and fails or cancels every request has not).
    async fn serve(&mut self, member: &str) -> (EtcdError, bool) {
        let mut client = match self.connect(member).await {
            Ok(client) => client,
            Err(error) => return (error, false),
        };
        let mut answered = false;
        loop {
            let start = match self.revision {
                Some(revision) => revision + 1,
                None => match self.read(&mut client, member).await {
                    Ok(revision) => {
                        answered = true;
                        revision + 1
                    }
                    Err(error) => return (error, answered),
                },
            };
            match self.watch(&mut client, member, start, &mut answered).await {
                WatchEnd::ReadAgain => self.revision = None,
                WatchEnd::Failed(error) => return (error, answered),
            }
        }
    }

    /// A client of `member` alone, connected.
    async fn connect(&self, member: &str) -> Result<Client, EtcdError> {
        let settings = &self.settings;
        let scheme = if settings.uses_tls() { "https" } else { "http" };
        let failed = |reason: String| EtcdError::member(member, "connect", reason);
        let endpoint = settings
            .endpoint(format!("{scheme}://{member}"))
            .map_err(|error| failed(error.to_string()))?;
        let connected = self
            .bounded(member, "connect", settings.connect_timeout, async {
                let channel = endpoint
                    .connect()
                    .await
                    .map_err(|error| failed(source_chain(&error)))?;
                Client::from_channel(
                    etcd_client::Channel::Tonic(channel),
                    Some(settings.connect_options()),
                )
                .await
                .map_err(|error| failed(error.to_string()))
            })
            .await;
        connected
    }

    /// Reads every key under the prefix, page by page at one revision, and reports the list:
    /// the revision read.
    async fn read(&mut self, client: &mut Client, member: &str) -> Result<i64, EtcdError> {
        let prefix = self.target.prefix.as_bytes();
        let end = prefix_end(prefix);
        let mut registry = Registry::default();
        let mut from = prefix.to_vec();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let timeout = self.settings.request_timeout;
            let page = self
                .bounded(member, "read", timeout, async {
                    client
                        .get(from.clone(), Some(options))
                        .await
                        .map_err(|error| EtcdError::member(member, "read", error))
                })
                .await?;
            if revision == 0 {
                revision = page.header().map_or(0, |header| header.revision());
            }
            for kv in page.kvs() {
                registry.put(kv.key(), kv.value());
            }
            match page.kvs().last() {
                Some(last) if page.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        self.registry = registry;
        self.revision = Some(revision);
        self.publish(member, revision, true);
        Ok(revision)
    }

    /// Watches the prefix from `start`, applying each response as one update, until it must
    /// read again or the member fails; sets `answered` once the watch is created.
    async fn watch(
        &mut self,
        client: &mut Client,
        member: &str,
        start: i64,
        answered: &mut bool,
    ) -> WatchEnd {
        let failed = |reason: String| WatchEnd::Failed(EtcdError::member(member, "watch", reason));
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let prefix = self.target.prefix.clone();
        let timeout = self.settings.request_timeout;
        let started = self
            .bounded(member, "watch", timeout, async {
                client
                    .watch(prefix, Some(options))
                    .await
                    .map_err(|error| EtcdError::member(member, "watch", error))
            })
            .await;
        let mut stream = match started {
            Ok(stream) => stream,
            Err(error) => return WatchEnd::Failed(error),
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = self.context.resolve_now() => return WatchEnd::ReadAgain,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return failed("the member ended the watch".into()),
                Err(error) => return failed(error.to_string()),
            };
            if response.compact_revision() > 0 {
                // The history from `start` is gone: what changed since can only be read.
                return WatchEnd::ReadAgain;
            }
            if response.canceled() {
                let reason = match response.cancel_reason() {
                    "" => "the member cancelled the watch".to_owned(),
                    reason => format!("the member cancelled the watch: {reason}"),
                };
                return failed(reason);
            }
            // Created, or changes: the member serves (a cancellation, as a member without a
            // leader sends, does not count).
            *answered = true;
            if let Some(revision) = self.apply(&response) {
                self.revision = Some(revision);
                self.publish(member, revision, false);
            }
        }
    }

    /// Applies a watch response's events: the revision of the last, if there were any.
    fn apply(&mut self, response: &WatchResponse) -> Option<i64> {
        let mut revision = None;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => self.registry.put(kv.key(), kv.value()),
                EventType::Delete => self.registry.delete(kv.key()),
            }
            revision = Some(kv.mod_revision());
        }
        revision
    }

    /// Reports the list, as of `revision` on `member`, to the channel, and any key newly
    /// skipped for its value.
    fn publish(&mut self, member: &str, revision: i64, full_read: bool) {
        let update = self.registry.update();
        let malformed = self.registry.malformed();
        self.settings.observe(|| EtcdEvent::Resolved {
            prefix: self.target.prefix.clone(),
            member: member.to_owned(),
            revision,
            endpoints: update.endpoints.len(),
            skipped: malformed.len(),
            full_read,
        });
        let empty = update.endpoints.is_empty();
        self.context.update(update);
        let changed = malformed != self.reported;
        for error in &malformed {
            if !self.reported.contains(error) {
                self.settings.observe_error(error);
            }
        }
        // After the list, so that a list left empty fails calls with the reason; a list that
        // is not empty hears of its skipped keys only when they change (an error makes the
        // channel ask again, and a read would find the same).
        let error = match malformed.first() {
            Some(first) if empty || changed => Some(match malformed.len() {
                1 => first.to_string(),
                n => format!("{first} (and {} more keys skipped)", n - 1),
            }),
            None if empty => {
                let error = EtcdError::NoEndpoints {
                    prefix: self.target.prefix.clone(),
                    member: member.to_owned(),
                    revision,
                };
                self.settings.observe_error(&error);
                Some(error.to_string())
            }
            _ => None,
        };
        if let Some(error) = error {
            self.context.error(croupier::ResolverError::new(error));
        }
        self.reported = malformed;
    }

    /// `request` on `member`, given `timeout` to answer.
    async fn bounded<T>(
        &self,
        member: &str,
        operation: &'static str,
        timeout: Duration,
        request: impl Future<Output = Result<T, EtcdError>>,
    ) -> Result<T, EtcdError> {
        tokio::time::timeout(timeout, request)
            .await
            .unwrap_or_else(|_| {
                Err(EtcdError::Timeout {
                    member: member.to_owned(),
                    operation,
                    after: timeout,
                })
            })
    }
}

/// The end of the range of keys that start with `prefix`: etcd's `range_end` for a prefix.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

/// `error` and its sources, each after a colon (a transport error's own message says little),
/// leaving out those whose words are already there.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefixs_range_ends_after_its_last_byte_that_can_grow() {
        assert_eq!(prefix_end(b"services/echo/"), b"services/echo0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), [0]);
    }
}
