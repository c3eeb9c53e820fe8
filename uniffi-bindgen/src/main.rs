//! The bindings generator, kept out of the main crate so that its `cli` feature
//! does not rebuild the library. Used by `scripts/gen-bindings.sh`.
fn main() {
    uniffi::uniffi_bindgen_main()
}
