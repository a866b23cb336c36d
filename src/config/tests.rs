//! Unit tests of the configuration layers: defaults, file, environment, validation, docs in sync.

use super::*;
use std::io::Write;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A config file with `text` that lives as long as the returned guard.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("gateway-config-{}-{name}.toml", std::process::id()));
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn invalid(config: &Config) -> Vec<String> {
    match config.validate() {
        Err(ConfigError::Invalid(problems)) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_spec() {
    let c = Config::load(None, env(&[("PATH", "/bin"), ("GATEWAY_LOG", "debug")])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin.to_string(), "0.0.0.0:9090");
    assert_eq!((c.shards, c.backlog, c.max_connections), (0, 65535, 0));
    assert_eq!(c.websocket.max_header_bytes, 8192);
    assert_eq!(c.limits.outbound_queue_bytes, 1_048_576);
    assert_eq!(c.heartbeat.timeout(), Duration::from_secs(50));
    assert_eq!(c.runtime.inbox_capacity, 65536);
    assert!(!c.auth.jwt_enabled());
}

#[test]
fn file_overrides_defaults() {
    let file = TempFile::new(
        "override",
        "node_id = \"n1\"\nlisten = \"127.0.0.1:0\"\n[heartbeat]\ninterval_ms = 100\ntimeout_ms = 300\n\
         [websocket]\nallowed_origins = [\"https://a.example\"]\n",
    );
    let c = Config::load(Some(&file.0), env(&[])).unwrap();
    assert_eq!(c.node_id, "n1");
    assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    assert_eq!(
        (c.heartbeat.interval_ms, c.heartbeat.timeout_ms),
        (100, 300)
    );
    assert_eq!(c.websocket.allowed_origins, ["https://a.example"]);
    assert_eq!(
        c.websocket.max_frame_bytes, 65536,
        "keys absent from the file keep their default"
    );
}

#[test]
fn env_overrides_file() {
    let file = TempFile::new("env", "shards = 2\n[auth]\ntimeout_ms = 500\n");
    let vars = env(&[
        ("GATEWAY_SHARDS", "3"),
        ("GATEWAY_HEARTBEAT_INTERVAL_MS", "200"),
        ("GATEWAY_AUTH_JWT_HS256_SECRET", "abc"),
        ("GATEWAY_WEBSOCKET_ALLOWED_ORIGINS", "a, b,"),
        ("GATEWAY_ADMIN", "127.0.0.1:0"),
    ]);
    let c = Config::load(Some(&file.0), vars).unwrap();
    assert_eq!(c.shards, 3);
    assert_eq!(c.heartbeat.interval_ms, 200);
    assert_eq!(
        c.auth.timeout_ms, 500,
        "file value kept when no variable overrides it"
    );
    assert_eq!(c.auth.jwt_hs256_secret, "abc");
    assert!(c.auth.jwt_enabled());
    assert!(
        !format!("{c:?}").contains("abc"),
        "Debug redacts the secret"
    );
    assert_eq!(c.websocket.allowed_origins, ["a", "b"]);
    assert_eq!(c.admin.to_string(), "127.0.0.1:0");
    let cleared = Config::load(None, env(&[("GATEWAY_WEBSOCKET_ALLOWED_ORIGINS", "")])).unwrap();
    assert!(cleared.websocket.allowed_origins.is_empty());
}

#[test]
fn unknown_key_in_file_is_rejected() {
    for (name, text, key) in [
        ("top", "shard = 2\n", "shard"),
        ("section", "[heartbeat]\ninterval = 5\n", "interval"),
    ] {
        let file = TempFile::new(name, text);
        let err = Config::load(Some(&file.0), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains(key), "{err}");
    }
    let file = TempFile::new("section-name", "[heartbeats]\n");
    assert!(matches!(
        Config::load(Some(&file.0), env(&[])),
        Err(ConfigError::Parse { .. })
    ));
    let file = TempFile::new("type", "shards = \"two\"\n");
    assert!(matches!(
        Config::load(Some(&file.0), env(&[])),
        Err(ConfigError::Parse { .. })
    ));
    let missing = Path::new("/nonexistent/gateway.toml");
    assert!(matches!(
        Config::load(Some(missing), env(&[])),
        Err(ConfigError::Read { .. })
    ));
}

#[test]
fn bad_env_vars_are_rejected_by_name() {
    for (var, value) in [
        ("GATEWAY_HEARTBEAT_INTERVAL", "5"),
        ("GATEWAY_WEBSOCKET", "x"),
        ("GATEWAY_SHARDS", "many"),
        ("GATEWAY_SHARDS", "-1"),
        ("GATEWAY_BACKLOG", "99999999999"),
        ("GATEWAY_LISTEN", "nowhere"),
    ] {
        match Config::load(None, env(&[(var, value)])) {
            Err(ConfigError::Env { var: v, message }) => assert_eq!(v, var, "{message}"),
            other => panic!("{var}={value}: expected Env error, got {other:?}"),
        }
    }
    let err = Config::load(None, env(&[("GATEWAY_HEARTBEAT_INTERVAL", "5")])).unwrap_err();
    assert!(
        err.to_string().contains("GATEWAY_HEARTBEAT_INTERVAL_MS"),
        "suggests the right name: {err}"
    );
}

#[test]
fn validation_reports_every_problem() {
    let mut c = Config::default();
    c.heartbeat.timeout_ms = c.heartbeat.interval_ms;
    c.websocket.max_frame_bytes = 124;
    c.websocket.max_message_bytes = 0;
    c.limits.rate_limit_burst = 0;
    c.runtime.inbox_capacity = 0;
    let problems = invalid(&c);
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(problems[0].contains("max_frame_bytes"), "{problems:?}");

    let mut c = Config::default();
    c.limits.rate_limit_per_sec = 0;
    c.limits.rate_limit_burst = 0;
    assert!(
        c.validate().is_ok(),
        "burst is irrelevant when the rate limit is off"
    );

    let mut c = Config::default();
    c.admin = c.listen;
    c.node_id = "has space".into();
    c.websocket.allowed_origins = vec![" ".into()];
    assert_eq!(invalid(&c).len(), 3);

    let c = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    assert!(c.validate().is_ok(), "port 0 twice is fine");

    let err = Config::load(None, env(&[("GATEWAY_HEARTBEAT_TIMEOUT_MS", "1000")])).unwrap_err();
    assert!(
        err.to_string().contains("heartbeat.timeout_ms (1000)"),
        "{err}"
    );
}

#[test]
fn per_connection_timeouts_stay_within_what_a_record_measures() {
    let mut c = Config::default();
    c.heartbeat.timeout_ms = 30 * 86_400_000;
    c.auth.timeout_ms = 1 << 31;
    c.websocket.handshake_timeout_ms = u64::MAX;
    let problems = invalid(&c);
    assert_eq!(problems.len(), 3, "{problems:?}");
    for key in [
        "heartbeat.timeout_ms",
        "auth.timeout_ms",
        "websocket.handshake_timeout_ms",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.contains(key) && p.contains("24 days")),
            "{key}: {problems:?}"
        );
    }
    c.heartbeat.timeout_ms = 20 * 86_400_000;
    c.auth.timeout_ms = (1 << 31) - 1;
    c.websocket.handshake_timeout_ms = 60_000;
    assert!(c.validate().is_ok());
}

#[test]
fn node_id_defaults_to_host_pid_and_a_suffix_that_differs_between_processes() {
    let id = Config::default().node_id_or_default();
    let (rest, suffix) = id.rsplit_once('-').unwrap();
    assert!(rest.ends_with(&format!("-{}", std::process::id())), "{id}");
    assert_eq!(suffix.len(), 4, "{id}");
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    // Two starts of the same pid (a restarted container) get different ids.
    let ids: std::collections::BTreeSet<String> = (0..20)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_micros(50));
            Config::default().node_id_or_default()
        })
        .collect();
    assert!(ids.len() > 1, "{ids:?}");
    let c = Config {
        node_id: "edge-1".into(),
        ..Config::default()
    };
    assert_eq!(c.node_id_or_default(), "edge-1");
}

#[test]
fn env_names_are_unique_and_documented() {
    let names = Config::env_names();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len());
    assert!(names.contains(&"GATEWAY_RUNTIME_INBOX_CAPACITY".to_owned()));
    assert!(!names.iter().any(|n| n == LOG_ENV));
    let doc = include_str!("../../docs/CONFIGURATION.md");
    for name in &names {
        assert!(
            doc.contains(name.as_str()),
            "{name} missing from docs/CONFIGURATION.md"
        );
    }
}

#[test]
fn example_file_is_the_default_config() {
    let parsed: Config = toml::from_str(include_str!("../../gateway.example.toml")).unwrap();
    assert_eq!(parsed, Config::default());
}

#[test]
fn abuse_limits_have_safe_defaults_and_are_validated() {
    let c = Config::default();
    assert_eq!(
        c.limits.max_connections_per_ip, 0,
        "off: behind a balancer every client shares its address"
    );
    assert_eq!(c.limits.max_pings_per_sec, 10);
    assert_eq!(c.websocket.max_fragments, 1024);
    let mut c = Config::default();
    c.websocket.max_fragments = 0;
    let problems = invalid(&c);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("websocket.max_fragments"),
        "{problems:?}"
    );
}

#[test]
fn redis_url_takes_one_server_sentinels_or_a_cluster_and_says_what_is_wrong() {
    let mut c = Config::default();
    for good in [
        "redis://127.0.0.1:6379/0",
        "redis://:pw@redis.internal:6380/",
        "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster",
        "redis+sentinel://:pw@s1:26379/mymaster/2",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "redis+cluster://:pw@c1:7000/",
    ] {
        c.redis_url = good.into();
        assert!(c.validate().is_ok(), "{good}");
    }
    for (bad, says) in [
        ("http://127.0.0.1:6379", "must start with redis://"),
        // This build has no TLS client: refused at start-up rather than running without Redis.
        ("rediss://redis.internal:6380/", "no TLS client"),
        ("redis://127.0.0.1:6379/notadb", "redis_url"),
        ("redis+sentinel://s1:26379", "names its master"),
        ("redis+sentinel://s1/mymaster", "needs a port"),
        ("redis+cluster://c1", "needs a port"),
        ("redis+cluster://c1:7000/2", "seed nodes only"),
    ] {
        c.redis_url = bad.into();
        let problems = invalid(&c);
        assert!(
            problems.iter().any(|p| p.contains(says)),
            "{bad}: {problems:?}"
        );
    }
}
