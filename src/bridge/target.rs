//! Where the bridge connects: the one Redis of `redis://`, or the master that Redis Sentinel names
//! for `redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/<db>]`
//! `[?sentinel_username=...&sentinel_password=...]` (the credentials before `@` are the master's, the
//! parameters the sentinels', percent-encoded).
//!
//! With Sentinel, every connection attempt asks the sentinels for the master's address (the first
//! sentinel that answers wins and is asked first next time), connects, and checks with `ROLE` that the
//! server is the master (a demoted master still accepts connections, but not writes). One watcher task
//! per sentinel stays subscribed to its announcements (reconnecting when its sentinel fails):
//! - `+selected-slave` comes from the sentinel leading a failover, at least one sentinel tick (100 ms)
//!   before it promotes the replica. The bridge stops writing to the old master at once and does not
//!   go back to it while the failover runs ([`FENCE`]): a message numbered by the old master after the
//!   replica left it would be lost with it, and the new master would give its `seq` to another
//!   message, which a client that got the first live would drop as a duplicate. A master that is
//!   still running (`SENTINEL FAILOVER`, a partition) is the case this guards; a dead one takes no
//!   writes anyway.
//! - `+switch-master` names the new master: the session with the old one ends (if it had not) and the
//!   bridge reconnects at once, which is its ordinary recovery (presence re-asserted, channel
//!   subscriptions restored; resumes are answered `unavailable` only while no master is reachable).

use std::time::Duration;

use futures_util::StreamExt;
use redis::{Client, IntoConnectionInfo, RedisResult};
use tokio::sync::watch;
use tracing::{info, warn};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::cluster_target::ClusterUrl;
use crate::cluster::conn::Conn;

/// URL scheme of a Sentinel-managed Redis.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";
/// Bound on one question to one sentinel (connect included).
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before a watcher reconnects to its sentinel.
const WATCH_RETRY: Duration = Duration::from_millis(500);
/// How long a master whose failover has begun is not connected to (unless the sentinels name it again
/// after this, e.g. when the failover was aborted).
pub const FENCE: Duration = Duration::from_secs(10);

/// A master's address as the sentinels give it.
pub type Addr = (String, u16);

/// A parsed `redis+sentinel://[user:password@]host:port[,host:port...]/<master name>[/<db>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The sentinels, `host:port`.
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' configuration.
    pub master: String,
    /// `user:password@` (or `:password@`) for the master, verbatim; empty without credentials.
    pub auth: String,
    /// Database number on the master.
    pub db: i64,
    /// Username for the sentinels (`?sentinel_username=`).
    pub sentinel_username: Option<String>,
    /// Password for the sentinels (`?sentinel_password=`): sentinels with `requirepass` ask for it.
    pub sentinel_password: Option<String>,
}

impl SentinelUrl {
    /// A client for one sentinel (`host:port`), with the sentinels' credentials.
    fn sentinel_client(&self, sentinel: &str) -> RedisResult<Client> {
        let (host, port) = sentinel
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                std::io::Error::other(format!("sentinel {sentinel:?} is not host:port"))
            })?;
        let info = (host, port).into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.sentinel_username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.sentinel_password {
            settings = settings.set_password(password);
        }
        Client::open(info.set_redis_settings(settings))
    }
}

/// Decodes `%XX` escapes (a query value may carry any byte of a password that way).
fn percent_decoded(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

/// Splits `host:port[,host:port...]` of a URL, checking each (`what` names them in errors).
pub fn host_list(hosts: &str, what: &str) -> Result<Vec<String>, String> {
    hosts
        .split(',')
        .map(|host| {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| format!("{what} {host:?} needs a port (host:port)"))?;
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{what} {host:?} is not host:port"));
            }
            Ok(host.to_string())
        })
        .collect()
}

/// Parses a Sentinel URL; `Ok(None)` for any other scheme.
pub fn parse_sentinel_url(url: &str) -> Result<Option<SentinelUrl>, String> {
    let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
        return Ok(None);
    };
    let (hosts, path) = rest
        .split_once('/')
        .ok_or("a redis+sentinel:// URL names its master: redis+sentinel://host:port/<master>")?;
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), hosts),
    };
    let sentinels = host_list(hosts, "sentinel")?;
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (mut sentinel_username, mut sentinel_password) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sentinel_username", v)) => sentinel_username = Some(percent_decoded(v)?),
            Some(("sentinel_password", v)) => sentinel_password = Some(percent_decoded(v)?),
            _ => {
                return Err(format!(
                    "unknown parameter {pair:?} (sentinel_username and sentinel_password are known)"
                ));
            }
        }
    }
    let (master, db) = match path.split_once('/') {
        Some((master, db)) if !db.is_empty() => (
            master,
            db.parse::<i64>()
                .map_err(|_| format!("database {db:?} is not a number"))?,
        ),
        Some((master, _)) => (master, 0),
        None => (path, 0),
    };
    if master.is_empty() {
        return Err(
            "a redis+sentinel:// URL names its master: redis+sentinel://host:port/<master>".into(),
        );
    }
    Ok(Some(SentinelUrl {
        sentinels,
        master: master.to_string(),
        auth,
        db,
        sentinel_username,
        sentinel_password,
    }))
}

/// The bridge's Redis: fixed, found through the sentinels, or a Redis Cluster.
pub enum Target {
    /// `redis://`: always this server.
    Single(Client),
    /// `redis+cluster://`: a Redis Cluster through its seed nodes.
    Cluster(ClusterUrl),
    /// `redis+sentinel://`: the master the sentinels name.
    Sentinel {
        url: SentinelUrl,
        /// What the watchers last learned.
        news: watch::Receiver<Watched>,
    },
}

/// What the watchers learned from the sentinels' announcements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watched {
    /// The master the sentinels last announced (`None` before any announcement).
    pub master: Option<Addr>,
    /// A master whose failover began, and when: not to be written to for [`FENCE`].
    pub fenced: Option<(Addr, std::time::Instant)>,
}

impl Watched {
    /// True when `addr` is a master whose failover began less than [`FENCE`] ago.
    fn fences(&self, addr: &Addr) -> bool {
        matches!(&self.fenced, Some((fenced, at)) if fenced == addr && at.elapsed() < FENCE)
    }
}

/// One connection attempt's server: its client, and in Sentinel mode its address (the session ends
/// when the master moves away from it).
pub struct Resolved {
    pub endpoint: Endpoint,
    pub master: Option<Addr>,
}

/// What to connect to.
pub enum Endpoint {
    /// One server.
    One(Client),
    /// A Redis Cluster.
    Cluster(ClusterUrl),
}

impl Target {
    /// The target of `url`; in Sentinel mode this starts the watcher tasks, one per sentinel (on the
    /// caller's runtime).
    pub fn new(url: &str) -> Result<Target, String> {
        if let Some(cluster) = super::cluster_target::parse_cluster_url(url)? {
            crate::cluster::keys::use_hash_tags();
            return Ok(Target::Cluster(cluster));
        }
        match parse_sentinel_url(url)? {
            None => Client::open(url)
                .map(Target::Single)
                .map_err(|e| e.to_string()),
            Some(url) => {
                let (tx, news) = watch::channel(Watched::default());
                let tx = std::sync::Arc::new(tx);
                for sentinel in &url.sentinels {
                    tokio::spawn(watch_sentinel(sentinel.clone(), url.clone(), tx.clone()));
                }
                Ok(Target::Sentinel { url, news })
            }
        }
    }

    /// The server to connect to now. In Sentinel mode each sentinel asked is bounded by its own
    /// timeout (so a dead one costs at most that and the next is asked), not the whole.
    pub async fn resolve(&mut self) -> RedisResult<Resolved> {
        match self {
            Target::Single(client) => Ok(Resolved {
                endpoint: Endpoint::One(client.clone()),
                master: None,
            }),
            Target::Cluster(url) => Ok(Resolved {
                endpoint: Endpoint::Cluster(url.clone()),
                master: None,
            }),
            Target::Sentinel { url, news } => {
                let (host, port) = ask_master(url).await?;
                if news.borrow().fences(&(host.clone(), port)) {
                    return Err(redis::RedisError::from(std::io::Error::other(format!(
                        "a failover of master {host}:{port} is under way; waiting for the new master"
                    ))));
                }
                let client = Client::open(format!("redis://{}{host}:{port}/{}", url.auth, url.db))?;
                Ok(Resolved {
                    endpoint: Endpoint::One(client),
                    master: Some((host, port)),
                })
            }
        }
    }

    /// One connection attempt: the server to use now, a connection to it, and (Sentinel) that it is the
    /// master.
    pub async fn connect(&mut self) -> redis::RedisResult<(Resolved, Conn)> {
        // Not `timed`: in Sentinel mode each sentinel has its own bound, and a dead one must not keep
        // the next from being asked.
        let server = self.resolve().await?;
        let client = match &server.endpoint {
            Endpoint::One(client) => client.clone(),
            Endpoint::Cluster(url) => {
                let conn =
                    tokio::time::timeout(super::OP_TIMEOUT * 2, url.connect(super::OP_TIMEOUT))
                        .await
                        .map_err(|_| {
                            std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                "Redis Cluster connect timed out",
                            )
                        })??;
                return Ok((server, conn.into()));
            }
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(super::OP_TIMEOUT))
            .set_response_timeout(Some(super::OP_TIMEOUT))
            .set_number_of_retries(1);
        let mut conn = tokio::time::timeout(
            super::OP_TIMEOUT * 2,
            ConnectionManager::new_with_config(client, manager_config),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "Redis connect timed out")
        })??;
        super::timed(self.check_role(&mut conn)).await?;
        Ok((server, conn.into()))
    }

    /// In Sentinel mode, fails unless the connected server is a master (a demoted one answers reads
    /// only); a plain `redis://` server is taken as it is.
    pub async fn check_role(&self, conn: &mut impl redis::aio::ConnectionLike) -> RedisResult<()> {
        if !matches!(self, Target::Sentinel { .. }) {
            return Ok(());
        }
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(conn).await?;
        match role.first() {
            Some(redis::Value::BulkString(r)) if r == b"master" => Ok(()),
            Some(redis::Value::SimpleString(r)) if r == "master" => Ok(()),
            _ => Err(redis::RedisError::from(std::io::Error::other(
                "the sentinels' master is not (or no longer) a master",
            ))),
        }
    }

    /// Resolves when the session with `current` must end: its failover began, or the sentinels
    /// announced another master (never in single mode, nor when the watchers are gone).
    pub async fn moved_from(&self, current: &Option<Addr>) {
        let (Target::Sentinel { news, .. }, Some(current)) = (self, current) else {
            return std::future::pending().await;
        };
        let mut news = news.clone();
        loop {
            {
                let latest = news.borrow_and_update();
                let elsewhere = latest.master.as_ref().is_some_and(|m| m != current);
                if elsewhere || latest.fences(current) {
                    return;
                }
            }
            if news.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Resolves at the watchers' next news (never in single mode): a reconnect waiting out its
    /// backoff goes at once when a new master is announced.
    pub async fn news(&self) {
        let Target::Sentinel { news, .. } = self else {
            return std::future::pending().await;
        };
        let mut news = news.clone();
        news.borrow_and_update();
        if news.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Asks the sentinels in turn for the master's address; the first that knows it answers.
async fn ask_master(url: &mut SentinelUrl) -> RedisResult<Addr> {
    let mut last_error = None;
    for i in 0..url.sentinels.len() {
        match tokio::time::timeout(ASK_TIMEOUT, ask_one(url, &url.sentinels[i])).await {
            Ok(Ok(Some(addr))) => {
                // Ask this one first next time (the sentinel client guidelines).
                url.sentinels[..=i].rotate_right(1);
                return Ok(addr);
            }
            Ok(Ok(None)) => {
                last_error = Some(format!(
                    "sentinel {} does not know master {:?}",
                    url.sentinels[i], url.master
                ));
            }
            Ok(Err(e)) => last_error = Some(format!("sentinel {}: {e}", url.sentinels[i])),
            Err(_) => last_error = Some(format!("sentinel {} timed out", url.sentinels[i])),
        }
    }
    Err(redis::RedisError::from(std::io::Error::other(
        last_error.unwrap_or_else(|| "no sentinel".into()),
    )))
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME` on one sentinel.
async fn ask_one(url: &SentinelUrl, sentinel: &str) -> RedisResult<Option<Addr>> {
    let master = &url.master;
    let client = url.sentinel_client(sentinel)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let addr: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(master)
        .query_async(&mut conn)
        .await?;
    Ok(addr.and_then(|(host, port)| Some((host, port.parse().ok()?))))
}

/// An announcement that matters to the bridge.
#[derive(Debug, PartialEq, Eq)]
enum Announcement {
    /// A failover of the master at this address began.
    FailoverBegun(Addr),
    /// The master moved from the first address to the second.
    Switched(Addr, Addr),
}

/// Parses an announcement about `master`: `+switch-master` (`<name> <old ip> <old port> <new ip>
/// <new port>`) or `+selected-slave` (`slave <ip:port> <ip> <port> @ <name> <master ip> <master port>`).
fn announcement(channel: &str, payload: &str, master: &str) -> Option<Announcement> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    match (channel, parts.as_slice()) {
        ("+switch-master", [name, old_ip, old_port, ip, port]) if *name == master => {
            Some(Announcement::Switched(
                (old_ip.to_string(), old_port.parse().ok()?),
                (ip.to_string(), port.parse().ok()?),
            ))
        }
        ("+selected-slave", [.., "@", name, ip, port]) if *name == master => Some(
            Announcement::FailoverBegun((ip.to_string(), port.parse().ok()?)),
        ),
        _ => None,
    }
}

/// A watcher: follows one sentinel's announcements, reconnecting when it fails. Ends when the bridge
/// drops its receiver.
async fn watch_sentinel(
    sentinel: String,
    url: SentinelUrl,
    tx: std::sync::Arc<watch::Sender<Watched>>,
) {
    loop {
        if tx.is_closed() {
            return;
        }
        if let Err(e) = watch_one(&url, &sentinel, &tx).await {
            tracing::debug!(sentinel = %sentinel, error = %e, "sentinel announcements lost; reconnecting");
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

/// Follows one sentinel's announcements until its connection fails.
async fn watch_one(
    url: &SentinelUrl,
    sentinel: &str,
    tx: &watch::Sender<Watched>,
) -> RedisResult<()> {
    let master = url.master.as_str();
    let client = url.sentinel_client(sentinel)?;
    let mut pubsub = tokio::time::timeout(ASK_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    pubsub
        .subscribe(&["+switch-master", "+selected-slave"])
        .await?;
    let mut messages = pubsub.into_on_message();
    while let Some(msg) = messages.next().await {
        let payload: String = msg.get_payload()?;
        match announcement(msg.get_channel_name(), &payload, master) {
            Some(Announcement::FailoverBegun(old)) => {
                warn!(master = %master, host = %old.0, port = old.1, "Sentinel began a failover; not writing to the old master");
                tx.send_modify(|w| w.fenced = Some((old, std::time::Instant::now())));
            }
            Some(Announcement::Switched(old, new)) => {
                tx.send_if_modified(|w| {
                    if w.master.as_ref() == Some(&new) {
                        return false;
                    }
                    info!(master = %master, host = %new.0, port = new.1, "Sentinel switched the master");
                    metrics::counter!("gateway_redis_failovers_total").increment(1);
                    w.master = Some(new);
                    if !w.fences(&old) {
                        w.fenced = Some((old, std::time::Instant::now()));
                    }
                    true
                });
            }
            None => {}
        }
        if tx.is_closed() {
            return Ok(());
        }
    }
    Err(redis::RedisError::from(std::io::Error::other(
        "sentinel connection closed",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_parse_and_bad_ones_say_why() {
        let u = parse_sentinel_url("redis+sentinel://:pw@10.0.0.1:26379,s2:26380/mymaster/2")
            .unwrap()
            .unwrap();
        assert_eq!(u.sentinels, ["10.0.0.1:26379", "s2:26380"]);
        assert_eq!(
            (u.master.as_str(), u.auth.as_str(), u.db),
            ("mymaster", ":pw@", 2)
        );
        let u = parse_sentinel_url("redis+sentinel://h:1/m")
            .unwrap()
            .unwrap();
        assert_eq!((u.master.as_str(), u.auth.as_str(), u.db), ("m", "", 0));
        let u = parse_sentinel_url(
            "redis+sentinel://h:1/m?sentinel_username=watch&sentinel_password=p%40ss%2Fw%25",
        )
        .unwrap()
        .unwrap();
        assert_eq!(u.master, "m");
        assert_eq!(u.sentinel_username.as_deref(), Some("watch"));
        assert_eq!(u.sentinel_password.as_deref(), Some("p@ss/w%"));
        assert_eq!(parse_sentinel_url("redis://h:1/").unwrap(), None);
        for bad in [
            "redis+sentinel://h:1",
            "redis+sentinel://h:1/",
            "redis+sentinel://h/m",
            "redis+sentinel://h:0/m",
            "redis+sentinel://h:1,:2/m",
            "redis+sentinel://h:1/m/x",
            "redis+sentinel://h:1/m?password=x",
            "redis+sentinel://h:1/m?sentinel_password=%zz",
        ] {
            assert!(parse_sentinel_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn announcements_about_other_masters_are_ignored() {
        let a = |host: &str, port| (host.to_string(), port);
        assert_eq!(
            announcement("+switch-master", "m 127.0.0.1 6379 127.0.0.2 6380", "m"),
            Some(Announcement::Switched(
                a("127.0.0.1", 6379),
                a("127.0.0.2", 6380)
            ))
        );
        assert_eq!(
            announcement(
                "+selected-slave",
                "slave 127.0.0.2:6380 127.0.0.2 6380 @ m 127.0.0.1 6379",
                "m"
            ),
            Some(Announcement::FailoverBegun(a("127.0.0.1", 6379)))
        );
        assert_eq!(
            announcement("+switch-master", "other 127.0.0.1 6379 127.0.0.2 6380", "m"),
            None
        );
        assert_eq!(
            announcement(
                "+selected-slave",
                "slave 1:2 1 2 @ other 127.0.0.1 6379",
                "m"
            ),
            None
        );
        assert_eq!(
            announcement("+switch-master", "m 127.0.0.1 6379", "m"),
            None
        );
    }

    #[test]
    fn a_fence_covers_only_its_master_and_only_for_a_while() {
        let old = ("127.0.0.1".to_string(), 1);
        let mut w = Watched {
            master: None,
            fenced: Some((old.clone(), std::time::Instant::now())),
        };
        assert!(w.fences(&old));
        assert!(!w.fences(&("127.0.0.1".to_string(), 2)));
        w.fenced = std::time::Instant::now()
            .checked_sub(FENCE)
            .map(|at| (old.clone(), at));
        assert!(!w.fences(&old));
    }
}
