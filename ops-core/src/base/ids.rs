//! Random ids, from the operating system's generator (`getrandom`); one source for every id
//! that must not be guessed (approval requests, deploys).

use std::sync::atomic::{AtomicU64, Ordering};

/// `bytes` random bytes as lowercase hex. Should the OS generator fail, the bytes come from the
/// time, the process id and a counter: unique, if guessable (button ids are still MAC'd).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        fallback(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn fallback(buf: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u128;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let seed = t ^ (u128::from(std::process::id()) << 64) ^ (n << 96);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = seed.to_le_bytes()[i % 16];
    }
}
