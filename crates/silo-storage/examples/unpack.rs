//! Unpacks one layer tar (plain, gzip or zstd) into an empty directory
//! with the store's extractor, for bench/images.sh to compare with `tar -x`.
//! Usage: unpack LAYER.tar DIR
#![allow(clippy::unwrap_used)] // a bench helper: a failure is reported by the panic

fn main() {
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(args.len(), 3, "usage: unpack LAYER.tar DIR");
    let f = std::fs::File::open(&args[1]).unwrap();
    let t = std::time::Instant::now();
    let u = silo_storage::unpack_layer(
        std::io::BufReader::with_capacity(1 << 20, f),
        std::path::Path::new(&args[2]),
        silo_storage::Whiteouts::Overlay,
    )
    .unwrap();
    eprintln!(
        "unpacked sha256:{} ({} bytes) in {:?}",
        u.diff_id_hex,
        u.size,
        t.elapsed()
    );
}
