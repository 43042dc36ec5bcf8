//! The actors in-process: the real router, shard hosts and sessions in one actix system
//! on paused tokio time, over the embedded store, driven the way the HTTP layer drives
//! them. The router's wait-and-retry, tombstones, resume (lazy, and eager on takeover),
//! handoff, full mailboxes, leases in doubt and changes with an unknown outcome, each in
//! milliseconds and the same on every run (issues 9 and 10).

mod handoff;
mod harness;
mod kiosk_limit;
mod lease;
mod mailbox;
mod moving;
mod resume;
mod sweep;
mod timers;
mod tombstone;
mod uncertain;
