fn main() {
    // Migrations and dashboard assets are embedded at build time.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=static");
}
