#!/usr/bin/env python3
"""Splits node CPU per session into disjoint components from folded perf stacks
(`perf script | inferno-collapse-perf`): a stack with a kernel frame counts as kernel,
else it goes to the first component frame found walking from the leaf to the root
(allocator and memcpy time lands on its caller). Used by bench/issue13-regression.md.

usage: bench/perf-components.py base.folded:NODE_US_PER_SESSION main.folded:NODE_US ..."""
import sys, re, collections
COMP = [
 ("ed25519 verify (card auth)", r"verify_strict"),
 ("ed25519 sign (binding)", r"SigningKey|try_sign|raw_sign"),
 ("render PDF (kofu_render, doctext)", r"kofu_render::|doctext"),
 ("registry read + decode", r"RedisRegistry::read|registry::decode|record_by_digest|Registry.*::record"),
 ("fenced store scripts (kofu_coord store)", r"kofu_coord::redis::(store|call|keys|audit)|RedisStore|FencedStore|ScriptInvocation|snapshot_bytes|Snapshot::encode"),
 ("leases/membership (coordinator worker)", r"coordinator::worker|kofu_coord::redis::(leases|membership)"),
 ("redis-rs client I/O", r"^<?redis::|redis::aio"),
 ("node-to-node wire (kofu_wire, rustls, router remote)", r"kofu_wire::|wire_link|router::remote|rustls|kofu_proto::wire"),
 ("routing (router, shard host mailbox)", r"kofu_actors::router|shard_host"),
 ("session actor + state machine", r"kofu_actors::|kofu_core::"),
 ("HTTP (actix-http/web/router, handlers, json)", r"actix_http|actix_web|actix_router|regex|kofu::http::kiosk|serde_json|kofu::http::error"),
 ("middlewares (metrics, admission) + tracing", r"kofu::http::(metrics|admission)|prometheus|tracing"),
 ("runtime (tokio, actix)", r"tokio::|actix::|actix_rt|actix_server"),
]
KR = re.compile(r"entry_SYSCALL|do_syscall_64|asm_(sysvec|exc|common_interrupt)|irqentry|ret_from_fork|finish_task_switch|__x64_sys")
CR = [(n, re.compile(r)) for n, r in COMP]
res = []
for arg in sys.argv[1:]:
    path, us = arg.rsplit(":", 1); us = float(us); tot = 0; c = collections.Counter()
    for line in open(path):
        s, _, n = line.rstrip().rpartition(" "); n = int(n); tot += n
        fr = s.split(";")
        if any(KR.search(f) for f in fr):
            c["kernel (syscalls, scheduling)"] += n; continue
        name = "other (libc, alloc, unresolved)"
        for f in reversed(fr):
            hit = next((nm for nm, r in CR if r.search(f)), None)
            if hit: name = hit; break
        c[name] += n
    res.append((path, us, tot, c))
names = [n for n, _ in COMP] + ["kernel (syscalls, scheduling)", "other (libc, alloc, unresolved)"]
print(f"{'component':52}" + "".join(f"{p.split('/')[-2]:>16}" for p, *_ in res))
for nm in names:
    print(f"{nm[:52]:52}" + "".join(f"{us*c[nm]/tot:7.1f} ({100*c[nm]/tot:4.1f}%)" for _, us, tot, c in res))
print(f"{'total':52}" + "".join(f"{us:7.1f}         " for _, us, tot, c in res))
