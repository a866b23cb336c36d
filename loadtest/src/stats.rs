//! What a worker measures, and how workers' measurements travel and add up.
//!
//! Latencies go into HDR histograms in microseconds: one for the whole run and one per second of the
//! measuring phase (for the plot), next to per-second sent/received counts. Recording is sharded by
//! connection over a few mutexes so tasks on different threads rarely meet. A worker process sends its
//! histograms to the parent in HdrHistogram's V2 format, hex-encoded inside JSON; the parent adds them.
//! Timestamps come from CLOCK_MONOTONIC, which every process on the machine shares, so a send time
//! written by one process can be compared with a receive time in another.

use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2Serializer},
};
use serde::{Deserialize, Serialize};

/// Highest latency recorded (one hour, in µs); longer ones are clamped.
const MAX_US: u64 = 3_600_000_000;
/// Per-second bins kept at most (the run is cut off long before).
const MAX_BINS: usize = 100_000;
/// Mutex shards of a [`Recorder`].
const SHARDS: usize = 16;

/// Microseconds on CLOCK_MONOTONIC (shared by all processes of the machine).
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_MONOTONIC
    // always exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// An empty latency histogram with `sigfig` significant digits.
pub fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("valid histogram bounds")
}

/// One second of the measuring phase.
#[derive(Clone)]
pub struct Bin {
    /// Messages sent in this second.
    pub sent: u64,
    /// Messages received in this second.
    pub received: u64,
    /// Latencies of the messages received in this second.
    pub hist: Histogram<u64>,
}

impl Bin {
    fn new() -> Self {
        Bin {
            sent: 0,
            received: 0,
            hist: histogram(2),
        }
    }
}

/// One mutex's worth of a [`Recorder`].
struct Shard {
    overall: Histogram<u64>,
    bins: Vec<Bin>,
}

/// A worker's latency and throughput recorder, shared by its tasks.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// Start of the measuring phase (µs, [`now_us`]); 0 before it.
    epoch_us: AtomicU64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        overall: histogram(3),
                        bins: Vec::new(),
                    })
                })
                .collect(),
            epoch_us: AtomicU64::new(0),
        }
    }
}

impl Recorder {
    /// Marks the start of the measuring phase; later records also go to per-second bins.
    pub fn start(&self, epoch_us: u64) {
        self.epoch_us.store(epoch_us.max(1), Ordering::Release);
    }

    /// The per-second bin `f` should touch now, if the measuring phase has started.
    fn with_bin(&self, key: usize, f: impl FnOnce(&mut Histogram<u64>, Option<&mut Bin>)) {
        let epoch = self.epoch_us.load(Ordering::Acquire);
        let mut shard = self.shards[key % SHARDS].lock().expect("recorder lock");
        let shard = &mut *shard;
        let bin = if epoch == 0 {
            None
        } else {
            let sec = (now_us().saturating_sub(epoch) / 1_000_000) as usize;
            if sec < MAX_BINS {
                if shard.bins.len() <= sec {
                    shard.bins.resize_with(sec + 1, Bin::new);
                }
                Some(&mut shard.bins[sec])
            } else {
                None
            }
        };
        f(&mut shard.overall, bin);
    }

    /// One message received `latency_us` after it was sent (or a connection set up in that time).
    pub fn received(&self, key: usize, latency_us: u64) {
        let v = latency_us.clamp(1, MAX_US);
        self.with_bin(key, |overall, bin| {
            overall.saturating_record(v);
            if let Some(b) = bin {
                b.received += 1;
                b.hist.saturating_record(v);
            }
        });
    }

    /// A latency that is not a received message (connection set-up before the measuring phase).
    pub fn latency_only(&self, key: usize, latency_us: u64) {
        let v = latency_us.clamp(1, MAX_US);
        self.with_bin(key, |overall, _| overall.saturating_record(v));
    }

    /// `n` messages sent.
    pub fn sent(&self, key: usize, n: u64) {
        self.with_bin(key, |_, bin| {
            if let Some(b) = bin {
                b.sent += n;
            }
        });
    }

    /// Adds up the shards.
    pub fn collect(&self) -> (Histogram<u64>, Vec<Bin>) {
        let mut overall = histogram(3);
        let mut bins: Vec<Bin> = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().expect("recorder lock");
            overall.add(&shard.overall).expect("same bounds");
            merge_bins(&mut bins, &shard.bins);
        }
        (overall, bins)
    }
}

/// Adds `from` into `into`, second by second.
pub fn merge_bins(into: &mut Vec<Bin>, from: &[Bin]) {
    if into.len() < from.len() {
        into.resize_with(from.len(), Bin::new);
    }
    for (a, b) in into.iter_mut().zip(from) {
        a.sent += b.sent;
        a.received += b.received;
        a.hist.add(&b.hist).expect("same bounds");
    }
}

/// Failures by kind (`refused`, `close_1013`, `drop_eof`, ...).
#[derive(Default)]
pub struct Errors(Mutex<BTreeMap<String, u64>>);

impl Errors {
    /// Counts one failure of `kind`.
    pub fn add(&self, kind: impl Into<String>) {
        *self
            .0
            .lock()
            .expect("errors lock")
            .entry(kind.into())
            .or_default() += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("errors lock").clone()
    }
}

/// A histogram as hex text of its V2 serialisation.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .expect("serialising into memory");
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        out.push(char::from_digit(u32::from(b & 15), 16).expect("nibble"));
    }
    out
}

/// The inverse of [`encode_hist`].
pub fn decode_hist(hex: &str) -> Result<Histogram<u64>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("odd hex length".into());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| e.to_string())?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{e:?}"))?;
    // Bring it to the bounds of ours so it can be added.
    let mut out = histogram(h.sigfig());
    out.add(&h).map_err(|e| format!("{e:?}"))?;
    Ok(out)
}

/// One second of the timeline, as it travels.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WireBin {
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Their latencies ([`encode_hist`]).
    pub hist: String,
}

/// Everything a worker reports at the end.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Connections (or churn cycles) attempted.
    pub attempted: u64,
    /// Connections that reached ready (or churn cycles completed).
    pub connected: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (distinct, checked).
    pub received: u64,
    /// Messages lost.
    pub lost: u64,
    /// Messages received twice or more.
    pub duplicated: u64,
    /// Messages received after a higher-numbered one.
    pub out_of_order: u64,
    /// All latencies ([`encode_hist`]).
    pub latency: String,
    /// Per-second timeline of the measuring phase.
    pub timeline: Vec<WireBin>,
    /// ramp: connections held when the ramp stopped (first failure, halt, or the end).
    pub held: Option<u64>,
    /// ramp: the kind of this worker's first failure.
    pub first_failure: Option<String>,
}

impl WorkerResult {
    /// Fills the histogram fields from a recorder.
    pub fn set_latency(&mut self, rec: &Recorder) {
        let (overall, bins) = rec.collect();
        self.latency = encode_hist(&overall);
        self.timeline = bins
            .iter()
            .map(|b| WireBin {
                sent: b.sent,
                received: b.received,
                hist: encode_hist(&b.hist),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_survive_the_trip() {
        let mut h = histogram(3);
        for v in [1, 10, 100, 1_000, 123_456, MAX_US] {
            h.record(v).unwrap();
        }
        let back = decode_hist(&encode_hist(&h)).unwrap();
        assert_eq!(back.len(), 6);
        assert_eq!(back.max(), h.max());
        assert_eq!(back.value_at_quantile(0.5), h.value_at_quantile(0.5));
        assert!(decode_hist("0g").is_err());
        assert!(decode_hist("abc").is_err());
    }

    #[test]
    fn recorder_bins_by_second_after_start() {
        let r = Recorder::default();
        r.latency_only(0, 5);
        r.sent(1, 3);
        r.start(now_us());
        r.received(2, 70);
        r.received(3, 0);
        r.sent(4, 2);
        let (overall, bins) = r.collect();
        assert_eq!(overall.len(), 3);
        assert_eq!(bins.len(), 1);
        assert_eq!((bins[0].sent, bins[0].received), (2, 2));
        let mut into = Vec::new();
        merge_bins(&mut into, &bins);
        merge_bins(&mut into, &bins);
        assert_eq!(into[0].received, 4);
    }

    #[test]
    fn errors_count_by_kind() {
        let e = Errors::default();
        e.add("refused");
        e.add("refused");
        e.add(String::from("close_1013"));
        let s = e.snapshot();
        assert_eq!((s["refused"], s["close_1013"]), (2, 1));
    }
}
