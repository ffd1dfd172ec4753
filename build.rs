use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    // Migrations (and dashboard assets, when a `static` folder exists) are embedded at build
    // time. A `rerun-if-changed` path that does not exist counts as changed on every build, so
    // naming a missing `static` made cargo rerun this script and recompile the crate each time.
    println!("cargo:rerun-if-changed=migrations");
    if Path::new("static").exists() {
        println!("cargo:rerun-if-changed=static");
    }
    code_layout();
}

/// Release builds of the server on Linux place the functions it runs at start-up, then those
/// that serve CI traffic, together at the front of the code (`link/hot-functions.txt`, written
/// by `scripts/link_order.py`), through a linker script that only adds an output section
/// before `.text` (`INSERT BEFORE`, understood by LLD, Rust's default linker on x86-64 Linux,
/// and by GNU ld). The kernel maps a binary's code in 64 KiB blocks around each page a process
/// touches: spread over 20 MB, the 2.5 MB start-up runs kept 15-16 MB of it resident.
/// `PERFGATE_LINK_ORDER=0` turns it off (for a linker that knows no linker scripts).
fn code_layout() {
    const LIST: &str = "link/hot-functions.txt";
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=PERFGATE_LINK_ORDER");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    if env("PROFILE") != "release"
        || env("CARGO_CFG_TARGET_OS") != "linux"
        || env("PERFGATE_LINK_ORDER") == "0"
    {
        return;
    }
    // mold, gold and wild know no `INSERT` in a linker script: a release build with one of
    // them set up (`-fuse-ld=mold` in a cargo config, a `linker = ` wrapper) goes without.
    let linker = format!(
        "{} {}",
        env("CARGO_ENCODED_RUSTFLAGS"),
        env(&format!(
            "CARGO_TARGET_{}_LINKER",
            env("TARGET").to_uppercase().replace('-', "_")
        ))
    );
    if ["mold", "gold", "wild"].iter().any(|l| linker.contains(l)) {
        println!("cargo:warning=code layout: skipped, the linker set up is not LLD or GNU ld (set PERFGATE_LINK_ORDER=0 to silence this)");
        return;
    }
    // Absent in the Dockerfile's dependency layer, which builds a placeholder binary.
    if let Ok(list) = std::fs::read_to_string(LIST) {
        let out = PathBuf::from(env("OUT_DIR")).join("hot-functions.ld");
        match std::fs::write(&out, linker_script(&list)) {
            Err(e) => println!(
                "cargo:warning=code layout: could not write {}: {e}",
                out.display()
            ),
            // `-Wl,` splits its argument at commas.
            Ok(()) if out.display().to_string().contains(',') => println!(
                "cargo:warning=code layout: hot functions not grouped, the build directory's path has a comma"
            ),
            Ok(()) => println!(
                "cargo:rustc-link-arg-bin=perfgate-server=-Wl,-T,{}",
                out.display()
            ),
        }
    }
    // Relative relocations packed (RELR): the 1.2 MB relocation table the dynamic loader
    // reads at every start shrinks to a few KB. Loading such a binary needs glibc 2.36, so only
    // when building for this machine with one at least as new.
    if env("CARGO_CFG_TARGET_ENV") == "gnu" && env("HOST") == env("TARGET") && glibc_at_least(2, 36)
    {
        println!("cargo:rustc-link-arg-bin=perfgate-server=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether this machine's glibc (the one the build script runs with) is at least `major.minor`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn glibc_at_least(major: u32, minor: u32) -> bool {
    extern "C" {
        fn gnu_get_libc_version() -> *const std::ffi::c_char;
    }
    // SAFETY: glibc returns a pointer to a static NUL-terminated version string.
    let version = unsafe { std::ffi::CStr::from_ptr(gnu_get_libc_version()) };
    let mut parts = version
        .to_str()
        .unwrap_or_default()
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_at_least(_major: u32, _minor: u32) -> bool {
    false
}

/// The linker script for the list: each line is `PHASE SYMBOL [HASH...]`, SYMBOL with `17h*` in
/// place of a legacy Rust hash (and `Cs*_` for v0 crate disambiguators). First the exact
/// instances of this list's build, those run at start-up then those run by requests; then every
/// instance of the same functions, which still match when the hashes have changed. A function's
/// code is in `.text.SYMBOL`, or `.text.unlikely.SYMBOL` when the compiler judged it cold (a
/// vector's growth path, say).
fn linker_script(list: &str) -> String {
    let entries: Vec<(&str, &str, Vec<&str>)> = list
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (phase, symbol) = (words.next()?, words.next()?);
            // A linker script word cannot hold these; mangled names never do.
            let plain = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b))
            };
            plain(symbol).then(|| (phase, symbol, words.filter(|h| plain(h)).collect()))
        })
        .collect();
    let mut body = String::new();
    let mut emitted = std::collections::HashSet::new();
    let mut pattern = |symbol: String| {
        if emitted.insert(symbol.clone()) {
            let _ = writeln!(body, "    *(.text.{symbol} .text.unlikely.{symbol})");
        }
    };
    for phase in ["startup", "requests"] {
        for (_, symbol, hashes) in entries.iter().filter(|e| e.0 == phase) {
            match symbol.strip_suffix("17h*") {
                Some(stem) if !hashes.is_empty() => {
                    for h in hashes {
                        pattern(format!("{stem}17h{h}E"));
                    }
                }
                _ => pattern(symbol.to_string()),
            }
        }
    }
    for (_, symbol, hashes) in &entries {
        if !hashes.is_empty() {
            pattern(symbol.to_string());
        }
    }
    format!(
        "/* Generated by build.rs from link/hot-functions.txt. */\nSECTIONS\n{{\n  .text.hot :\n  {{\n{body}  }}\n}}\nINSERT BEFORE .text;\n"
    )
}
