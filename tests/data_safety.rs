//! Data safety: 10,000 uploads of random but valid receipts come back byte for byte, with a
//! `content_hash` that matches the bytes.

mod common;

use std::sync::Arc;

use common::*;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// A valid `perfgate.run.v1` receipt with random values, spacing, unicode and unknown fields.
fn random_receipt(rng: &mut impl Rng, i: usize) -> String {
    let sp = |rng: &mut dyn rand::RngCore| -> &'static str {
        [" ", "", "\n  ", "\t"][(rng.next_u32() % 4) as usize]
    };
    let samples: Vec<String> = (0..rng.gen_range(1..6))
        .map(|_| {
            format!(
                r#"{{"wall_ms":{},"exit_code":0,"warmup":false,"timed_out":false,"max_rss_kb":{}}}"#,
                rng.gen_range(0..100_000u64),
                rng.gen_range(0..10_000_000u64)
            )
        })
        .collect();
    let median: u64 = rng.gen_range(0..100_000);
    let text = [
        "ünïcödé ✓",
        "plain",
        "quote \\\" inside",
        "tab\\tnewline\\n",
    ][i % 4];
    format!(
        r#"{{{a}"schema":{a}"perfgate.run.v1",{a}"tool":{{"name":"perfgate","version":"0.18.1"}},"run":{{"id":"run-{i}","started_at":"2026-11-28T03:17:59.{ms:06}Z","ended_at":"2026-11-28T03:18:00Z","host":{{"os":"linux","arch":"x86_64","cpu_count":{cpus}}}}},"bench":{{"name":"bench-{b}","command":["echo","{text}"],"repeat":{rep},"warmup":0}},"samples":[{samples}],"stats":{{"wall_ms":{{"median":{median},"min":0,"max":{max},"mean":{mean}}},"throughput_per_s":{{"median":{tp},"min":0.5,"max":1e9}}}},"x_extra_{i}":{{"nested":[1,2.5,-3e-7,null,true]}}{b2}}}"#,
        a = sp(rng),
        b2 = sp(rng),
        ms = rng.gen_range(0..999_999u32),
        cpus = rng.gen_range(1..256u32),
        b = i % 37,
        rep = samples.len(),
        samples = samples.join(","),
        max = median + rng.gen_range(0..1000u64),
        mean = rng.gen_range(0.0..1e6f64),
        tp = rng.gen_range(0.0..1e6f64),
    )
}

#[test]
fn ten_thousand_uploads_read_back_byte_identical() {
    let s = Arc::new(Server::start(Backend::Sqlite));
    let n = 10_000;
    let threads = 8;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                let mut mine = Vec::new();
                for i in (t..n).step_by(threads) {
                    let receipt = random_receipt(&mut rng, i);
                    let body = format!(
                        r#"{{"benchmark":"bench-{}","version":"v{i}","git_ref":null,"git_sha":null,"receipt":{receipt},"metadata":{{}},"tags":[],"normalize":false}}"#,
                        i % 37
                    );
                    let r = s
                        .http
                        .post(s.url("/api/v1/projects/safety/baselines"))
                        .bearer_auth(ADMIN)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201, "upload {i}: {}", r.text().unwrap_or_default());
                    mine.push((i, receipt));
                }
                mine
            })
        })
        .collect();
    let uploaded: Vec<(usize, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(uploaded.len(), n);
    let uploaded = Arc::new(uploaded);
    let checks: Vec<_> = (0..threads)
        .map(|t| {
            let (s, uploaded) = (s.clone(), uploaded.clone());
            std::thread::spawn(move || {
                for (i, receipt) in uploaded.iter().skip(t).step_by(threads) {
                    let r = s.get(
                        ADMIN,
                        &format!(
                            "/api/v1/projects/safety/baselines/bench-{}/versions/v{i}",
                            i % 37
                        ),
                    );
                    assert_eq!(r.status(), 200);
                    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
                    let raw = r.text().unwrap();
                    assert!(
                        raw.contains(receipt.as_str()),
                        "receipt {i} not returned byte for byte"
                    );
                    let hash = hex::encode(Sha256::digest(receipt.as_bytes()));
                    let rec: Value = serde_json::from_str(&raw).unwrap();
                    assert_eq!(rec["content_hash"], hash.as_str(), "content_hash of {i}");
                    assert_eq!(etag, format!("\"sha256:{hash}\""));
                }
            })
        })
        .collect();
    for c in checks {
        c.join().unwrap();
    }
    let l = expect(
        s.get(ADMIN, "/api/v1/projects/safety/baselines?limit=1"),
        200,
    );
    assert_eq!(l["pagination"]["total"], n);
}
