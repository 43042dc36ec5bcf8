//! Admission control in the shard hosts: a kiosk holds at most its limit of open
//! sessions on a node, counted across every shard; a session that ends gives its place
//! back, a kiosk replacing its own session of a card is not refused, and sessions
//! resumed after a takeover still count.

use kofu_proto::ErrorCode;

use crate::harness::{Answer, Config, SHARDS, run, wait_until};

const LIMIT: u32 = 3;

fn limited() -> Config {
    Config {
        kiosk_sessions: LIMIT,
        ..Config::default()
    }
}

#[test]
fn a_kiosk_over_its_open_session_limit_gets_429_and_its_place_back_on_close() {
    run(limited(), |w| async move {
        let kiosk = w.kiosk(0);
        // Cards on different shards: the count is per kiosk, not per shard.
        let cards: Vec<_> = (0..=LIMIT)
            .map(|n| w.card_in(n % SHARDS, (n / SHARDS) as usize))
            .collect();
        let mut open = Vec::new();
        for card in &cards[..LIMIT as usize] {
            open.push(w.created(card, &kiosk).await);
        }
        let over = &cards[LIMIT as usize];
        assert_eq!(
            w.create(over, &kiosk).await,
            Answer::Error(ErrorCode::TooManyRequests)
        );
        // Another kiosk is not affected.
        assert!(matches!(
            w.create(over, &w.kiosk(1)).await,
            Answer::Created { .. }
        ));
        // The same kiosk opening a new session for a card it holds replaces the old one.
        assert!(matches!(
            w.create(&cards[0], &kiosk).await,
            Answer::Created { .. }
        ));
        // The replaced session ends; closing another gives its place back once ended.
        assert_eq!(w.close(&open[1]).await, Answer::Closed);
        wait_until("a closed session's place is free again", || {
            w.kiosk_sessions_open(&kiosk) == LIMIT - 1
        })
        .await;
        assert_eq!(w.create(over, &w.kiosk(2)).await.status(), 409);
        assert_eq!(w.create(&w.card_in(1, 5), &kiosk).await.status(), 201);
        assert_eq!(
            w.create(&w.card_in(2, 5), &kiosk).await,
            Answer::Error(ErrorCode::TooManyRequests)
        );
    });
}

#[test]
fn resumed_sessions_count_against_the_limit() {
    run(limited(), |w| async move {
        let kiosk = w.kiosk(0);
        for n in 0..LIMIT as usize {
            w.created(&w.card_in(0, n), &kiosk).await;
        }
        assert_eq!(w.kiosk_sessions_open(&kiosk), LIMIT);
        // The shard changes owner and comes back: its sessions are resumed, counted once.
        w.take_over(0).await;
        wait_until("the shard's sessions are resumed", || {
            w.kiosk_sessions_open(&kiosk) == LIMIT
        })
        .await;
        assert_eq!(
            w.create(&w.card_in(1, 0), &kiosk).await,
            Answer::Error(ErrorCode::TooManyRequests)
        );
    });
}
