// Builds the small C helper that does INCRBYFLOAT in `long double`.
fn main() {
    println!("cargo:rerun-if-changed=src/native/long_double.c");
    cc::Build::new()
        .file("src/native/long_double.c")
        .warnings(true)
        .compile("keel_native");
}
