//! A webhook receiver for tests: a plain HTTP/1.1 server on 127.0.0.1 that records every POST (its
//! headers and body) and answers with the next status of a script (200 once the script runs out).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One POST received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// The receiver; stops with the test process.
pub struct Receiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    /// Listens on a free port.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::new()));
        let (g, s) = (got.clone(), statuses.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, s) = (g.clone(), s.clone());
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut headers = HashMap::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let status = s.lock().unwrap().pop_front().unwrap_or(200);
                    if status == 200 {
                        g.lock().unwrap().push(Received { headers, body });
                    }
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Receiver {
            addr,
            got,
            statuses,
        }
    }

    /// `http://127.0.0.1:<port>/hooks`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Answers the next POSTs with `statuses` (then 200); only 200s are recorded.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.statuses.lock().unwrap().extend(statuses);
    }

    /// Everything recorded so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Every event recorded so far, in order (the `events` of each body).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.received()
            .iter()
            .flat_map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
                v["events"].as_array().cloned().unwrap_or_default()
            })
            .collect()
    }

    /// Waits until `n` events are recorded (at most `within`); returns them.
    pub fn wait_events(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events();
            if events.len() >= n || Instant::now() >= deadline {
                return events;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}
