//! Single-core read bandwidth by buffer size: the rates `compare`'s roofline uses.
//!
//! ```text
//! cargo run --release -p folio-benches --bin readbw -- [BYTES...]
//! ```
//! Default sizes run from 64 KiB to 256 MiB, so each cache level and memory show up.
use clap::Parser;
use folio_benches::read_bandwidth;

#[derive(Parser)]
#[command(about = "Single-core read bandwidth (GB/s) of a buffer of N bytes, read repeatedly")]
struct Args {
    /// Buffer sizes in bytes.
    bytes: Vec<usize>,
    /// Timed samples per size.
    #[arg(long, default_value_t = 9)]
    samples: usize,
}

fn main() {
    let args = Args::parse();
    let sizes = if args.bytes.is_empty() {
        (16..=28).step_by(2).map(|p| 1usize << p).collect()
    } else {
        args.bytes
    };
    println!("| bytes | best GB/s | median GB/s |");
    println!("|---:|---:|---:|");
    for bytes in sizes {
        let mut v = read_bandwidth(bytes, args.samples.max(1));
        v.sort_by(f64::total_cmp);
        let (best, median) = (v[v.len() - 1], v[v.len() / 2]);
        println!("| {bytes} | {:.1} | {:.1} |", best / 1e9, median / 1e9);
    }
}
