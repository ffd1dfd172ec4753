fn main() {
    // Migrations (and dashboard assets, when a `static` folder exists) are embedded at build
    // time. A `rerun-if-changed` path that does not exist counts as changed on every build, so
    // naming a missing `static` made cargo rerun this script and recompile the crate each time.
    println!("cargo:rerun-if-changed=migrations");
    if std::path::Path::new("static").exists() {
        println!("cargo:rerun-if-changed=static");
    }
}
