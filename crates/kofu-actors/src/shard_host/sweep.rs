//! Eager resume on takeover: a host started for a shard this node just took lists the
//! shard's open sessions and resumes every one, so that their idle timers run from now
//! on. A session orphaned by a crash (its kiosk gone, or told `503`) then ends on its
//! own and frees its card within the idle timeout plus the lease handover, instead of
//! pinning the card until its state expires (DESIGN.md, "Liveness comes back by
//! itself"). Bounded: a page of the listing at a time, a few snapshot reads in flight
//! per host, and a few hosts sweeping at once per node.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt as _;
use kofu_coord::{SessionCursor, SessionPage, StoreError};
use kofu_proto::SessionId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ShardHost;

/// Sessions listed per page.
const PAGE: usize = 256;
/// Snapshot reads one sweeping host has in flight.
const READS_IN_FLIGHT: usize = 32;
/// After a failed listing or read, the page is tried again this much later.
const RETRY: Duration = Duration::from_secs(1);

impl ShardHost {
    /// Starts the sweep once one of `permits` is free.
    pub(super) fn start_sweep(&mut self, ctx: &mut Context<Self>, permits: Arc<Semaphore>) {
        ctx.spawn(
            permits
                .acquire_owned()
                .into_actor(self)
                .map(|permit, act, ctx| {
                    if let Ok(permit) = permit {
                        act.sweep_page(ctx, SessionCursor::default(), permit);
                    }
                }),
        );
    }

    fn sweep_page(
        &mut self,
        ctx: &mut Context<Self>,
        cursor: SessionCursor,
        permit: OwnedSemaphorePermit,
    ) {
        if self.moving {
            return;
        }
        let list = self
            .deps
            .store
            .list_sessions(self.fence, cursor.clone(), PAGE);
        ctx.spawn(list.into_actor(self).map(move |res, act, ctx| match res {
            Ok(page) => act.sweep_reads(ctx, cursor, page, permit),
            // Not the owner any more: the next one sweeps.
            Err(StoreError::Fenced { .. }) => {}
            Err(e) => {
                act.deps.metrics.store_unavailable.inc();
                tracing::warn!(shard = act.fence.shard, error = %e, "listing open sessions failed");
                ctx.run_later(RETRY, move |act, ctx| act.sweep_page(ctx, cursor, permit));
            }
        }));
    }

    /// Resumes the sessions of `page` (listed from `cursor`) that this host does not
    /// know yet, then goes on with the next page; a page with a failed read is swept
    /// again (the sessions resumed meanwhile are skipped).
    fn sweep_reads(
        &mut self,
        ctx: &mut Context<Self>,
        cursor: SessionCursor,
        page: SessionPage,
        permit: OwnedSemaphorePermit,
    ) {
        if self.moving {
            return;
        }
        let ids: Vec<SessionId> = page
            .sessions
            .into_iter()
            .filter(|id| !self.sessions.contains_key(id) && !self.loading.contains_key(id))
            .collect();
        // Calls for these sessions meanwhile wait for the read in flight.
        for id in &ids {
            self.loading.insert(*id, Vec::new());
        }
        let (store, fence) = (self.deps.store.clone(), self.fence);
        let reads = futures::stream::iter(ids)
            .map(move |id| {
                let read = store.load_session(fence, id);
                async move { (id, read.await) }
            })
            .buffer_unordered(READS_IN_FLIGHT);
        let failed = Rc::new(Cell::new(false));
        let saw = failed.clone();
        let next = page.next;
        ctx.spawn(
            reads
                .into_actor(self)
                .map(move |(id, res), act, ctx| {
                    let unavailable = matches!(
                        res,
                        Err(StoreError::Unavailable(_) | StoreError::Corrupt(_))
                    );
                    saw.set(saw.get() || unavailable);
                    act.loaded(id, res, ctx);
                })
                .finish()
                .map(move |(), act, ctx| match next {
                    _ if failed.get() => {
                        ctx.run_later(RETRY, move |act, ctx| act.sweep_page(ctx, cursor, permit));
                    }
                    Some(next) => act.sweep_page(ctx, next, permit),
                    None => drop(permit),
                }),
        );
    }
}
