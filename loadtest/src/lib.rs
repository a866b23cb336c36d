//! Load generator for the gateway: tens of thousands of real WebSocket connections over loopback,
//! every delivery checked for loss, duplication and order, latencies in HDR histograms.
//!
//! The binary (`src/main.rs`) implements the CLI contract of the loadtest spec. [`coordinator`] plans
//! the run ([`planner`]) and drives one or more workers ([`control`], [`worker`]), each of which runs
//! a [`scenarios`] scenario over [`net`] connections and measures with [`stats`] and [`accounting`];
//! [`report`] and [`plot`] turn the merged results into the summary, JSON and SVG. [`pusher`] is the
//! client side of the Pusher protocol (`--protocol pusher`).

pub mod accounting;
pub mod cli;
pub mod control;
pub mod coordinator;
pub mod net;
pub mod planner;
pub mod plot;
pub mod progress;
pub mod pusher;
pub mod report;
pub mod scenarios;
pub mod servers;
pub mod stats;
pub mod worker;

#[cfg(test)]
mod end_to_end;
#[cfg(test)]
mod end_to_end_pusher;
