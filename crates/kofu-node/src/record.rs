//! `kofu serve --record-traffic FILE`: the sessions this node's kiosk API serves, written
//! in kofu-load's trace format when the node stops, so operators can replay a real day.
//! Cards and kiosks are recorded as their index in the population (`kofu fixtures`
//! order), never as ids; requests are timed from the node's start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use kofu_core::KioskCredential;
use kofu_core::records::ResidentRecord;
use kofu_proto::trace::{Action, Meta, SessionTrace, Step, Trace};
use kofu_proto::{CardId, KioskId, SessionId};

/// A session being recorded.
struct Open {
    trace: SessionTrace,
    card: u32,
    closed: bool,
}

#[derive(Default)]
struct Book {
    sessions: HashMap<SessionId, Open>,
    /// Card index → the session holding it, for duplicate-card attempts.
    holders: HashMap<u32, SessionId>,
    order: Vec<SessionId>,
}

pub struct Recorder {
    path: PathBuf,
    started: Instant,
    cards: HashMap<CardId, u32>,
    kiosks: HashMap<String, u32>,
    meta: Meta,
    book: Mutex<Book>,
}

impl Recorder {
    /// A recorder for the population given by its `residents` and `kiosks`, in
    /// `kofu fixtures` order.
    pub fn new(
        path: PathBuf,
        residents: &[ResidentRecord],
        kiosks: &[KioskCredential],
        fixture_seed: u64,
        node_id: &str,
    ) -> Recorder {
        let cards = residents
            .iter()
            .enumerate()
            .map(|(i, r)| (r.card_id.clone(), i as u32))
            .collect();
        let meta = Meta {
            source: "record".to_owned(),
            seed: None,
            fixture_seed,
            residents: residents.len() as u32,
            kiosks: kiosks.len() as u32,
            description: format!("recorded by kofu node {node_id}"),
        };
        let kiosks = kiosks
            .iter()
            .enumerate()
            .map(|(i, k)| (k.kiosk_id.as_str().to_owned(), i as u32))
            .collect();
        Recorder {
            path,
            started: Instant::now(),
            cards,
            kiosks,
            meta,
            book: Mutex::new(Book::default()),
        }
    }

    fn now_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A card was inserted; `created` is the new session when the answer was `201`.
    pub fn create(&self, kiosk: &KioskId, card: &CardId, created: Option<SessionId>, in_use: bool) {
        let (Some(&k), Some(&c)) = (self.kiosks.get(kiosk.as_str()), self.cards.get(card)) else {
            return;
        };
        let at = self.now_us();
        let mut book = self.book();
        if let Some(id) = created {
            if let Some(old) = book.holders.insert(c, id)
                && let Some(o) = book.sessions.get_mut(&old)
            {
                // The same kiosk inserted the card again: the old session was replaced.
                o.closed = true;
            }
            book.order.push(id);
            book.sessions.insert(
                id,
                Open {
                    trace: SessionTrace {
                        start_us: at,
                        kiosk: k,
                        card: c,
                        steps: vec![Step {
                            at_us: 0,
                            action: Action::Create,
                        }],
                    },
                    card: c,
                    closed: false,
                },
            );
        } else if in_use
            && let Some(holder) = book.holders.get(&c).copied()
            && let Some(o) = book.sessions.get_mut(&holder)
        {
            let at_us = at.saturating_sub(o.trace.start_us);
            o.trace.steps.push(Step {
                at_us,
                action: Action::DuplicateCard { kiosk: k },
            });
        }
    }

    /// A request of an existing session got its final answer (`ok`: the status the
    /// action succeeds with; auth records `valid` from it).
    pub fn call(&self, session: SessionId, action: Action) {
        let at = self.now_us();
        let mut book = self.book();
        let Some(o) = book.sessions.get_mut(&session) else {
            return;
        };
        let at_us = at.saturating_sub(o.trace.start_us);
        let repeat = o.trace.steps.last().is_some_and(|s| {
            s.action == action
                && matches!(
                    action,
                    Action::Fetch { .. } | Action::Printed | Action::Close
                )
        });
        o.trace.steps.push(Step {
            at_us,
            action: if repeat { Action::Retry } else { action },
        });
        if action == Action::Close {
            o.closed = true;
            let card = o.card;
            if book.holders.get(&card) == Some(&session) {
                book.holders.remove(&card);
            }
        }
    }

    /// Writes the trace: sessions never closed end with `Abandon`.
    pub fn finish(&self) -> anyhow::Result<usize> {
        let mut book = self.book();
        let order = std::mem::take(&mut book.order);
        let mut sessions = Vec::with_capacity(order.len());
        for id in order {
            let Some(mut o) = book.sessions.remove(&id) else {
                continue;
            };
            if !o.closed {
                let at_us = o.trace.steps.last().map_or(0, |s| s.at_us);
                o.trace.steps.push(Step {
                    at_us,
                    action: Action::Abandon,
                });
            }
            sessions.push(o.trace);
        }
        let n = sessions.len();
        let trace = Trace::new(self.meta.clone(), sessions);
        std::fs::write(&self.path, trace.to_bytes()?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", self.path.display()))?;
        Ok(n)
    }
}
