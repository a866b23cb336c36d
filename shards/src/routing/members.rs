//! The members of the Pusher presence channels a shard owns, with what each said about itself.
//!
//! Kept by the channel's owner shard; the member events their comings and goings send are decided in
//! `crate::pusher::presence`.

use std::{collections::HashMap, sync::Arc};

/// The members of the presence channels this shard owns: channel → member (app-scoped user name) →
/// its `user_info` as JSON text.
#[derive(Default)]
pub struct Members {
    channels: HashMap<Arc<str>, HashMap<Arc<str>, Arc<str>>, ahash::RandomState>,
}

impl Members {
    /// Members of `channel`, sorted by name, with their info.
    pub fn of(&self, channel: &str) -> Vec<(&Arc<str>, &Arc<str>)> {
        let mut out: Vec<_> = self
            .channels
            .get(channel)
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Members of `channel`.
    pub fn count(&self, channel: &str) -> usize {
        self.channels.get(channel).map_or(0, HashMap::len)
    }

    /// Records `member` of `channel` with `info`; with `cap` (a new member), refused (false) when
    /// the channel already holds that many.
    pub fn join(
        &mut self,
        channel: &Arc<str>,
        member: &Arc<str>,
        info: &Arc<str>,
        cap: Option<usize>,
    ) -> bool {
        let members = self.channels.entry(channel.clone()).or_default();
        if cap.is_some_and(|cap| members.len() >= cap) {
            if members.is_empty() {
                self.channels.remove(channel);
            }
            return false;
        }
        members.insert(member.clone(), info.clone());
        true
    }

    /// Forgets `member` of `channel` (the channel too, once it has none).
    pub fn leave(&mut self, channel: &Arc<str>, member: &Arc<str>) {
        if let Some(members) = self.channels.get_mut(channel) {
            members.remove(member);
            if members.is_empty() {
                self.channels.remove(channel);
            }
        }
    }
}
