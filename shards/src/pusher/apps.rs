//! The Pusher apps (tenants) a node serves: who they are, and what each may do.
//!
//! An app is found by its key on the WebSocket endpoint (`/app/{key}`) and by its id on the HTTP API
//! (`/apps/{id}/...`). Everything an app owns lives under its own names ([`super::names`]), so two
//! apps' `presence-room` never meet, and protocol v1 never sees either.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

/// One app, as configured (`[[pusher.apps]]` or `GATEWAY_PUSHER_APPS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The app id of the HTTP API path (`/apps/{id}/events`).
    pub id: String,
    /// The public key clients connect with (`/app/{key}`) and signatures name.
    pub key: String,
    /// The secret that signs channel authorizations, user sign-ins and HTTP API requests.
    pub secret: String,
    /// A disabled app's connections are refused with 4003 and its API requests with 403.
    pub enabled: bool,
    /// Open connections the app may hold on this node (4100 beyond); 0: no limit but the node's.
    pub max_connections: u32,
    /// Whether clients may send `client-*` events on private and presence channels.
    pub client_events: bool,
    /// Members a presence channel may hold.
    pub max_presence_members: u32,
}

impl App {
    /// An app with the defaults of `GATEWAY_PUSHER_APPS` (enabled, client events on, no webhooks).
    pub fn new(id: &str, key: &str, secret: &str) -> Self {
        App {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            enabled: true,
            max_connections: 0,
            client_events: true,
            max_presence_members: 100,
        }
    }
}

/// The apps of a node, looked up by key or id. Few (tenants, not users): a scan is cheapest.
/// Shared by every shard; the per-app connection counts are node-wide atomics.
#[derive(Debug, Default)]
pub struct Apps {
    /// The apps, in configuration order.
    apps: Vec<Arc<App>>,
    /// Each app's anonymous subscriber name ([`super::names::anonymous`]), made once.
    anonymous: Vec<Arc<str>>,
    /// Each app's open connections on this node.
    open: Vec<AtomicU32>,
}

impl Apps {
    /// The registry of `apps` (keys and ids are checked unique by the configuration).
    pub fn new(apps: Vec<App>) -> Self {
        Apps {
            anonymous: apps
                .iter()
                .map(|a| Arc::from(super::names::anonymous(&a.id)))
                .collect(),
            open: apps.iter().map(|_| AtomicU32::new(0)).collect(),
            apps: apps.into_iter().map(Arc::new).collect(),
        }
    }

    /// The anonymous subscriber name of the app at `index`.
    pub fn anonymous(&self, index: u16) -> Arc<str> {
        self.anonymous[index as usize].clone()
    }

    /// Counts one more connection of the app at `index`, unless it is at its `max_connections`.
    pub fn try_connect(&self, index: u16) -> bool {
        let max = self.apps[index as usize].max_connections;
        self.open[index as usize]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// One connection of the app at `index` is gone.
    pub fn disconnected(&self, index: u16) {
        self.open[index as usize].fetch_sub(1, Ordering::AcqRel);
    }

    /// Open connections of the app at `index` on this node.
    pub fn connections(&self, index: u16) -> u32 {
        self.open[index as usize].load(Ordering::Acquire)
    }

    /// True when no app is configured: the Pusher endpoints answer as for an unknown key.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// The app whose key is `key`, with its index.
    pub fn by_key(&self, key: &str) -> Option<(u16, &Arc<App>)> {
        self.find(|a| a.key == key)
    }

    /// The app whose id is `id`, with its index.
    pub fn by_id(&self, id: &str) -> Option<(u16, &Arc<App>)> {
        self.find(|a| a.id == id)
    }

    /// The app at `index` (as kept by a connection).
    pub fn get(&self, index: u16) -> Option<&Arc<App>> {
        self.apps.get(index as usize)
    }

    fn find(&self, pred: impl Fn(&App) -> bool) -> Option<(u16, &Arc<App>)> {
        self.apps
            .iter()
            .enumerate()
            .find(|(_, a)| pred(a))
            .map(|(i, a)| (i as u16, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_by_key_and_by_id() {
        let apps = Apps::new(vec![App::new("1", "k1", "s1"), App::new("2", "k2", "s2")]);
        assert_eq!(
            apps.by_key("k2").map(|(i, a)| (i, a.id.as_str())),
            Some((1, "2"))
        );
        assert_eq!(
            apps.by_id("1").map(|(i, a)| (i, a.key.as_str())),
            Some((0, "k1"))
        );
        assert!(apps.by_key("1").is_none());
        assert!(apps.by_id("k1").is_none());
        assert_eq!(apps.get(1).map(|a| a.secret.as_str()), Some("s2"));
        assert!(apps.get(2).is_none());
        assert!(Apps::default().is_empty());
    }

    #[test]
    fn an_app_holds_at_most_its_max_connections() {
        let mut app = App::new("1", "k", "s");
        app.max_connections = 2;
        let apps = Apps::new(vec![app, App::new("2", "k2", "s2")]);
        assert!(apps.try_connect(0) && apps.try_connect(0));
        assert!(!apps.try_connect(0));
        apps.disconnected(0);
        assert!(apps.try_connect(0));
        assert_eq!(apps.connections(0), 2);
        for _ in 0..1000 {
            assert!(apps.try_connect(1), "no cap on app 2");
        }
        assert_eq!(&*apps.anonymous(1), "\u{1}2\u{1}");
    }
}
