//! `[pusher]`: the Pusher apps (tenants) the node serves on `/app/{key}` and `/apps/{id}/...`.
//!
//! In the file, one `[[pusher.apps]]` table per app; for the simple case, `GATEWAY_PUSHER_APPS`
//! (`id:key:secret[,id:key:secret...]`, each app enabled with client events on) replaces the list.
//! `Debug` redacts the secrets.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The environment variable that sets the app list.
pub const APPS_ENV: &str = "GATEWAY_PUSHER_APPS";

/// `[pusher]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherSection {
    /// The apps; none by default (the Pusher endpoints answer as for an unknown key).
    pub apps: Vec<AppEntry>,
}

/// One `[[pusher.apps]]` table.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// The app id of the HTTP API path (`/apps/{id}/...`): letters, digits, `-` and `_`.
    pub id: String,
    /// The key clients connect with (`/app/{key}`): letters, digits, `-`, `_` and `.`.
    pub key: String,
    /// The secret signing channel authorizations, sign-ins and API requests.
    pub secret: String,
    /// A disabled app's clients are refused with 4003 and its API requests with 403. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Connections the app may hold on this node (4100 beyond). Default 0: only the node's cap.
    #[serde(default)]
    pub max_connections: u32,
    /// Whether clients may send `client-*` events on private and presence channels. Default true.
    #[serde(default = "yes")]
    pub client_events: bool,
    /// Members one presence channel may hold. Default 100 (Pusher's own).
    #[serde(default = "hundred")]
    pub max_presence_members: u32,
    /// Where the app's webhooks go: `[{ url = "http://...", events = ["channel_occupied", ...] }]`
    /// (no `events`: all five). Signed with the app's secret (`X-Pusher-Signature`).
    #[serde(default)]
    pub webhooks: Vec<super::webhooks::PusherWebhook>,
}

fn yes() -> bool {
    true
}

fn hundred() -> u32 {
    100
}

impl fmt::Debug for AppEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppEntry")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("max_connections", &self.max_connections)
            .field("client_events", &self.client_events)
            .field("max_presence_members", &self.max_presence_members)
            .field("webhooks", &self.webhooks)
            .finish()
    }
}

impl AppEntry {
    /// The data plane's view of this app.
    pub fn to_shards(&self) -> shards::pusher::apps::App {
        shards::pusher::apps::App {
            id: self.id.clone(),
            key: self.key.clone(),
            secret: self.secret.clone(),
            enabled: self.enabled,
            max_connections: self.max_connections,
            client_events: self.client_events,
            max_presence_members: self.max_presence_members,
        }
    }
}

/// The apps of `GATEWAY_PUSHER_APPS`: `id:key:secret` entries separated by commas.
pub fn parse_env(raw: &str) -> Result<Vec<AppEntry>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let mut parts = entry.splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(id), Some(key), Some(secret)) => Ok(AppEntry {
                    id: id.to_owned(),
                    key: key.to_owned(),
                    secret: secret.to_owned(),
                    enabled: true,
                    max_connections: 0,
                    client_events: true,
                    max_presence_members: hundred(),
                    webhooks: Vec::new(),
                }),
                _ => Err(format!(
                    "expected id:key:secret entries separated by commas, got {entry:?}"
                )),
            }
        })
        .collect()
}

/// Every problem with the apps: names outside their alphabets, duplicates, empty secrets.
pub fn problems(section: &PusherSection) -> Vec<String> {
    let mut out = Vec::new();
    let word = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    for (i, app) in section.apps.iter().enumerate() {
        if !word(&app.id, b"-_") {
            out.push(format!(
                "pusher.apps[{i}].id {:?} must be 1 to 128 letters, digits, - or _",
                app.id
            ));
        }
        if !word(&app.key, b"-_.") {
            out.push(format!(
                "pusher.apps[{i}].key {:?} must be 1 to 128 letters, digits, -, _ or .",
                app.key
            ));
        }
        if app.secret.is_empty() {
            out.push(format!("pusher.apps[{i}].secret must not be empty"));
        }
        if app.max_presence_members == 0 {
            out.push(format!(
                "pusher.apps[{i}].max_presence_members must be at least 1"
            ));
        }
        for (j, hook) in app.webhooks.iter().enumerate() {
            out.extend(super::webhooks::problems(
                &format!("pusher.apps[{i}].webhooks[{j}]"),
                &hook.url,
                &hook.events,
                &super::webhooks::PUSHER_EVENTS,
            ));
        }
        let earlier = &section.apps[..i];
        if earlier.iter().any(|a| a.id == app.id) {
            out.push(format!("pusher.apps: id {:?} appears twice", app.id));
        }
        if earlier.iter().any(|a| a.key == app.key) {
            out.push(format!("pusher.apps: key {:?} appears twice", app.key));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_apps_parse_and_errors_name_the_entry() {
        let apps = parse_env("1:k1:s1, 2:k2:s:with:colons").unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[1].secret, "s:with:colons");
        assert!(apps[0].enabled && apps[0].client_events);
        assert_eq!(apps[0].max_presence_members, 100);
        let e = parse_env("1:k1").unwrap_err();
        assert!(e.contains("\"1:k1\""), "{e}");
        assert!(parse_env("").unwrap().is_empty());
    }

    #[test]
    fn bad_apps_are_reported_and_secrets_never_printed() {
        let mut apps = parse_env("1:k1:s1,1:k1:,a/b:k 2:s").unwrap();
        apps[0].max_presence_members = 0;
        let p = problems(&PusherSection { apps: apps.clone() });
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(!format!("{:?}", apps[0]).contains("s1"));
    }

    #[test]
    fn file_tables_take_defaults() {
        let s: PusherSection = toml::from_str(
            "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = false\n",
        )
        .unwrap();
        assert!(s.apps[0].enabled && !s.apps[0].client_events);
        assert!(
            toml::from_str::<PusherSection>(
                "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nwat = 1\n"
            )
            .is_err()
        );
    }
}
