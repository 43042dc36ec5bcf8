//! The metrics endpoint after real traffic: the series DESIGN.md names are there, the
//! exposition passes `promtool check metrics`, and no label carries an id (I6); the
//! process series and `kofu_build_info` are there.

use kofu_testkit::suite::SERIES;
use kofu_testkit::{Deployment, DeploymentOptions, full_session, get, promtool_check};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_promtool_clean_and_free_of_ids() {
    let d = tokio::task::block_in_place(|| Deployment::start(DeploymentOptions::default()));
    let (fx, issuer, node) = (d.fixtures(), d.issuer(), d.node(0));
    let kiosk = d.kiosk(0);
    let mut session_ids = Vec::new();
    for card in fx.ordinary().take(5) {
        let report = full_session(&kiosk, fx, card, "residence", 1, issuer)
            .await
            .expect("a full session succeeds");
        session_ids.push(report.session_id);
    }
    // Some errors too, so error-status series exist.
    assert_eq!(kiosk.raw().create_session("NOT-A-CARD").await.status, 400);

    let text = get(&format!("{}/metrics", node.admin)).await.text();
    for series in SERIES {
        assert!(text.contains(series), "missing series {series}");
    }
    assert!(
        text.contains("kofu_sessions_started_total 5"),
        "5 sessions counted"
    );
    assert!(text.contains("kofu_binding_self_check_failures_total 0"));
    // What the process costs, and which build it is.
    let value_of = |series: &str| -> f64 {
        let line = text.lines().find_map(|l| l.strip_prefix(series));
        let value = line.unwrap_or_else(|| panic!("missing series {series}"));
        value.trim().parse().expect("a number")
    };
    value_of("process_cpu_seconds_total "); // present; it may still read 0
    for series in [
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(value_of(series) > 0.0, "{series}");
    }
    let info = text
        .lines()
        .find(|l| l.starts_with("kofu_build_info{"))
        .expect("kofu_build_info");
    assert!(info.ends_with("} 1"), "{info}");
    assert!(
        info.contains(r#"version=""#) && info.contains(r#"git_commit=""#),
        "{info}"
    );
    assert!(text.contains(r#"kofu_prints_confirmed_total{kind="residence"} 5"#));
    for card in &fx.cards {
        assert!(
            !text.contains(card.card_id()),
            "a card id is in the metrics"
        );
        assert!(!text.contains(&card.full_name), "a name is in the metrics");
    }
    for sid in &session_ids {
        assert!(
            !text.contains(sid.as_str()),
            "a session id is in the metrics"
        );
    }
    let (ok, said) = promtool_check(&text);
    assert!(
        ok && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}
