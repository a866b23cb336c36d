//! The options of `--protocol pusher`: their checks, the Pusher endpoint a --url stands for, and the
//! HTTP API's address.

use std::net::SocketAddr;

use super::{Options, Scenario, parse_url};

impl Options {
    /// The checks of `--protocol pusher`.
    pub(super) fn check_pusher(&self, s: Scenario) -> Result<(), String> {
        if !matches!(
            s,
            Scenario::Idle | Scenario::Fanout | Scenario::Churn | Scenario::Ramp
        ) {
            return Err(format!(
                "--protocol pusher runs idle, fanout, churn and ramp, not {}",
                s.name()
            ));
        }
        if self.raw {
            return Err("--protocol pusher and --raw exclude each other".into());
        }
        let id_ok = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !id_ok(&self.pusher_app_id) || !id_ok(&self.pusher_key) {
            return Err("--pusher-app-id and --pusher-key: 1..=128 of A-Za-z0-9 - _ .".into());
        }
        if self.pusher_secret.is_empty() {
            return Err("--pusher-secret must not be empty".into());
        }
        // Pusher's channel names: A-Za-z0-9_-=@,.; (the suffix -N keeps to them).
        let name_ok = self.channel.len() <= 140
            && self
                .channel
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b));
        if !name_ok {
            return Err("--channel: with pusher, at most 140 of A-Za-z0-9_-=@,.;".into());
        }
        if let Some(api) = &self.api_url {
            if s != Scenario::Fanout {
                return Err("--api-url is for fanout".into());
            }
            parse_api_url(api)?;
        }
        Ok(())
    }
}

/// A ws:// URL made a Pusher endpoint: without a path (or with `/`), `/app/<key>?protocol=7&...` is
/// appended; a URL with a path is used as given.
pub(super) fn pusher_url(url: &str, key: &str) -> String {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    match rest.find(['/', '?']) {
        Some(at) if &rest[at..] != "/" => url.to_string(),
        _ => format!(
            "ws://{}/app/{key}?protocol=7&client=js&version=8.6.0&flash=false",
            rest.trim_end_matches('/')
        ),
    }
}

/// Parses `http://host[:port]` (the Pusher HTTP API, `--api-url`), loopback only like `--url`.
pub fn parse_api_url(url: &str) -> Result<SocketAddr, String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "--api-url {url:?}: only http:// URLs are supported (no TLS)"
        ));
    };
    parse_url(&format!("ws://{rest}"))
        .map(|t| t.addr)
        .map_err(|e| e.replace("--url", "--api-url"))
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    /// The options of `loadtest <scenario> --url <url> <args>` for any scenario.
    fn any(scenario: &str, url: &str, args: &[&str]) -> Options {
        let mut v = vec!["loadtest", scenario, "--url", url];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Idle(o)
            | Command::Echo(o)
            | Command::Dm(o)
            | Command::Crossnode(o)
            | Command::Fanout(o)
            | Command::Churn(o)
            | Command::Ramp(o) => o,
            Command::Worker => unreachable!(),
        }
    }

    #[test]
    fn pusher_options() {
        let p = ["--protocol", "pusher"];
        let o = any("idle", "ws://127.0.0.1:1", &p);
        let t = o.validate(Scenario::Idle).unwrap();
        assert_eq!(
            t[0].url,
            "ws://127.0.0.1:1/app/key-1?protocol=7&client=js&version=8.6.0&flash=false"
        );
        assert_eq!(o.channel_of(105).as_deref(), Some("fanout-5"));
        let o = any(
            "idle",
            "ws://127.0.0.1:1/",
            &["--protocol", "pusher", "--pusher-key", "k"],
        );
        assert!(
            o.validate(Scenario::Idle).unwrap()[0]
                .url
                .contains("/app/k?protocol=7")
        );
        // A URL with a path is used as given.
        let o = any("idle", "ws://127.0.0.1:1/app/x?protocol=7", &p);
        assert_eq!(
            o.validate(Scenario::Idle).unwrap()[0].url,
            "ws://127.0.0.1:1/app/x?protocol=7"
        );
        for s in ["echo", "dm"] {
            let scenario = if s == "echo" {
                Scenario::Echo
            } else {
                Scenario::Dm
            };
            assert!(any(s, "ws://127.0.0.1:1", &p).validate(scenario).is_err());
        }
        let raw = any(
            "idle",
            "ws://127.0.0.1:1",
            &["--protocol", "pusher", "--raw"],
        );
        assert!(raw.validate(Scenario::Idle).is_err());
        let api = ["--protocol", "pusher", "--api-url", "http://127.0.0.1:9"];
        let o = any("fanout", "ws://127.0.0.1:1", &api);
        assert!(o.validate(Scenario::Fanout).is_ok());
        assert!(o.validate(Scenario::Idle).is_err());
        let far = ["--protocol", "pusher", "--api-url", "http://10.0.0.1:9"];
        assert!(
            any("fanout", "ws://127.0.0.1:1", &far)
                .validate(Scenario::Fanout)
                .is_err()
        );
        let v1_api = any(
            "fanout",
            "ws://127.0.0.1:1",
            &["--api-url", "http://127.0.0.1:9"],
        );
        assert!(v1_api.validate(Scenario::Fanout).is_err());
        let bad_channel = ["--protocol", "pusher", "--channel", "a b"];
        assert!(
            any("fanout", "ws://127.0.0.1:1", &bad_channel)
                .validate(Scenario::Fanout)
                .is_err()
        );
        // v1 subscribes idle connections only when --channels is given.
        let v1 = any("idle", "ws://127.0.0.1:1", &[]);
        assert_eq!(v1.channel_of(3), None);
        let v1 = any(
            "idle",
            "ws://127.0.0.1:1",
            &["--channels", "2", "--channel", "idle"],
        );
        assert_eq!(v1.channel_of(3).as_deref(), Some("idle-1"));
        let zero = any("idle", "ws://127.0.0.1:1", &["--channels", "0"]);
        assert!(zero.validate(Scenario::Idle).is_err());
    }
}
