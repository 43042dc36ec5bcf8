//! The synthetic population a node serves, read from `kofu fixtures` itself so tests and
//! server can never disagree about who exists, which kiosks exist and the admin token.

use std::process::Command;
use std::sync::Mutex;

use kofu_kiosk::Fixtures;

use crate::kofu_bin;

/// What `kofu fixtures --seed N --residents R --kiosks K` prints, parsed; each population
/// is loaded once per test process and lives as long as it.
///
/// # Panics
/// If `kofu fixtures` fails or prints anything else than that population.
pub fn fixtures(seed: u64, residents: u32, kiosks: u32) -> &'static Fixtures {
    type Loaded = Vec<((u64, u32, u32), &'static Fixtures)>;
    static LOADED: Mutex<Loaded> = Mutex::new(Vec::new());
    let key = (seed, residents, kiosks);
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, fx)) = loaded.iter().find(|(k, _)| *k == key) {
        return fx;
    }
    let fx: &'static Fixtures = Box::leak(Box::new(load(seed, residents, kiosks)));
    loaded.push((key, fx));
    fx
}

fn load(seed: u64, residents: u32, kiosks: u32) -> Fixtures {
    let out = Command::new(kofu_bin())
        .args(["fixtures", "--seed", &seed.to_string()])
        .args(["--residents", &residents.to_string()])
        .args(["--kiosks", &kiosks.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `kofu fixtures`: {e}"));
    assert!(
        out.status.success(),
        "`kofu fixtures` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let fx = Fixtures::parse(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("`kofu fixtures` printed unusable lines: {e}"));
    assert_eq!(fx.cards.len(), residents as usize, "card lines");
    assert_eq!(fx.kiosks.len(), kiosks as usize, "kiosk lines");
    assert!(!fx.admin_token.is_empty(), "no admin line");
    fx
}
